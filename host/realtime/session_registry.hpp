// SessionRegistry: the open realtime sessions, by session id and by user.
//
// Thread-safe (one mutex; add/remove/find are O(1), for_user O(sessions of that user), all()
// O(sessions)). Holds strong references:
// a session stays registered until it removes itself when it ends. After
// close_for_new(), add() refuses sessions, so a shutdown sees every session
// that will ever start.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "realtime/session.hpp"

namespace nk::realtime {

class SessionRegistry {
public:
    // Adds `session`. Returns false (and adds nothing) once closed for new sessions.
    // `same_user` receives the sessions of the same user that were already open.
    bool add(const std::shared_ptr<Session>& session,
             std::vector<std::shared_ptr<Session>>* same_user = nullptr);
    // Removes the session with this id (no-op when absent). Returns true if removed.
    bool remove(const std::string& session_id);

    std::shared_ptr<Session> find(const std::string& session_id) const;
    std::vector<std::shared_ptr<Session>> for_user(const std::string& user_id) const;
    std::vector<std::shared_ptr<Session>> all() const;
    std::size_t size() const;

    void close_for_new();
    // Waits until no session is registered or the deadline passes. True when empty.
    bool wait_empty(std::chrono::steady_clock::time_point deadline) const;

private:
    mutable std::mutex mutex_;
    mutable std::condition_variable emptied_;
    bool closed_ = false;
    std::unordered_map<std::string, std::shared_ptr<Session>> by_id_;
    // user id -> that user's sessions (owned through by_id_). A set per user, not a multimap:
    // removing one of a user's k sessions from a multimap walks all k of them, which made
    // closing 10,000 sockets of one user cost seconds of io-thread CPU.
    std::unordered_map<std::string, std::unordered_set<Session*>> by_user_;
};

}  // namespace nk::realtime
