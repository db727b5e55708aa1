// Test support: run the real nkhost binary as a child process.
//
// The binary path comes from the NKHOST_BIN environment variable that
// nk_add_test sets. Output (stdout and stderr) goes to a file in a temp dir,
// readable at any time with output().
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace nk::test {

// A fresh temporary directory, removed when the object goes away.
class TempDir {
public:
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    const std::filesystem::path& path() const { return path_; }
    std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

private:
    std::filesystem::path path_;
};

// Writes `content` to `path` (creating parent directories).
void write_file(const std::filesystem::path& path, const std::string& content);
std::string read_file(const std::filesystem::path& path);

// A TCP port on 127.0.0.1 that was free a moment ago.
std::uint16_t free_port();

// Path of the nkhost binary under test.
std::string nkhost_binary();
// The build directory (NK_BUILD_DIR) and source directory (NK_SOURCE_DIR).
std::filesystem::path build_dir();
std::filesystem::path source_dir();

struct RunResult {
    int exit_code = -1;  // exit status, or 128+signal when killed by a signal
    std::string output;  // stdout and stderr interleaved
};

// Runs nkhost with `args` to completion (killed after `timeout`).
RunResult run_nkhost(const std::vector<std::string>& args,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

class ServerProcess {
public:
    // Starts nkhost with `args`; output goes to <log_dir>/nkhost.log.
    explicit ServerProcess(std::vector<std::string> args);
    ~ServerProcess();  // SIGKILL if still running
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    // Polls GET /healthcheck on 127.0.0.1:port until 200 or the deadline; false if the process died.
    bool wait_ready(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(30));
    // Sends `signal` and waits for exit; returns the exit code (128+signal when killed by one),
    // or -1 when it did not exit in time (then it is killed).
    int stop(int signal, std::chrono::milliseconds timeout = std::chrono::seconds(60));
    bool running();
    pid_t pid() const { return pid_; }
    std::string output() const;
    // Waits until output() contains `needle`; false at the deadline.
    bool wait_for_output(const std::string& needle,
                         std::chrono::milliseconds timeout = std::chrono::seconds(30)) const;

private:
    TempDir log_dir_;
    pid_t pid_ = -1;
    int exit_code_ = -1;
};

}  // namespace nk::test
