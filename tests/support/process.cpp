#include "support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace nk::test {

namespace fs = std::filesystem;

TempDir::TempDir() {
    std::random_device rd;
    for (int i = 0; i < 100; ++i) {
        auto p = fs::temp_directory_path() / ("nkhost-test-" + std::to_string(rd()));
        std::error_code ec;
        if (fs::create_directory(p, ec)) {
            path_ = p;
            return;
        }
    }
    throw std::runtime_error("cannot create a temp dir");
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
}

void write_file(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

std::string read_file(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::uint16_t free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        if (fd >= 0) ::close(fd);
        throw std::runtime_error("cannot find a free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

static std::string env_or(const char* name, const std::string& fallback) {
    const char* v = std::getenv(name);
    return v && *v ? std::string(v) : fallback;
}

std::string nkhost_binary() { return env_or("NKHOST_BIN", "nkhost"); }
fs::path build_dir() { return env_or("NK_BUILD_DIR", NK_TEST_BUILD_DIR); }
fs::path source_dir() { return env_or("NK_SOURCE_DIR", "."); }

namespace {

pid_t spawn(const std::vector<std::string>& args, const fs::path& log) {
    std::vector<std::string> argv_storage;
    argv_storage.push_back(nkhost_binary());
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    pid_t pid = -1;
    int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + argv_storage[0] + ": " + std::strerror(rc));
    return pid;
}

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}

// Waits for `pid` up to `timeout`; returns the decoded status or -1 on timeout.
int wait_exit(pid_t pid, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        int status = 0;
        pid_t r = ::waitpid(pid, &status, WNOHANG);
        if (r == pid) return decode_status(status);
        if (r < 0) return -1;
        if (std::chrono::steady_clock::now() > deadline) return -2;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

bool http_health(std::uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    bool ok = false;
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
        const char req[] = "GET /healthcheck HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
        if (::send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof req - 1)) {
            char buf[256];
            ssize_t n = ::recv(fd, buf, sizeof buf - 1, 0);
            if (n > 12) {
                buf[n] = 0;
                ok = std::strncmp(buf, "HTTP/1.1 200", 12) == 0;
            }
        }
    }
    ::close(fd);
    return ok;
}

}  // namespace

RunResult run_nkhost(const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
    TempDir dir;
    auto log = dir / "out.log";
    pid_t pid = spawn(args, log);
    RunResult r;
    r.exit_code = wait_exit(pid, timeout);
    if (r.exit_code == -2) {
        ::kill(pid, SIGKILL);
        r.exit_code = wait_exit(pid, std::chrono::seconds(10));
        r.exit_code = -1;
    }
    r.output = read_file(log);
    return r;
}

ServerProcess::ServerProcess(std::vector<std::string> args) { pid_ = spawn(args, log_dir_ / "nkhost.log"); }

ServerProcess::~ServerProcess() {
    if (running()) {
        ::kill(pid_, SIGKILL);
        wait_exit(pid_, std::chrono::seconds(10));
    }
}

bool ServerProcess::running() {
    if (pid_ <= 0 || exit_code_ != -1) return false;
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
        exit_code_ = decode_status(status);
        return false;
    }
    return r == 0;
}

bool ServerProcess::wait_ready(std::uint16_t port, std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (!running()) return false;
        if (http_health(port)) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

int ServerProcess::stop(int signal, std::chrono::milliseconds timeout) {
    if (!running()) return exit_code_;
    ::kill(pid_, signal);
    int r = wait_exit(pid_, timeout);
    if (r == -2) {
        ::kill(pid_, SIGKILL);
        wait_exit(pid_, std::chrono::seconds(10));
        exit_code_ = 128 + SIGKILL;
        return -1;
    }
    exit_code_ = r;
    return r;
}

std::string ServerProcess::output() const { return read_file(log_dir_ / "nkhost.log"); }

bool ServerProcess::wait_for_output(const std::string& needle, std::chrono::milliseconds timeout) const {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (output().find(needle) != std::string::npos) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
}

}  // namespace nk::test
