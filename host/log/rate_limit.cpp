#include "log/rate_limit.hpp"

namespace nk::log {

std::optional<std::uint64_t> RateLimit::allow(Clock::time_point now) {
    std::lock_guard lock(mutex_);
    if (last_ && now - *last_ < interval_) {
        ++suppressed_;
        return std::nullopt;
    }
    last_ = now;
    const std::uint64_t held_back = suppressed_;
    suppressed_ = 0;
    return held_back;
}

}  // namespace nk::log
