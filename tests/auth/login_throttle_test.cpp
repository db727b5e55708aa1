#include <doctest/doctest.h>

#include <chrono>
#include <string>

#include "auth/login_throttle.hpp"

using nk::auth::LoginThrottle;
using Limit = LoginThrottle::Limit;
using namespace std::chrono_literals;

namespace {

nk::auth::LoginThrottleOptions options(std::uint32_t pair, std::uint32_t address,
                                       std::uint32_t max_keys = 1000) {
    nk::auth::LoginThrottleOptions o;
    o.failures_per_account_address = pair;
    o.failures_per_address = address;
    o.window_sec = 60;
    o.max_keys = max_keys;
    return o;
}

}  // namespace

TEST_CASE("login throttle: the pair limit trips only for that pair, until the window ends") {
    LoginThrottle t(options(3, 100));
    const auto t0 = LoginThrottle::Clock::now();
    for (int i = 0; i < 3; ++i) {
        CHECK(t.check("alice", "1.1.1.1", t0));
        t.failed("alice", "1.1.1.1", t0);
    }
    const auto v = t.check("alice", "1.1.1.1", t0 + 10s);
    CHECK(v.limit == Limit::account_address);
    CHECK(v.retry_after == 50s);
    CHECK(t.check("alice", "2.2.2.2", t0 + 10s));  // the owner elsewhere
    CHECK(t.check("bob", "1.1.1.1", t0 + 10s));
    CHECK(t.check("alice", "1.1.1.1", t0 + 60s));  // a new window
}

TEST_CASE("login throttle: the address limit spans accounts; success forgets only the pair") {
    LoginThrottle t(options(2, 3));
    const auto t0 = LoginThrottle::Clock::now();
    t.failed("a", "9.9.9.9", t0);
    t.failed("a", "9.9.9.9", t0);
    CHECK(t.check("a", "9.9.9.9", t0).limit == Limit::account_address);
    t.succeeded("a", "9.9.9.9");
    CHECK(t.check("a", "9.9.9.9", t0));
    t.failed("b", "9.9.9.9", t0);
    const auto v = t.check("c", "9.9.9.9", t0 + 59500ms);
    CHECK(v.limit == Limit::address);
    CHECK(v.retry_after == 1s);  // never 0
}

TEST_CASE("login throttle: limits of 0 are off; tracked keys stay under the cap") {
    LoginThrottle off(options(0, 0));
    for (int i = 0; i < 50; ++i) off.failed("a", "1.1.1.1");
    CHECK(off.check("a", "1.1.1.1"));
    CHECK(off.tracked() == 0);

    LoginThrottle t(options(5, 5, 64));
    const auto t0 = LoginThrottle::Clock::now();
    for (int i = 0; i < 1000; ++i) {
        t.failed("user" + std::to_string(i), "10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250),
                 t0 + std::chrono::milliseconds(i));
        CHECK(t.tracked() <= 64);
    }
    // The newest keys survive eviction.
    t.failed("user999", "10.0.3.249", t0 + 1s);
    t.failed("user999", "10.0.3.249", t0 + 1s);
    t.failed("user999", "10.0.3.249", t0 + 1s);
    t.failed("user999", "10.0.3.249", t0 + 1s);
    CHECK(t.check("user999", "10.0.3.249", t0 + 1s).limit == Limit::account_address);
}
