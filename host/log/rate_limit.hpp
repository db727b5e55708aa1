// RateLimit: lets at most one log line through per interval and counts the ones it held back,
// so a failure that repeats thousands of times a second (a full disk, a plugin logging per
// event) costs one line per interval that says how many were suppressed, not a line each.
//
// Usage:
//   static log::RateLimit limit(std::chrono::seconds(1));
//   if (auto suppressed = limit.allow())
//       log::write(spdlog::level::err, "...", {{"suppressed", std::to_string(*suppressed)}});
//
// Threading: allow() is thread-safe (a short mutex; it is only reached on error paths). One
// RateLimit per kind of message: sharing one between unrelated messages would hide one behind
// the other.
#pragma once

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>

namespace nk::log {

class RateLimit {
  public:
    using Clock = std::chrono::steady_clock;

    explicit RateLimit(Clock::duration interval) : interval_(interval) {}
    RateLimit(const RateLimit&) = delete;
    RateLimit& operator=(const RateLimit&) = delete;

    // nullopt: suppress this line (it is counted). Otherwise log it: the value is how many
    // lines were suppressed since the previous one that was let through.
    std::optional<std::uint64_t> allow(Clock::time_point now = Clock::now());

  private:
    const Clock::duration interval_;
    std::mutex mutex_;
    std::optional<Clock::time_point> last_;
    std::uint64_t suppressed_ = 0;
};

}  // namespace nk::log
