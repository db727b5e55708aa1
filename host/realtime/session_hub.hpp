// SessionHub: what every realtime session shares — options, the registry,
// the event sink and the socket metrics — and the two lifecycle steps that
// produce session_start and session_end.
//
// Sessions hold a shared_ptr to the hub, so it outlives every socket. The
// sink and metrics registry are borrowed and must outlive the io threads.
// Thread-safe.
#pragma once

#include <array>
#include <functional>
#include <memory>

#include "events/event.hpp"
#include "events/handlers.hpp"
#include "core/json_read.hpp"
#include "realtime/options.hpp"
#include "realtime/session.hpp"
#include "realtime/session_registry.hpp"

namespace nk::metrics {
class Registry;
class Counter;
class Gauge;
}  // namespace nk::metrics

namespace nk::realtime {

class SessionHub {
public:
    // True while the token that opened a session still authenticates (not revoked).
    using ValidityCheck = std::function<bool(const SessionInfo&)>;

    // `still_valid` may be empty (no re-check).
    SessionHub(const Options& options, events::EventSink* sink, metrics::Registry* metrics,
               ValidityCheck still_valid = {});

    const Options& options() const { return options_; }
    // Depth limit of inbound envelopes, counted in json_depth_exceeded.
    const JsonLimits& json_limits() const { return json_; }
    SessionRegistry& registry() { return registry_; }

    // A socket was accepted: emits session_start, then registers the session
    // and (single_socket) closes the user's older sessions. A session whose token
    // was revoked meanwhile is then closed ("server-side session disconnect"):
    // the upgrade checked the token before the revocation, and the revoker's
    // disconnect may have looked at the registry before the session was in it.
    // Returns false when
    // the hub refuses new sessions (shutdown began): the session has then been
    // ended already ("server shutdown") and the caller must drop the socket.
    bool start(const std::shared_ptr<Session>& session);

    // Several nodes: called (on an io thread) for each session started while single_socket is
    // on, after this node closed the user's older sockets, so that the other nodes close theirs.
    // Set before serving; must not block.
    void set_on_single_socket(std::function<void(const SessionInfo&)> callback) {
        on_single_socket_ = std::move(callback);
    }

    // True while the token that opened the session still authenticates (always true without a
    // validity check).
    bool still_valid(const SessionInfo& info) const { return !still_valid_ || still_valid_(info); }

    // The session is over: emits session_end with the recorded reason and
    // unregisters it. Exactly once per started session, whoever calls first.
    void end(Session& session);

    // Builds the event the hub submits (exposed for tests).
    static events::Event make_event(events::Kind kind, const Session& session);

private:
    Options options_;
    events::EventSink* sink_;
    ValidityCheck still_valid_;
    std::function<void(const SessionInfo&)> on_single_socket_;
    SessionRegistry registry_;
    metrics::Counter* opened_ = nullptr;
    // socket_ws_closed{reason}, one series per EndReason (indexed by its value).
    std::array<metrics::Counter*, kEndReasonCount> closed_{};
    metrics::Gauge* open_ = nullptr;
    JsonLimits json_;
};

}  // namespace nk::realtime
