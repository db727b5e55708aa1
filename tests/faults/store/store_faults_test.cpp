// The SQLite account store under faults, in the real server: SIGKILL under mixed load (every
// answered account survives, the file stays intact), a full disk under data_dir (clear 5xx
// answers, counted and logged, service back once there is room) and data_dir moved away while
// running (no crash; requests keep working from the open file or fail clearly).
#include <doctest/doctest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/mount.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// nkhost on a data_dir chosen by the test (kept across restarts), fresh ports each start.
struct Server {
    std::uint16_t port = free_port();
    std::unique_ptr<ServerProcess> process;

    explicit Server(const fs::path& data_dir) {
        std::uint16_t metrics = free_port();
        while (metrics == port) metrics = free_port();
        metrics_port = metrics;
        process = std::make_unique<ServerProcess>(std::vector<std::string>{
            "--socket.address", "127.0.0.1", "--socket.port", std::to_string(port),
            "--metrics.prometheus_port", std::to_string(metrics), "--data_dir", data_dir.string(),
            "--logger.level", "info"});
        if (!process->wait_ready(port))
            throw std::runtime_error("nkhost did not become ready:\n" + process->output());
    }
    std::uint16_t metrics_port = 0;

    std::unique_ptr<httplib::Client> client() const {
        auto c = std::make_unique<httplib::Client>("127.0.0.1", port);
        c->set_connection_timeout(20, 0);
        c->set_read_timeout(30, 0);
        c->set_write_timeout(30, 0);
        return c;
    }
    double metric(const std::string& name, const std::string& filter = "") const {
        httplib::Client c("127.0.0.1", metrics_port);
        c.set_read_timeout(20, 0);
        auto res = c.Get("/");
        REQUIRE(res);
        std::istringstream in(res->body);
        std::string line;
        double sum = 0;
        while (std::getline(in, line)) {
            if (line.rfind(name, 0) != 0 || line.find(filter) == std::string::npos) continue;
            const char next = line.size() > name.size() ? line[name.size()] : '\0';
            if (next != '{' && next != ' ') continue;
            sum += std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
        }
        return sum;
    }
};

// The status of authenticating `id` (0 when there was no answer); `body` gets the answer.
int authenticate(httplib::Client& c, const std::string& id, bool create, std::string* body = nullptr) {
    c.set_basic_auth("defaultkey", "");
    auto res = c.Post(std::string("/v2/account/authenticate/device?create=") +
                          (create ? "true" : "false"),
                      "{\"id\":\"store-faults-" + id + "\"}", "application/json");
    if (!res) return 0;
    if (body) *body = res->body;
    return res->status;
}

std::string token_of(const std::string& body) {
    auto at = body.find("\"token\":\"");
    if (at == std::string::npos) return {};
    at += 9;
    return body.substr(at, body.find('"', at) - at);
}

// A Nakama error body: {"code":N,"message":"..."}.
bool is_error_json(const std::string& body) {
    return body.find("\"code\":") != std::string::npos &&
           body.find("\"message\":") != std::string::npos;
}

std::string integrity_check(const fs::path& db) {
    sqlite3* h = nullptr;
    std::string result = "cannot open";
    if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
        sqlite3_stmt* st = nullptr;
        if (sqlite3_prepare_v2(h, "PRAGMA integrity_check", -1, &st, nullptr) == SQLITE_OK &&
            sqlite3_step(st) == SQLITE_ROW) {
            result = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
    }
    sqlite3_close_v2(h);
    return result;
}

// Appends to `path` until the filesystem is full.
void fill(const fs::path& path) {
    std::FILE* f = std::fopen(path.c_str(), "ab");
    REQUIRE(f != nullptr);
    std::setvbuf(f, nullptr, _IONBF, 0);
    const std::string block(4096, 'x');
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {}
    std::fwrite(block.data(), 1, 1, f);  // the last partial block
    std::fclose(f);
}

}  // namespace

TEST_CASE("SIGKILL under mixed load, three times: every answered account survives, the file is "
          "intact") {
    TempDir dir;
    std::set<std::string> created;  // answered 200 with create=true
    for (int cycle = 0; cycle < 3; ++cycle) {
        Server server(dir.path());
        // What earlier cycles created is all there.
        {
            auto c = server.client();
            for (const auto& id : created) CHECK_MESSAGE(authenticate(*c, id, false) == 200, id);
        }
        std::mutex m;
        std::atomic<bool> stop{false};
        std::atomic<int> answered{0};
        std::vector<std::thread> clients;
        for (int t = 0; t < 4; ++t) {
            clients.emplace_back([&, t] {
                auto c = server.client();
                for (int i = 0; !stop; ++i) {
                    const std::string id =
                        "kill-" + std::to_string(cycle) + "-" + std::to_string(t) + "-" +
                        std::to_string(i);
                    std::string body;
                    if (authenticate(*c, id, true, &body) != 200) continue;
                    {
                        std::lock_guard lock(m);
                        created.insert(id);
                    }
                    ++answered;
                    auto u = server.client();
                    u->set_bearer_token_auth(token_of(body));
                    u->Put("/v2/account", "{\"display_name\":\"d" + std::to_string(i) + "\"}",
                           "application/json");
                    u->Post("/v2/event", "{\"name\":\"e\"}", "application/json");
                }
            });
        }
        REQUIRE(wait_until([&] { return answered >= 40; }, 60s));
        server.process->stop(SIGKILL);
        stop = true;
        for (auto& th : clients) th.join();
        CHECK(integrity_check(dir.path() / "nkhost.db") == "ok");
    }
    Server server(dir.path());
    auto c = server.client();
    for (const auto& id : created) CHECK_MESSAGE(authenticate(*c, id, false) == 200, id);
    CHECK(created.size() >= 120);
    server.process->stop(SIGTERM);
    CHECK(integrity_check(dir.path() / "nkhost.db") == "ok");
}

