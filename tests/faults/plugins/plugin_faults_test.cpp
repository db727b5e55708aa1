// Plugin code that misbehaves inside the real server: an event handler that throws, one that is
// slow, one that never returns, and an RPC that never returns. The server keeps serving the
// rest, reports the stuck calls (log line and metrics naming the module and how long), and a
// SIGTERM still ends the process within shutdown_grace_sec, saying what it could not handle.
#include <doctest/doctest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace std::chrono_literals;

namespace {

constexpr int kWorkers = 3;
constexpr int kGraceSec = 2;

Nkhost start_server() {
    return Nkhost({"--runtime.path", NK_MISBEHAVING_DIR, "--runtime.event_queue_workers",
                   std::to_string(kWorkers), "--runtime.stuck_call_ms", "1500",
                   "--shutdown_grace_sec", std::to_string(kGraceSec), "--logger.level", "info"});
}

bool post_event(httplib::Client& c, const std::string& body) {
    auto res = c.Post("/v2/event", body, "application/json");
    return res && res->status == 200;
}

std::string counted(const Nkhost& host) {
    auto c = host.client();
    auto res = c->Get("/v2/rpc/counted?http_key=defaulthttpkey&unwrap");
    return res && res->status == 200 ? res->body : "no answer";
}

// "... N accepted events not handled within the shutdown grace ..." -> N, or -1.
long unhandled_in(const std::string& log) {
    std::smatch m;
    if (std::regex_search(log, m, std::regex(R"((\d+) accepted events not handled)")))
        return std::stol(m[1]);
    return -1;
}

}  // namespace

TEST_CASE("event handlers that throw, stall or never return: the rest is served, the stuck one "
          "is reported, SIGTERM still ends within the grace") {
    Nkhost host = start_server();
    auto c = host.client();
    c->set_bearer_token_auth(host.device_token("faulty-events-1"));

    // One worker of three is taken for good; the other two keep handling everything else.
    REQUIRE(post_event(*c, R"({"name":"hang"})"));
    for (int i = 0; i < 30; ++i)
        REQUIRE(post_event(*c, R"({"name":"throw"})"));
    for (int i = 0; i < 3; ++i)
        REQUIRE(post_event(*c, R"({"name":"slow","properties":{"sleep_ms":"100"}})"));
    for (int i = 0; i < 200; ++i)
        REQUIRE(post_event(*c, R"({"name":"count"})"));
    CHECK(wait_until([&] { return counted(host) == "203"; }));  // 200 + the 3 slow ones
    CHECK(wait_until([&] { return host.metric("nkhost_event_handler_errors") == 30; }));
    CHECK(host.metric("nkhost_plugin_faults", {"module=\"misbehaving\"", "call=\"event\""}) == 30);

    // The stuck call is reported: log line with module, call and time; counted once; gauges.
    CHECK(host.process().wait_for_output(
        "Module misbehaving: event call 'hang' still running after"));
    CHECK(wait_until([&] {
        return host.metric("nkhost_plugin_calls_stuck",
                           {"module=\"misbehaving\"", "call=\"event\""}) == 1;
    }));
    CHECK(host.metric("nkhost_plugin_calls_stuck_running") == 1);
    CHECK(host.metric("nkhost_plugin_call_longest_running_ms") >= 1500);
    // Reported again as it keeps running (at twice the threshold), still counted once.
    const auto reports = [&] {
        const std::string log = host.output();
        std::size_t n = 0;
        for (auto at = log.find("event call 'hang' still running after"); at != std::string::npos;
             at = log.find("event call 'hang' still running after", at + 1))
            ++n;
        return n;
    };
    CHECK(wait_until([&] { return reports() >= 2; }));
    CHECK(host.metric("nkhost_plugin_calls_stuck", {"module=\"misbehaving\""}) == 1);
    // The throwing and the slow handler were never reported as stuck.
    CHECK(host.output().find("call 'throw' still running") == std::string::npos);
    CHECK(host.output().find("call 'slow' still running") == std::string::npos);

    // Every worker stuck: what is accepted now waits in the queue and cannot be handled.
    for (int i = 1; i < kWorkers; ++i)
        REQUIRE(post_event(*c, R"({"name":"hang"})"));
    CHECK(wait_until([&] { return host.metric("nkhost_plugin_calls_stuck_running") == kWorkers; }));
    for (int i = 0; i < 10; ++i)
        REQUIRE(post_event(*c, R"({"name":"count"})"));
    CHECK(counted(host) == "203");
    // Other requests are still served.
    CHECK(c->Get("/v2/account"));
    CHECK(c->Get("/v2/account")->status == 200);

    const auto t0 = std::chrono::steady_clock::now();
    const int code = host.process().stop(SIGTERM, 60s);
    const auto took = std::chrono::steady_clock::now() - t0;
    CHECK(code == 0);
    // "Within the grace": the grace itself plus the fixed steps after it (a half-second look
    // at the workers, closing sockets); far below what a wait for the stuck calls would take.
    CHECK(took < std::chrono::seconds(kGraceSec + 8));
    const std::string log = host.output();
    const long unhandled = unhandled_in(log);
    CHECK(unhandled >= 10);  // the 10 queued (the 3 stuck ones count too while held)
    CHECK(unhandled <= 10 + kWorkers);
    CHECK(log.find("event worker(s) still inside a plugin event handler") != std::string::npos);
    CHECK(log.find("exiting without waiting for plugin code still running") != std::string::npos);
}

TEST_CASE("an RPC that never returns is reported; other RPCs are served; SIGTERM ends the "
          "process within the grace") {
    Nkhost host = start_server();
    std::atomic<bool> answered{false};
    std::thread stuck([&] {
        auto c = host.client();
        c->set_read_timeout(120, 0);
        auto res = c->Get("/v2/rpc/hang?http_key=defaulthttpkey&unwrap");
        answered = true;
        (void)res;  // no answer, or the connection closed at shutdown
    });
    struct Join {
        std::thread& t;
        ~Join() {
            if (t.joinable())
                t.join();
        }
    } join{stuck};

    CHECK(host.process().wait_for_output(
        "Module misbehaving: rpc call 'hang' still running after"));
    CHECK(host.metric("nkhost_plugin_calls_stuck", {"module=\"misbehaving\"", "call=\"rpc\""}) ==
          1);
    for (int i = 0; i < 20; ++i)
        CHECK(counted(host) == "0");
    CHECK_FALSE(answered.load());

    const auto t0 = std::chrono::steady_clock::now();
    CHECK(host.process().stop(SIGTERM, 60s) == 0);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(kGraceSec + 8));
    const std::string log = host.output();
    CHECK(log.find("blocking pool thread(s) still running a request after the grace") !=
          std::string::npos);
    stuck.join();  // the process is gone: the client's connection closed
    CHECK(answered.load());
}
