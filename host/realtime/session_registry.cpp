#include "realtime/session_registry.hpp"

namespace nk::realtime {

bool SessionRegistry::add(const std::shared_ptr<Session>& session,
                          std::vector<std::shared_ptr<Session>>* same_user) {
    std::lock_guard lock(mutex_);
    if (closed_) return false;
    const std::string& user_id = session->info().user_id;
    if (same_user) {
        if (auto user = by_user_.find(user_id); user != by_user_.end()) {
            same_user->reserve(user->second.size());
            for (Session* s : user->second) same_user->push_back(s->shared_from_this());
        }
    }
    if (by_id_.emplace(session->id(), session).second) by_user_[user_id].insert(session.get());
    return true;
}

bool SessionRegistry::remove(const std::string& session_id) {
    std::shared_ptr<Session> removed;  // released outside the lock
    {
        std::lock_guard lock(mutex_);
        auto it = by_id_.find(session_id);
        if (it == by_id_.end()) return false;
        removed = std::move(it->second);
        by_id_.erase(it);
        if (auto user = by_user_.find(removed->info().user_id); user != by_user_.end()) {
            user->second.erase(removed.get());
            if (user->second.empty()) by_user_.erase(user);
        }
        if (by_id_.empty()) emptied_.notify_all();
    }
    return true;
}

std::shared_ptr<Session> SessionRegistry::find(const std::string& session_id) const {
    std::lock_guard lock(mutex_);
    auto it = by_id_.find(session_id);
    return it == by_id_.end() ? nullptr : it->second;
}

std::vector<std::shared_ptr<Session>> SessionRegistry::for_user(const std::string& user_id) const {
    std::vector<std::shared_ptr<Session>> out;
    std::lock_guard lock(mutex_);
    if (auto user = by_user_.find(user_id); user != by_user_.end()) {
        out.reserve(user->second.size());
        for (Session* s : user->second) out.push_back(s->shared_from_this());
    }
    return out;
}

std::vector<std::shared_ptr<Session>> SessionRegistry::all() const {
    std::vector<std::shared_ptr<Session>> out;
    std::lock_guard lock(mutex_);
    out.reserve(by_id_.size());
    for (const auto& [id, session] : by_id_) out.push_back(session);
    return out;
}

std::size_t SessionRegistry::size() const {
    std::lock_guard lock(mutex_);
    return by_id_.size();
}

void SessionRegistry::close_for_new() {
    std::lock_guard lock(mutex_);
    closed_ = true;
}

bool SessionRegistry::wait_empty(std::chrono::steady_clock::time_point deadline) const {
    std::unique_lock lock(mutex_);
    return emptied_.wait_until(lock, deadline, [&] { return by_id_.empty(); });
}

}  // namespace nk::realtime
