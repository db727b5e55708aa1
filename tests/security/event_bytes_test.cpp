// The event queue's byte budget (runtime.event_queue_max_bytes): one client posting large events
// must not fill memory while the queue is far from its count bound. A handler of the
// slow_handler fixture holds the only worker, so every later event stays queued; the budget is
// cut to 64 KiB so the bound trips after a handful of 16 KB events.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "security_support.hpp"

using nk::test::Nkhost;

namespace {

constexpr int kQueueSize = 65536;
constexpr std::size_t kMaxBytes = 64 * 1024;
constexpr std::size_t kValueBytes = 16000;
constexpr int kPosts = 20;  // 320 KB offered: five times the budget, 0.03% of the count bound

std::vector<std::string> options(const std::string& policy) {
    return {"--runtime.path",
            (nk::test::build_dir() / "fixtures" / "slow_handler").string(),
            "--runtime.event_queue_workers",
            "1",
            "--runtime.event_queue_size",
            std::to_string(kQueueSize),
            "--runtime.event_queue_max_bytes",
            std::to_string(kMaxBytes),
            "--runtime.event_queue_full_policy",
            policy};
}

std::string big_event() {
    return R"({"name":"big","properties":{"v":")" + std::string(kValueBytes, 'x') + R"("}})";
}

// Holds the only worker for longer than the test runs (the process is killed at the end).
void block_worker(httplib::Client& c) {
    auto res = c.Post("/v2/event", R"({"name":"block","properties":{"sleep_ms":"600000"}})",
                      "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
}

}  // namespace

TEST_CASE("policy reject: events over runtime.event_queue_max_bytes answer 503 code 14") {
    Nkhost host(options("reject"));
    auto c = host.client();
    c->set_bearer_token_auth(host.device_token("event-bytes-reject-device"));
    block_worker(*c);

    int accepted = 0, rejected = 0;
    for (int i = 0; i < kPosts; ++i) {
        auto res = c->Post("/v2/event", big_event(), "application/json");
        REQUIRE(res);
        if (res->status == 200) {
            ++accepted;
        } else {
            REQUIRE(res->status == 503);
            CHECK(res->body.find("\"code\":14") != std::string::npos);
            CHECK(res->has_header("Retry-After"));
            ++rejected;
        }
    }
    // Four 16 KB events fit beside the blocker in 64 KiB; never more than the budget allows.
    CHECK(accepted >= 1);
    CHECK(static_cast<std::size_t>(accepted) * kValueBytes <= kMaxBytes);
    CHECK(rejected == kPosts - accepted);
    CHECK(host.metric("nkhost_event_queue_bytes_full") == rejected);
    CHECK(host.metric("nkhost_events_rejected", {"kind=\"custom\""}) == rejected);
    // Held well below the count bound: the byte budget tripped, not the count.
    CHECK(host.metric("nkhost_event_queue_depth") < kQueueSize / 1000);
    CHECK(host.metric("nkhost_event_queue_bytes") <= static_cast<double>(kMaxBytes));
    CHECK(host.metric("nkhost_event_queue_max_bytes") == static_cast<double>(kMaxBytes));
}

TEST_CASE("policy drop: events over runtime.event_queue_max_bytes answer 200 and are counted") {
    Nkhost host(options("drop"));
    auto c = host.client();
    c->set_bearer_token_auth(host.device_token("event-bytes-drop-device"));
    block_worker(*c);

    for (int i = 0; i < kPosts; ++i) {
        auto res = c->Post("/v2/event", big_event(), "application/json");
        REQUIRE(res);
        CHECK(res->status == 200);  // Nakama answers 200 and counts the drop
    }
    const double dropped = host.metric("nkhost_dropped_events");
    CHECK(dropped >= kPosts - static_cast<double>(kMaxBytes / kValueBytes));
    CHECK(host.metric("nkhost_event_queue_bytes_full") == dropped);
    CHECK(host.metric("nkhost_events_dropped", {"kind=\"custom\""}) == dropped);
    CHECK(host.metric("nkhost_event_queue_depth") < kQueueSize / 1000);
}
