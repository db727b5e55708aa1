// Work that piles up: the blocking queue is bounded by count and bytes (503 code 14 with
// Retry-After), queued work whose client has gone is dropped unrun, password hashing is held
// to its share of the pool, and failed password logins are throttled per (account, address)
// and per address, with X-Forwarded-For trusted only when socket.proxy_count says so.
//
// Work is held in the pool by the gate fixture (tests/fixtures/gate.cpp): its RPC "gate" and
// its before-hook of email authentication (emails starting with "gate") wait until the test
// creates <dir>/open, and leave a started-<kind>-<n> file when they begin.
#include <doctest/doctest.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "security_support.hpp"
#include "support/wait.hpp"

namespace fs = std::filesystem;
using namespace nk::test;

namespace {

constexpr const char* kMetricRejected = "nkhost_blocking_queue_rejected";
constexpr const char* kMetricAbandoned = "nkhost_blocking_queue_abandoned";
constexpr const char* kMetricDepth = "nkhost_blocking_queue_depth";
constexpr const char* kMetricThrottled = "nkhost_login_throttled";

// A server whose plugin is the gate fixture, holding work until open() is called.
struct GatedServer {
    TempDir gate_dir;
    std::unique_ptr<Nkhost> server;

    explicit GatedServer(std::vector<std::string> extra) {
        extra.insert(extra.end(), {"--runtime.path", (build_dir() / "fixtures" / "gate").string(),
                                   "--runtime.env", "GATE_DIR=" + gate_dir.path().string(),
                                   "--database.bcrypt_cost", "4"});
        server = std::make_unique<Nkhost>(std::move(extra));
    }
    int started(const std::string& kind) const {
        int n = 0;
        for (const auto& e : fs::directory_iterator(gate_dir.path()))
            if (e.path().filename().string().rfind("started-" + kind + "-", 0) == 0) ++n;
        return n;
    }
    void open() const { write_file(gate_dir / "open", ""); }
};

std::string http_post(const std::string& target, const std::string& body,
                      const std::string& extra_headers = "") {
    return "POST " + target + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
           extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

// A gate RPC with a JSON-string payload of `payload_bytes` bytes.
std::string gate_rpc(std::size_t payload_bytes = 1) {
    return http_post("/v2/rpc/gate?http_key=defaulthttpkey",
                     "\"" + std::string(payload_bytes, 'p') + "\"");
}

std::string email_auth(const std::string& email, const std::string& password, bool create,
                       const std::string& extra_headers = "") {
    return http_post(std::string("/v2/account/authenticate/email?create=") +
                         (create ? "true" : "false"),
                     "{\"email\":\"" + email + "\",\"password\":\"" + password + "\"}",
                     "Authorization: Basic ZGVmYXVsdGtleTo=\r\n" + extra_headers);
}

// Opens one connection per request, sends it, and leaves the connection open.
std::vector<std::unique_ptr<RawConnection>> send_each(std::uint16_t port,
                                                      const std::vector<std::string>& requests) {
    std::vector<std::unique_ptr<RawConnection>> conns;
    for (const auto& r : requests) {
        conns.push_back(std::make_unique<RawConnection>(port));
        REQUIRE(conns.back()->send(r));
    }
    return conns;
}

// One request on its own connection; the whole response.
std::string exchange(std::uint16_t port, const std::string& request) {
    RawConnection c(port);
    REQUIRE(c.send(request));
    return c.read_response();
}

bool has_header(const std::string& response, const std::string& name) {
    const auto head = response.substr(0, response.find("\r\n\r\n"));
    return head.find("\r\n" + name + ":") != std::string::npos;
}

}  // namespace

TEST_CASE("a full blocking queue answers 503 code 14 with Retry-After, counted") {
    GatedServer g({"--socket.blocking_threads", "2", "--socket.blocking_queue_size", "8"});
    const auto port = g.server->port();
    auto depth = [&](const char* lane) {
        return g.server->metric(kMetricDepth, {std::string("lane=\"") + lane + "\""});
    };
    auto running = send_each(port, {gate_rpc(), gate_rpc()});
    REQUIRE(wait_until([&] { return g.started("rpc") == 2; }));
    CHECK(depth("general") == 0);  // running jobs are not queued

    // Eight fit in the queue behind the two running; the ninth is refused (whichever it is).
    auto queued = send_each(port, std::vector<std::string>(9, gate_rpc()));
    REQUIRE(wait_until([&] { return g.server->metric(kMetricRejected) == 1; }));
    CHECK(g.server->metric(kMetricRejected, {"limit=\"count\""}) == 1);
    CHECK(depth("general") == 8);
    CHECK(depth("password") == 0);
    g.open();
    int ok = 0;
    int refused = 0;
    for (auto& c : queued) {
        const std::string r = c->read_response();
        if (status_of(r) == 200) ++ok;
        if (status_of(r) == 503) {
            ++refused;
            CHECK(r.find("\"code\":14") != std::string::npos);
            CHECK(has_header(r, "Retry-After"));
        }
    }
    CHECK(ok == 8);
    CHECK(refused == 1);
    for (auto& c : running) CHECK(status_of(c->read_response()) == 200);
    CHECK(depth("general") == 0);
}

TEST_CASE("the blocking queue is bounded by the bytes its requests hold") {
    GatedServer g({"--socket.blocking_threads", "1", "--socket.blocking_queue_max_bytes", "100000"});
    const auto port = g.server->port();
    auto running = send_each(port, {gate_rpc()});
    REQUIRE(wait_until([&] { return g.started("rpc") == 1; }));

    // Two 40 KB payloads fit in 100 KB; a third would not.
    auto queued = send_each(port, std::vector<std::string>(3, gate_rpc(40000)));
    REQUIRE(wait_until([&] { return g.server->metric(kMetricRejected) == 1; }));
    CHECK(g.server->metric(kMetricRejected, {"limit=\"bytes\""}) == 1);
    g.open();
    int refused = 0;
    for (auto& c : queued) {
        const std::string r = c->read_response();
        if (status_of(r) == 503) {
            ++refused;
            CHECK(has_header(r, "Retry-After"));
        } else {
            CHECK(status_of(r) == 200);
        }
    }
    CHECK(refused == 1);
}

TEST_CASE("queued work whose client has gone is dropped unrun") {
    GatedServer g({"--socket.blocking_threads", "2"});
    const auto port = g.server->port();
    auto running = send_each(port, {gate_rpc(), gate_rpc()});
    REQUIRE(wait_until([&] { return g.started("rpc") == 2; }));
    {
        auto abandoned = send_each(port, std::vector<std::string>(5, gate_rpc(1000)));
    }  // closed before any of them could run
    // The server notices a close only while it waits for the pool; give its io threads a moment.
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    g.open();
    for (auto& c : running) CHECK(status_of(c->read_response()) == 200);
    REQUIRE(wait_until([&] { return g.server->metric(kMetricAbandoned) == 5; }));
    // A later request runs normally; the abandoned ones never started.
    CHECK(status_of(exchange(port, gate_rpc())) == 200);
    CHECK(g.started("rpc") == 3);
}

TEST_CASE("password hashing is held to its share of the pool; other requests keep running") {
    // Four blocking threads: password work gets one (a quarter) by default.
    GatedServer g({"--socket.blocking_threads", "4"});
    const auto port = g.server->port();
    std::vector<std::string> logins;
    for (int i = 0; i < 4; ++i)
        logins.push_back(email_auth("gate" + std::to_string(i) + "@example.com", "password1", true));
    auto held = send_each(port, logins);
    REQUIRE(wait_until([&] { return g.started("email") >= 1; }));
    // The other three wait in the password lane (gauge blocking_queue_depth{lane="password"}).
    CHECK(wait_until([&] {
        return g.server->metric(kMetricDepth, {"lane=\"password\""}) == 3;
    }));

    // A device authentication completes while every password login is held.
    CHECK(!g.server->device_token("device-while-hashing").empty());
    CHECK(g.started("email") == 1);
    g.open();
    for (auto& c : held) CHECK(status_of(c->read_response()) == 200);
    CHECK(g.started("email") == 4);
}

TEST_CASE("failed logins are throttled per (account, address) before hashing") {
    // proxy_count 1: X-Forwarded-For names the client, so one test can be two addresses.
    GatedServer g({"--socket.proxy_count", "1"});
    const auto port = g.server->port();
    const std::string from_a = "X-Forwarded-For: 203.0.113.1\r\n";
    const std::string from_b = "X-Forwarded-For: 203.0.113.2\r\n";
    REQUIRE(status_of(exchange(port, email_auth("victim@example.com", "right-password", true,
                                                from_a))) == 200);
    for (int i = 0; i < 10; ++i) {
        CHECK(status_of(exchange(port, email_auth("victim@example.com", "wrong-password", false,
                                                  from_a))) == 401);
    }
    const std::string throttled =
        exchange(port, email_auth("victim@example.com", "right-password", false, from_a));
    CHECK(status_of(throttled) == 429);
    CHECK(throttled.find("\"code\":8") != std::string::npos);
    CHECK(has_header(throttled, "Retry-After"));
    CHECK(g.server->metric(kMetricThrottled, {"limit=\"account_address\""}) == 1);
    // The owner elsewhere is not locked out.
    CHECK(status_of(exchange(port, email_auth("victim@example.com", "right-password", false,
                                              from_b))) == 200);
}

TEST_CASE("per-address throttling ignores X-Forwarded-For unless a proxy is configured") {
    const std::vector<std::string> limits = {"--session.login_failures_per_address", "5"};
    auto attempt = [](std::uint16_t port, int i) {
        // A different account and a different claimed address every time.
        return status_of(exchange(port, email_auth("nobody" + std::to_string(i) + "@example.com",
                                                   "wrong-password", false,
                                                   "X-Forwarded-For: 198.51.100." +
                                                       std::to_string(i) + "\r\n")));
    };
    {
        GatedServer g(limits);  // default socket.proxy_count: the peer address counts
        for (int i = 0; i < 5; ++i) CHECK(attempt(g.server->port(), i) == 404);
        CHECK(attempt(g.server->port(), 5) == 429);
        CHECK(g.server->metric(kMetricThrottled, {"limit=\"address\""}) == 1);
    }
    {
        auto args = limits;
        args.insert(args.end(), {"--socket.proxy_count", "1"});
        GatedServer g(args);  // behind a proxy the header names the client
        for (int i = 0; i < 8; ++i) CHECK(attempt(g.server->port(), i) == 404);
        CHECK(g.server->metric(kMetricThrottled) == 0);
    }
}
