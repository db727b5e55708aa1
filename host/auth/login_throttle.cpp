#include "auth/login_throttle.hpp"

#include <algorithm>
#include <vector>

namespace nk::auth {

LoginThrottle::LoginThrottle(const LoginThrottleOptions& options)
    : options_(options), window_(std::chrono::seconds(std::max<std::uint32_t>(1, options.window_sec))) {}

// The two key spaces cannot collide: a pair key holds a NUL, an address key starts with one.
std::string LoginThrottle::pair_key(std::string_view account, std::string_view address) {
    std::string key(account);
    key += '\0';
    key += address;
    return key;
}

std::string LoginThrottle::address_key(std::string_view address) {
    std::string key(1, '\0');
    key += address;
    return key;
}

std::uint32_t LoginThrottle::failures(const std::string& key, Clock::time_point now,
                                      Clock::time_point& start) const {
    auto it = windows_.find(key);
    if (it == windows_.end() || now - it->second.start >= window_) return 0;
    start = it->second.start;
    return it->second.failures;
}

LoginThrottle::Verdict LoginThrottle::check(std::string_view account, std::string_view address,
                                            Clock::time_point now) const {
    Verdict v;
    std::lock_guard lock(mutex_);
    auto trip = [&](std::uint32_t limit, const std::string& key, Limit which) {
        Clock::time_point start;
        if (limit == 0 || failures(key, now, start) < limit) return false;
        const auto left = std::chrono::ceil<std::chrono::seconds>(start + window_ - now);
        v.limit = which;
        v.retry_after = std::max(left, std::chrono::seconds(1));
        return true;
    };
    if (trip(options_.failures_per_account_address, pair_key(account, address), Limit::account_address))
        return v;
    trip(options_.failures_per_address, address_key(address), Limit::address);
    return v;
}

void LoginThrottle::failed(std::string_view account, std::string_view address, Clock::time_point now) {
    std::lock_guard lock(mutex_);
    if (options_.failures_per_account_address != 0) count(pair_key(account, address), now);
    if (options_.failures_per_address != 0) count(address_key(address), now);
}

void LoginThrottle::succeeded(std::string_view account, std::string_view address) {
    std::lock_guard lock(mutex_);
    windows_.erase(pair_key(account, address));
}

std::size_t LoginThrottle::tracked() const {
    std::lock_guard lock(mutex_);
    return windows_.size();
}

void LoginThrottle::count(std::string key, Clock::time_point now) {
    auto it = windows_.find(key);
    if (it == windows_.end()) {
        make_room(now);
        windows_.emplace(std::move(key), Window{now, 1});
        return;
    }
    Window& w = it->second;
    if (now - w.start >= window_) {
        w = Window{now, 1};
    } else if (w.failures < UINT32_MAX) {
        ++w.failures;
    }
}

// Amortised: a sweep happens only when the table is full, and frees at least an eighth of it.
void LoginThrottle::make_room(Clock::time_point now) {
    const std::size_t cap = std::max<std::uint32_t>(1, options_.max_keys);
    if (windows_.size() < cap) return;
    std::erase_if(windows_, [&](const auto& kv) { return now - kv.second.start >= window_; });
    if (windows_.size() + cap / 8 < cap) return;
    // Still full of live windows: forget the oldest, which are the closest to ending anyway.
    std::vector<Clock::time_point> starts;
    starts.reserve(windows_.size());
    for (const auto& kv : windows_) starts.push_back(kv.second.start);
    const std::size_t drop = std::max<std::size_t>(1, cap / 8);
    std::nth_element(starts.begin(), starts.begin() + static_cast<std::ptrdiff_t>(drop - 1), starts.end());
    const auto cutoff = starts[drop - 1];
    std::size_t dropped = 0;
    for (auto it = windows_.begin(); it != windows_.end() && dropped < drop;) {
        if (it->second.start <= cutoff) {
            it = windows_.erase(it);
            ++dropped;
        } else {
            ++it;
        }
    }
}

}  // namespace nk::auth
