// LoginThrottle: failed password logins counted per fixed window, on two keys:
// the (account, client address) pair, so an attacker elsewhere cannot lock a
// known account out, and the client address alone with a higher limit, so
// one address cannot try many accounts. Callers check() before spending any
// bcrypt work and report the outcome afterwards.
//
// Memory is bounded: at most max_keys keys are tracked; windows that have
// ended are forgotten first, then the oldest windows. Thread-safe (one mutex;
// every call is a hash-map lookup).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace nk::auth {

// Config keys session.login_*. A limit of 0 turns that limit off.
struct LoginThrottleOptions {
    std::uint32_t failures_per_account_address = 10;  // session.login_failures_per_account_address
    std::uint32_t failures_per_address = 100;         // session.login_failures_per_address
    std::uint32_t window_sec = 60;                    // session.login_failure_window_sec
    std::uint32_t max_keys = 100000;                  // session.login_throttle_max_keys
};

class LoginThrottle {
public:
    using Clock = std::chrono::steady_clock;

    enum class Limit { none, account_address, address };
    struct Verdict {
        Limit limit = Limit::none;  // none: the attempt may go ahead
        std::chrono::seconds retry_after{0};  // until the window that tripped ends (>= 1 s)
        explicit operator bool() const { return limit == Limit::none; }
    };

    explicit LoginThrottle(const LoginThrottleOptions& options);

    // Whether a login for `account` from `address` may be attempted now. Counts nothing.
    Verdict check(std::string_view account, std::string_view address,
                  Clock::time_point now = Clock::now()) const;
    // A failed attempt: counts against both keys.
    void failed(std::string_view account, std::string_view address,
                Clock::time_point now = Clock::now());
    // A successful one: forgets the pair's failures (the address's stay counted).
    void succeeded(std::string_view account, std::string_view address);

    std::size_t tracked() const;

private:
    struct Window {
        Clock::time_point start;
        std::uint32_t failures = 0;
    };
    static std::string pair_key(std::string_view account, std::string_view address);
    static std::string address_key(std::string_view address);
    // Under the lock: the failures of `key`'s current window (0 when none).
    std::uint32_t failures(const std::string& key, Clock::time_point now,
                           Clock::time_point& start) const;
    void count(std::string key, Clock::time_point now);
    void make_room(Clock::time_point now);

    const LoginThrottleOptions options_;
    const Clock::duration window_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, Window> windows_;
};

}  // namespace nk::auth
