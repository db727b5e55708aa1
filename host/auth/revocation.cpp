#include "auth/revocation.hpp"

namespace nk::auth {

namespace {
constexpr std::int64_t kSweepIntervalSec = 30;
}

RevocationCache::RevocationCache(std::int64_t user_invalidation_ttl_sec)
    : user_ttl_(user_invalidation_ttl_sec) {}

void RevocationCache::revoke_session(const std::string& tid, std::int64_t expires_at,
                                     std::int64_t now) {
    std::unique_lock lock(mutex_);
    sweep_locked(now);
    auto& until = sessions_[tid];
    if (expires_at > until)
        until = expires_at;
}

void RevocationCache::revoke_refresh(const std::string& tid, std::int64_t expires_at,
                                     std::int64_t now) {
    std::unique_lock lock(mutex_);
    sweep_locked(now);
    auto& until = refreshes_[tid];
    if (expires_at > until)
        until = expires_at;
}

void RevocationCache::restore_session(const std::string& tid) {
    std::unique_lock lock(mutex_);
    sessions_.erase(tid);
}

void RevocationCache::revoke_user(const std::string& user_id, std::int64_t now) {
    std::unique_lock lock(mutex_);
    sweep_locked(now);
    auto& entry = users_[user_id];
    if (entry.at > now)
        return;
    // Everything issued until now dies, including tokens minted earlier in this same second.
    entry.issued_at.clear();
    entry.at = now;
}

bool RevocationCache::invalidated_at(const std::string& user_id, std::int64_t at) const {
    std::shared_lock lock(mutex_);
    auto it = users_.find(user_id);
    return it != users_.end() && it->second.at == at;
}

void RevocationCache::note_issued(const std::string& user_id, const std::string& tid,
                                  std::int64_t iat) {
    {
        std::shared_lock lock(mutex_);
        auto it = users_.find(user_id);
        if (it == users_.end() || it->second.at != iat)
            return;
    }
    std::unique_lock lock(mutex_);
    auto it = users_.find(user_id);
    if (it != users_.end() && it->second.at == iat)
        it->second.issued_at.insert(tid);
}

bool RevocationCache::user_valid_locked(const std::string& user_id, const std::string& tid,
                                        std::int64_t iat) const {
    auto it = users_.find(user_id);
    if (it == users_.end())
        return true;
    if (iat > it->second.at)
        return true;
    if (iat < it->second.at)
        return false;
    return it->second.issued_at.count(tid) != 0;
}

bool RevocationCache::session_valid(const std::string& user_id, const std::string& tid,
                                    std::int64_t iat) const {
    std::shared_lock lock(mutex_);
    if (sessions_.count(tid) != 0)
        return false;
    return user_valid_locked(user_id, tid, iat);
}

bool RevocationCache::refresh_valid(const std::string& user_id, const std::string& tid,
                                    std::int64_t iat) const {
    std::shared_lock lock(mutex_);
    if (refreshes_.count(tid) != 0)
        return false;
    return user_valid_locked(user_id, tid, iat);
}

std::size_t RevocationCache::size() const {
    std::shared_lock lock(mutex_);
    return sessions_.size() + refreshes_.size() + users_.size();
}

void RevocationCache::sweep_locked(std::int64_t now) {
    if (now < next_sweep_)
        return;
    next_sweep_ = now + kSweepIntervalSec;
    std::erase_if(sessions_, [now](const auto& e) { return e.second < now; });
    std::erase_if(refreshes_, [now](const auto& e) { return e.second < now; });
    std::erase_if(users_, [&](const auto& e) { return e.second.at + user_ttl_ < now; });
}

}  // namespace nk::auth
