// Runs the real nkhost binary: what an operator sees.
#include <doctest/doctest.h>
#include <httplib.h>
#include <rapidjson/document.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "support/process.hpp"

using nk::test::ServerProcess;
using nk::test::TempDir;

namespace {

std::vector<std::string> base_args(const TempDir& dir, std::uint16_t port) {
    return {"--socket.address", "127.0.0.1", "--socket.port", std::to_string(port), "--data_dir",
            dir.path().string()};
}

}  // namespace

TEST_CASE("the server starts, answers the health routes and exits 0 on SIGTERM") {
    TempDir dir;
    const auto port = nk::test::free_port();
    ServerProcess server(base_args(dir, port));
    REQUIRE(server.wait_ready(port));

    httplib::Client cli("127.0.0.1", port);
    auto health = cli.Get("/healthcheck");
    REQUIRE(health);
    CHECK(health->status == 200);
    CHECK(health->body == "{}");
    auto root = cli.Get("/");
    REQUIRE(root);
    CHECK(root->status == 200);
    CHECK(root->body.empty());

    const auto out = server.output();
    CHECK(out.find("socket.server_key is the default") != std::string::npos);
    CHECK(server.stop(SIGTERM) == 0);
    CHECK(server.output().find("Shutdown complete") != std::string::npos);
}

TEST_CASE("SIGINT also shuts down cleanly") {
    TempDir dir;
    const auto port = nk::test::free_port();
    ServerProcess server(base_args(dir, port));
    REQUIRE(server.wait_ready(port));
    CHECK(server.stop(SIGINT) == 0);
}

TEST_CASE("invalid configuration exits 2 with one line naming the key") {
    auto r = nk::test::run_nkhost({"--runtime.event_queue_workers", "0"});
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("runtime.event_queue_workers") != std::string::npos);

    r = nk::test::run_nkhost({"--no.such_key", "1"});
    CHECK(r.exit_code == 2);
    CHECK(r.output.find("no.such_key") != std::string::npos);
}

TEST_CASE("--version and --help exit 0") {
    auto r = nk::test::run_nkhost({"--version"});
    CHECK(r.exit_code == 0);
    CHECK(r.output.rfind("nkhost ", 0) == 0);
    r = nk::test::run_nkhost({"--help"});
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("runtime.event_queue_size") != std::string::npos);
}

TEST_CASE("a port in use fails startup with a clear line and exit 1") {
    TempDir dir;
    const auto port = nk::test::free_port();
    ServerProcess first(base_args(dir, port));
    REQUIRE(first.wait_ready(port));
    TempDir dir2;
    auto r = nk::test::run_nkhost(base_args(dir2, port));
    CHECK(r.exit_code == 1);
    CHECK(r.output.find("Startup failed") != std::string::npos);
    CHECK(first.stop(SIGTERM) == 0);
}

TEST_CASE("Prometheus text on metrics.prometheus_port, prefixed, with node_name") {
    TempDir dir;
    const auto port = nk::test::free_port();
    const auto mport = nk::test::free_port();
    auto args = base_args(dir, port);
    args.insert(args.end(), {"--metrics.prometheus_port", std::to_string(mport), "--metrics.prefix", "nakama",
                             "--name", "node7"});
    ServerProcess server(args);
    REQUIRE(server.wait_ready(port));
    httplib::Client api("127.0.0.1", port);
    REQUIRE(api.Get("/healthcheck"));
    httplib::Client metrics("127.0.0.1", mport);
    auto r = metrics.Get("/any/path");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->get_header_value("Content-Type").find("text/plain") == 0);
    CHECK(r->body.find("# TYPE nakama_http_requests counter") != std::string::npos);
    CHECK(r->body.find("node_name=\"node7\"") != std::string::npos);
    CHECK(server.stop(SIGTERM) == 0);
}

