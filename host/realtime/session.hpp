// Session: one open realtime socket as the rest of nkhost sees it.
//
// SessionInfo is fixed when the socket is accepted and never changes, so any
// thread may read it. close()/abort() are thread-safe and return at once; the
// work happens on the socket's own strand. The concrete socket type
// (plain or TLS) lives in ws_session.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "realtime/session_end.hpp"

namespace nk::realtime {

struct SessionInfo {
    std::string session_id;  // UUID v4, assigned at the upgrade
    std::string user_id;
    std::string token_id;        // tid of the session token that opened the socket
    std::int64_t issued_at = 0;  // its iat, unix seconds
    std::string username;
    std::map<std::string, std::string> vars;
    std::int64_t expiry = 0;  // token exp, unix seconds
    std::string lang = "en";
    // ?status= as Go's strconv.ParseBool reads it (invalid: false). Recorded only: nkhost tracks
    // no status presence yet, so nobody is told the user is online (docs/operations.md).
    bool status = false;
    std::string client_ip;
    std::string client_port;
    std::chrono::system_clock::time_point opened_at{};
};

class Session : public std::enable_shared_from_this<Session> {
public:
    explicit Session(SessionInfo info) : info_(std::move(info)) {}
    virtual ~Session() = default;
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;

    const SessionInfo& info() const { return info_; }
    const std::string& id() const { return info_.session_id; }

    // Graceful close: queued frames are flushed, then a close frame
    // (1001 for a shutdown, 1000 otherwise) with the reason text; the socket
    // is dropped if the peer does not answer within close_ack_wait_ms.
    virtual void close(EndReason reason) = 0;
    // Drops the TCP connection now (no close frame).
    virtual void abort(EndReason reason) = 0;

    SessionEnding& ending() { return ending_; }
    const SessionEnding& ending() const { return ending_; }

private:
    const SessionInfo info_;
    SessionEnding ending_;
};

}  // namespace nk::realtime