TEST_CASE("a full disk under data_dir: clear 5xx answers, counted and logged; service returns") {
    TempDir mnt;
    // A small tmpfs of its own (needs CAP_SYS_ADMIN: the test runs as root here).
    if (::mount("nkstore", mnt.path().c_str(), "tmpfs", 0, "size=4m") != 0) {
        MESSAGE("cannot mount a tmpfs here (" << std::strerror(errno) << "); not run");
        return;
    }
    struct Unmount {
        fs::path p;
        ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
    } unmount{mnt.path()};
    const fs::path data = mnt.path() / "data";
    const fs::path filler = mnt.path() / "filler";
    fs::create_directories(data);
    std::vector<std::string> answered;
    int total_failures = 0;
    {
        Server server(data);
        auto c = server.client();
        for (int round = 0; round < 2; ++round) {
            for (int i = 0; i < 20; ++i) {
                const std::string id = "before-" + std::to_string(round) + "-" + std::to_string(i);
                REQUIRE(authenticate(*c, id, true) == 200);
                answered.push_back(id);
            }
            int failures = 0;
            for (int i = 0; i < 40; ++i) {
                fill(filler);  // topped up before each write: no room is left for it
                const std::string id = "full-" + std::to_string(round) + "-" + std::to_string(i);
                std::string body;
                const int status = authenticate(*c, id, true, &body);
                REQUIRE(status != 0);  // an answer, not a hang or a crash
                if (status == 200) {
                    answered.push_back(id);
                    continue;
                }
                CHECK(status == 500);
                CHECK_MESSAGE(is_error_json(body), body);
                ++failures;
            }
            CHECK(failures > 0);
            total_failures += failures;
            CHECK(server.metric("nkhost_database_errors") >= total_failures);
            CHECK(server.process->wait_for_output(
                "Database error operation=authenticate_device error=\"database or disk is full\""));
            CHECK(server.process->running());
            fs::remove(filler);
            for (int i = 0; i < 10; ++i) {
                const std::string id = "after-" + std::to_string(round) + "-" + std::to_string(i);
                REQUIRE(authenticate(*c, id, true) == 200);
                answered.push_back(id);
            }
            for (const auto& id : answered) CHECK_MESSAGE(authenticate(*c, id, false) == 200, id);
        }
        CHECK(server.process->stop(SIGTERM) == 0);
    }
    CHECK(integrity_check(data / "nkhost.db") == "ok");

    // Started on a disk already full: it refuses to start, saying why.
    fill(filler);
    RunResult run = run_nkhost({"--socket.address", "127.0.0.1", "--socket.port",
                                std::to_string(free_port()), "--metrics.prometheus_port",
                                std::to_string(free_port()), "--data_dir",
                                (mnt.path() / "fresh").string()},
                               20s);
    CHECK(run.exit_code == 1);
    CHECK_MESSAGE(run.output.find("Startup failed: cannot configure database: database or disk "
                                  "is full") != std::string::npos,
                  run.output);
    fs::remove(filler);
}

TEST_CASE("data_dir moved away while running: no crash, answers stay clear, back once returned") {
    TempDir dir;
    const fs::path data = dir.path() / "data";
    const fs::path moved = dir.path() / "moved";
    fs::create_directories(data);
    std::vector<std::string> answered;
    Server server(data);
    auto c = server.client();
    for (int i = 0; i < 10; ++i) {
        REQUIRE(authenticate(*c, "kept-" + std::to_string(i), true) == 200);
        answered.push_back("kept-" + std::to_string(i));
    }
    fs::rename(data, moved);
    // The open file keeps serving from where it is; any failure is a clear 5xx.
    for (int i = 0; i < 30; ++i) {
        const std::string id = "moved-" + std::to_string(i);
        std::string body;
        const int status = authenticate(*c, id, true, &body);
        REQUIRE(status != 0);
        if (status == 200) {
            answered.push_back(id);
        } else {
            CHECK(status == 500);
            CHECK_MESSAGE(is_error_json(body), body);
        }
    }
    for (const auto& id : answered) CHECK_MESSAGE(authenticate(*c, id, false) == 200, id);
    CHECK(server.process->running());
    fs::rename(moved, data);
    CHECK(server.process->stop(SIGTERM) == 0);
    CHECK(integrity_check(data / "nkhost.db") == "ok");
    Server again(data);
    auto c2 = again.client();
    for (const auto& id : answered) CHECK_MESSAGE(authenticate(*c2, id, false) == 200, id);
    CHECK(again.process->stop(SIGTERM) == 0);
}