TEST_CASE("SIGTERM while requests are in flight: every accepted request gets a complete response") {
    TempDir dir;
    const auto port = nk::test::free_port();
    const auto mport = nk::test::free_port();
    auto args = base_args(dir, port);
    args.insert(args.end(), {"--metrics.prometheus_port", std::to_string(mport)});
    // bcrypt at a high cost makes each email authentication take a noticeable time.
    args.insert(args.end(), {"--database.bcrypt_cost", "13", "--socket.blocking_threads", "8"});
    ServerProcess server(args);
    REQUIRE(server.wait_ready(port));

    constexpr int kClients = 6;
    std::atomic<int> started{0};
    std::vector<int> statuses(kClients, -1);
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.emplace_back([&, i] {
            httplib::Client cli("127.0.0.1", port);
            cli.set_read_timeout(120, 0);
            cli.set_basic_auth("defaultkey", "");
            started.fetch_add(1);
            auto r = cli.Post("/v2/account/authenticate/email?create=true",
                              "{\"email\":\"p" + std::to_string(i) + "@example.com\",\"password\":\"password123\"}",
                              "application/json");
            statuses[i] = r ? r->status : -1;
        });
    }
    // Signal only once the server has accepted every connection.
    httplib::Client metrics("127.0.0.1", mport);
    const std::string open_line = "nkhost_http_connections_open{node_name=\"nakama\"} " + std::to_string(kClients);
    bool all_open = false;
    for (int i = 0; i < 3000 && !all_open; ++i) {
        auto m = metrics.Get("/");
        all_open = m && m->body.find(open_line) != std::string::npos;
        if (!all_open) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    REQUIRE(all_open);
    CHECK(server.stop(SIGTERM, std::chrono::seconds(120)) == 0);
    for (auto& t : clients) t.join();
    for (int i = 0; i < kClients; ++i) {
        CAPTURE(i);
        CHECK(statuses[i] == 200);
    }
}

namespace {

std::string bearer_token(std::uint16_t port) {
    httplib::Client cli("127.0.0.1", port);
    cli.set_basic_auth("defaultkey", "");
    auto r = cli.Post("/v2/account/authenticate/device?create=true", R"({"id":"shutdown-device-01"})",
                      "application/json");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    const auto& b = r->body;
    const auto start = b.find("\"token\":\"") + 9;
    return b.substr(start, b.find('"', start) - start);
}

long logged_count(const std::string& out, const std::string& key) {
    const auto at = out.rfind(key);
    if (at == std::string::npos) return -1;
    return std::stol(out.substr(at + key.size()));
}

}  // namespace

TEST_CASE("SIGTERM under event load: every event acknowledged with 200 is handled before exit") {
    TempDir dir;
    nk::test::write_file(dir / "data/modules/event_counter.so",
                         nk::test::read_file(nk::test::build_dir() / "app-modules/event_counter.so"));
    const auto port = nk::test::free_port();
    std::vector<std::string> args = {"--socket.address", "127.0.0.1", "--socket.port", std::to_string(port),
                                     "--data_dir", (dir / "data").string(), "--runtime.event_queue_workers", "2"};
    ServerProcess server(args);
    REQUIRE(server.wait_ready(port));
    const std::string token = bearer_token(port);

    constexpr int kClients = 8;
    std::atomic<long> acked{0};
    std::atomic<bool> stop{false};
    std::atomic<long> sent{0};
    std::vector<std::thread> clients;
    for (int i = 0; i < kClients; ++i) {
        clients.emplace_back([&] {
            httplib::Client cli("127.0.0.1", port);
            cli.set_tcp_nodelay(true);
            cli.set_bearer_token_auth(token);
            while (!stop.load()) {
                auto r = cli.Post("/v2/event", R"({"name":"load","properties":{"k":"v"}})", "application/json");
                if (!r) break;  // the server closed the listener
                sent.fetch_add(1);
                if (r->status == 200) acked.fetch_add(1);
            }
        });
    }
    while (sent.load() < 2000) std::this_thread::yield();
    CHECK(server.stop(SIGTERM, std::chrono::seconds(60)) == 0);
    stop = true;
    for (auto& t : clients) t.join();

    const auto out = server.output();
    const long handled = logged_count(out, "event_counter handled=");
    CAPTURE(out.substr(out.size() > 2000 ? out.size() - 2000 : 0));
    CHECK(acked.load() >= 2000);
    // Every acknowledged event was handled; at most one more per client may have been
    // handled whose response the closing connection never delivered.
    CHECK(handled >= acked.load());
    CHECK(handled <= acked.load() + kClients);
    CHECK(out.find("not handled") == std::string::npos);
}

TEST_CASE("nkhost check loads every plugin and reports; non-zero on a broken one") {
    TempDir dir;
    nk::test::write_file(dir / "modules/quickstart.so",
                         nk::test::read_file(nk::test::build_dir() / "modules/quickstart.so"));
    auto r = nk::test::run_nkhost({"check", "--runtime.path", (dir / "modules").string(), "--data_dir",
                                   (dir / "data").string()});
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("quickstart") != std::string::npos);
    CHECK(r.output.find("rpc hello") != std::string::npos);

    nk::test::write_file(dir / "modules/zz_broken.so", "not an ELF file at all");
    r = nk::test::run_nkhost({"check", "--runtime.path", (dir / "modules").string(), "--data_dir",
                              (dir / "data").string()});
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("zz_broken.so") != std::string::npos);
}

TEST_CASE("quickstart: hello escapes the username, and a flood of unknown events logs a few lines") {
    TempDir dir;
    nk::test::write_file(dir / "modules/quickstart.so",
                         nk::test::read_file(nk::test::build_dir() / "modules/quickstart.so"));
    const auto port = nk::test::free_port();
    ServerProcess server(base_args(dir, port));
    REQUIRE(server.wait_ready(port));

    httplib::Client cli("127.0.0.1", port);
    cli.set_basic_auth("defaultkey", "");
    auto auth = cli.Post("/v2/account/authenticate/device?create=true&username=a%22b%5Cc",
                         R"({"id":"quickstart-device-01"})", "application/json");
    REQUIRE(auth);
    REQUIRE(auth->status == 200);
    const auto start = auth->body.find("\"token\":\"") + 9;
    const std::string token = auth->body.substr(start, auth->body.find('"', start) - start);

    httplib::Client user("127.0.0.1", port);
    user.set_bearer_token_auth(token);
    auto rpc = user.Post("/v2/rpc/hello", R"("{\"level\":3}")", "application/json");
    REQUIRE(rpc);
    REQUIRE(rpc->status == 200);
    rapidjson::Document reply;
    reply.Parse(rpc->body.c_str(), rpc->body.size());
    REQUIRE_FALSE(reply.HasParseError());
    REQUIRE(reply.IsObject());
    REQUIRE(reply["payload"].IsString());
    rapidjson::Document hello;
    hello.Parse(reply["payload"].GetString(), reply["payload"].GetStringLength());
    CAPTURE(rpc->body);
    REQUIRE_FALSE(hello.HasParseError());
    CHECK(std::string(hello["hello"].GetString()) == "a\"b\\c");
    CHECK(hello["payload"]["level"].GetInt() == 3);
    // A payload that is not JSON comes back as a string.
    rpc = user.Post("/v2/rpc/hello", R"("not {json")", "application/json");
    REQUIRE(rpc);
    reply.Parse(rpc->body.c_str(), rpc->body.size());
    REQUIRE(reply.IsObject());
    hello.Parse(reply["payload"].GetString(), reply["payload"].GetStringLength());
    REQUIRE_FALSE(hello.HasParseError());
    CHECK(std::string(hello["payload"].GetString()) == "not {json");

    constexpr int kEvents = 400;
    const auto flood_start = std::chrono::steady_clock::now();
    for (int i = 0; i < kEvents; ++i) {
        auto r = user.Post("/v2/event", R"({"name":"flood","properties":{"k":"v"}})", "application/json");
        REQUIRE(r);
        REQUIRE(r->status == 200);
    }
    CHECK(server.stop(SIGTERM) == 0);  // handles every queued event before exit
    const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(
                             std::chrono::steady_clock::now() - flood_start)
                             .count();
    const std::string out = server.output();
    long lines = 0;
    for (auto at = out.find("unrecognised evt"); at != std::string::npos;
         at = out.find("unrecognised evt", at + 1)) {
        ++lines;
        const auto line_start = out.rfind('\n', at);
        const std::string prefix = out.substr(line_start == std::string::npos ? 0 : line_start + 1,
                                              at - (line_start == std::string::npos ? 0 : line_start + 1));
        CHECK(prefix.find(" warn ") != std::string::npos);
    }
    // One line a second at most (plus the first).
    CHECK(lines >= 1);
    CHECK(lines <= seconds + 2);
}

namespace {

std::filesystem::path fixture_so(const std::string& name) {
    return nk::test::build_dir() / "fixtures" / name / (name + ".so");
}

// Sets TMPDIR for the processes started while it lives (the test runs them one at a time).
class ScopedTmpdir {
  public:
    explicit ScopedTmpdir(const std::filesystem::path& dir) {
        const char* old = std::getenv("TMPDIR");
        had_ = old != nullptr;
        old_ = had_ ? old : "";
        std::filesystem::create_directories(dir);
        ::setenv("TMPDIR", dir.c_str(), 1);
    }
    ~ScopedTmpdir() {
        if (had_)
            ::setenv("TMPDIR", old_.c_str(), 1);
        else
            ::unsetenv("TMPDIR");
    }
    ScopedTmpdir(const ScopedTmpdir&) = delete;
    ScopedTmpdir& operator=(const ScopedTmpdir&) = delete;

  private:
    bool had_ = false;
    std::string old_;
};

// `nkhost check` on a runtime.path holding exactly `plugins` (fixture names). Its temporary
// directory goes under `dir` (one a crashing plugin leaves behind is removed with it).
nk::test::RunResult check_fixtures(const TempDir& dir, const std::vector<std::string>& plugins) {
    for (const auto& name : plugins)
        nk::test::write_file(dir / ("modules/" + name + ".so"),
                             nk::test::read_file(fixture_so(name)));
    ScopedTmpdir tmpdir(dir / "tmp");
    return nk::test::run_nkhost({"check", "--runtime.path", (dir / "modules").string(),
                                 "--data_dir", (dir / "data").string()});
}

bool has_line(const std::string& out, const std::string& line) {
    return ("\n" + out).find("\n" + line + "\n") != std::string::npos;
}

bool has_line_starting(const std::string& out, const std::string& start) {
    return ("\n" + out).find("\n" + start) != std::string::npos;
}

std::size_t count_of(const std::string& out, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = out.find(needle); at != std::string::npos; at = out.find(needle, at + 1))
        ++n;
    return n;
}

}  // namespace

TEST_CASE("nkhost check: one FAIL line and exit 1 for each kind of file that is not a plugin") {
    struct Case {
        std::string fixture;
        std::string reason;
    };
    const bool tsan_tree = nk::test::read_file(fixture_so("sanitizer_other")).find("libasan.so") !=
                           std::string::npos;
    const std::vector<Case> cases = {
        {"helper_lib",
         "not a plugin (exports neither nk_plugin_abi nor InitModule): move it out of "
         "runtime.path or into a hidden folder (a name starting with '.')"},
        {"pie_exe",
         "an executable, not a shared library: build the plugin with add_library(<name> MODULE "
         "...) (nk_add_plugin does)"},
        {"sanitizer_other",
         tsan_tree ? "built with AddressSanitizer (needs libasan.so.8), which this nkhost was not "
                     "built with: loading it would abort the process; rebuild the plugin without "
                     "-fsanitize=address (or run an nkhost built with it)"
                   : "built with ThreadSanitizer (needs libtsan.so.2), which this nkhost was not "
                     "built with: loading it would abort the process; rebuild the plugin without "
                     "-fsanitize=thread (or run an nkhost built with it)"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.fixture);
        TempDir dir;
        const auto r = check_fixtures(dir, {c.fixture});
        CAPTURE(r.output);
        CHECK(r.exit_code == 1);
        const std::string file = (dir / ("modules/" + c.fixture + ".so")).string();
        CHECK(has_line(r.output, "loading " + file));
        CHECK(has_line(r.output, "FAIL " + file + ": " + c.reason));
        CHECK(count_of(r.output, "FAIL ") == 1);
        CHECK(r.output.find(".modules") == std::string::npos);  // no private copy's path
        CHECK(has_line(r.output, "1 plugin(s) checked, 1 problem(s)"));
    }
}

TEST_CASE("nkhost check: an RPC id registered by two plugins is one FAIL line; the server warns") {
    TempDir dir;
    auto r = check_fixtures(dir, {"events_good", "rpc_duplicate"});
    CAPTURE(r.output);
    CHECK(r.exit_code == 1);
    const std::string good = (dir / "modules/events_good.so").string();
    const std::string dup = (dir / "modules/rpc_duplicate.so").string();
    CHECK(has_line_starting(r.output, "OK   " + good + " (ABI "));
    CHECK(has_line_starting(r.output, "OK   " + dup + " (ABI "));
    CHECK(has_line(r.output, "FAIL " + dup + ": RPC id \"echo\" is also registered by " + good +
                                 "; this module's registration replaces it, so that one is never "
                                 "called: rename one of them"));
    CHECK(count_of(r.output, "FAIL ") == 1);
    CHECK(has_line(r.output, "2 plugin(s) checked, 1 problem(s)"));

    // The server keeps Nakama's rule (the later registration serves) and says so once.
    const auto port = nk::test::free_port();
    ServerProcess server({"--socket.address", "127.0.0.1", "--socket.port", std::to_string(port),
                          "--data_dir", (dir / "data").string(), "--runtime.path",
                          (dir / "modules").string()});
    REQUIRE(server.wait_ready(port));
    const std::string out = server.output();
    CAPTURE(out);
    CHECK(count_of(out, "RPC id \"echo\" is registered by module events_good (" + good +
                            ") and by module rpc_duplicate (" + dup + ")") == 1);
    httplib::Client cli("127.0.0.1", port);
    auto rpc = cli.Post("/v2/rpc/Echo?http_key=defaulthttpkey", R"("hi")", "application/json");
    REQUIRE(rpc);
    CHECK(rpc->status == 200);
    CHECK(rpc->body.find("from rpc_duplicate") != std::string::npos);
    CHECK(server.stop(SIGTERM) == 0);
}

TEST_CASE("nkhost check: a missing runtime.path fails and is not created; the server creates it") {
    TempDir dir;
    const auto missing = dir / "no/such/modules";
    auto r = nk::test::run_nkhost(
        {"check", "--runtime.path", missing.string(), "--data_dir", (dir / "data").string()});
    CAPTURE(r.output);
    CHECK(r.exit_code == 1);
    CHECK(has_line(r.output, "FAIL runtime.path " + missing.string() + " does not exist"));
    CHECK(count_of(r.output, "FAIL ") == 1);
    CHECK_FALSE(std::filesystem::exists(dir / "no"));
    CHECK_FALSE(std::filesystem::exists(dir / "data"));

    const auto port = nk::test::free_port();
    ServerProcess server({"--socket.address", "127.0.0.1", "--socket.port", std::to_string(port),
                          "--data_dir", (dir / "data").string(), "--runtime.path",
                          missing.string()});
    REQUIRE(server.wait_ready(port));
    CHECK(std::filesystem::is_directory(missing));
    CHECK(server.output().find("runtime.path " + missing.string() +
                               " did not exist; created it") != std::string::npos);
    CHECK(server.stop(SIGTERM) == 0);
}

TEST_CASE("nkhost check creates nothing in the working directory and removes its copies") {
    TempDir cwd;
    TempDir tmp;  // TMPDIR of the check: where its private copies go
    TempDir plugins;
    nk::test::write_file(plugins / "modules/events_good.so",
                         nk::test::read_file(fixture_so("events_good")));
    const auto old_cwd = std::filesystem::current_path();
    nk::test::RunResult defaults, absolute;
    {
        ScopedTmpdir tmpdir(tmp.path());
        std::filesystem::current_path(cwd.path());
        // Defaults: data_dir ./data, runtime.path ./data/modules (missing: a failure, not
        // created).
        defaults = nk::test::run_nkhost({"check"});
        absolute = nk::test::run_nkhost({"check", "--runtime.path", (plugins / "modules").string()});
        std::filesystem::current_path(old_cwd);
    }

    CAPTURE(defaults.output);
    CAPTURE(absolute.output);
    CHECK(defaults.exit_code == 1);
    CHECK(has_line(defaults.output,
                   "FAIL runtime.path " + (cwd / "data/modules").string() + " does not exist"));
    CHECK(absolute.exit_code == 0);
    CHECK(has_line_starting(absolute.output,
                            "OK   " + (plugins / "modules/events_good.so").string() + " (ABI "));
    CHECK(std::filesystem::is_empty(cwd.path()));
    CHECK(std::filesystem::is_empty(tmp.path()));  // the scratch directory is gone
    std::vector<std::string> left;
    for (const auto& e : std::filesystem::recursive_directory_iterator(plugins.path()))
        left.push_back(e.path().lexically_relative(plugins.path()).string());
    CHECK(left == std::vector<std::string>{"modules", "modules/events_good.so"});
}

TEST_CASE("a static constructor that throws: the process dies naming the plugin and the exception") {
    // The exception either terminates inside dlopen or comes out of it with the dynamic
    // loader's lock still held (any later load or unload on another thread would hang): both
    // end the process with one line naming the plugin and the exception.
    TempDir dir;
    const auto r = check_fixtures(dir, {"static_init_throws"});
    CAPTURE(r.output);
    const std::string file = (dir / "modules/static_init_throws.so").string();
    CHECK(r.exit_code == 128 + SIGABRT);
    CHECK(has_line(r.output, "loading " + file));
    CHECK(r.output.find(file + ": aborting: an exception escaped the plugin's static "
                               "initialisation (or it called std::terminate) while loading: "
                               "static config file missing; do no work in static constructors, "
                               "move it into InitModule (docs/plugin-pitfalls.md)") !=
          std::string::npos);
}

TEST_CASE("a static constructor calling std::terminate: the process dies naming the plugin") {
    TempDir dir;
    const auto r = check_fixtures(dir, {"static_init_terminate"});
    CAPTURE(r.output);
    const std::string file = (dir / "modules/static_init_terminate.so").string();
    CHECK(r.exit_code == 128 + SIGABRT);
    const auto loading = r.output.find("loading " + file + "\n");
    const auto aborting =
        r.output.find(file + ": aborting: an exception escaped the plugin's static initialisation "
                             "(or it called std::terminate) while loading");
    CHECK(loading != std::string::npos);
    REQUIRE(aborting != std::string::npos);
    CHECK(loading < aborting);

    // The server: the log's last lines name the plugin too.
    const auto port = nk::test::free_port();
    const auto s = nk::test::run_nkhost({"--socket.address", "127.0.0.1", "--socket.port",
                                         std::to_string(port), "--data_dir",
                                         (dir / "data").string(), "--runtime.path",
                                         (dir / "modules").string()});
    CAPTURE(s.output);
    CHECK(s.exit_code == 128 + SIGABRT);
    CHECK(s.output.find(" info loading " + file + "\n") != std::string::npos);
    CHECK(s.output.find(file + ": aborting: an exception escaped the plugin's static "
                               "initialisation") != std::string::npos);
}

TEST_CASE("nkhost --help lists check; nkhost check --help prints its usage and exits 0") {
    auto r = nk::test::run_nkhost({"--help"});
    CHECK(r.exit_code == 0);
    CHECK(r.output.find("nkhost check [options]") != std::string::npos);
    for (const char* flag : {"--help", "-h"}) {
        r = nk::test::run_nkhost({"check", flag});
        CAPTURE(r.output);
        CHECK(r.exit_code == 0);
        CHECK(r.output.rfind("Usage: nkhost check [options]\n", 0) == 0);
        CHECK(r.output.find("--runtime.path DIR") != std::string::npos);
        CHECK(r.output.find("--data_dir DIR") != std::string::npos);
        CHECK(r.output.find("--config FILE") != std::string::npos);
        CHECK(r.output.find("Exit codes:") != std::string::npos);
        CHECK(r.output.find("runtime.event_queue_size") == std::string::npos);  // not the server's
    }
}
