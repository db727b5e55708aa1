// Realtime: the /ws endpoint — upgrade checks, the session registry and
// the built-in session_start / session_end events.
//
// Threading: authorize()/accept()/shutdown()/sessions() are thread-safe.
// accept() takes ownership of a connection the HTTP layer has parsed an
// upgrade request on; the stream's executor must be a strand.
//
// Shutdown order for the app: realtime.shutdown(grace) while the io threads
// still run (it closes every socket with 1001 "server shutdown" and returns
// only once every session_end has been submitted), then drain the event
// pipeline, then stop the io threads.
//
// Envelopes (JSON text frames only): "ping" -> "pong" with the same cid;
// "pong" is ignored. Differences from Nakama, on purpose:
// - A well-formed envelope of a kind nkhost does not handle yet gets
//   {"cid":..,"error":{"code":1,"message":"Unsupported message kind: <kind>"}}
//   and the socket STAYS OPEN (Nakama disconnects), so a game's optional
//   features fail softly. Any member besides "cid" whose value is an object
//   counts as a kind; more than one kind is a malformed payload.
// - format=protobuf is refused with 400 (not supported yet).
// - A binary frame on a JSON socket ends with "received malformed payload".
// - The session id is a UUID v4 (Nakama: v1); the pong-timeout reason is
//   "pong timeout" and a failed write deadline "write timeout" (Nakama puts
//   Go's raw i/o error text there).
// As in Nakama: an empty envelope gets code 2 "Missing message." and the
// socket is closed ("error processing message"); malformed JSON closes with
// "received malformed payload"; over max_message_size_bytes closes with 1009
// ("message too big"); server-initiated closes send code 1000 with the reason
// as close text (1001 on shutdown).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "events/handlers.hpp"
#include "net/http.hpp"
#include "net/upgrade.hpp"
#include "realtime/options.hpp"
#include "realtime/session_hub.hpp"
#include "realtime/ws_session.hpp"

namespace nk::metrics {
class Registry;
}
namespace nk::auth {
class Tokens;
}
namespace nk::net {
class Router;
}

namespace nk::realtime {

// What a valid session token says about its user.
struct Identity {
    std::string user_id;
    std::string username;
    std::map<std::string, std::string> vars;
    std::int64_t expiry = 0;  // unix seconds
    std::string token_id;     // tid (empty when the verifier does not know it)
    std::int64_t issued_at = 0;  // iat
};

// Verifies a session token (signature, expiry, revocation). Thread-safe.
using TokenVerifier = std::function<std::optional<Identity>(std::string_view token)>;

class Realtime {
public:
    // Session tokens are checked with tokens.verify_session (signature, expiry,
    // revocation); `tokens`, `sink` and `metrics` must outlive the io threads.
    Realtime(const Options& options, auth::Tokens& tokens, events::EventSink* sink,
             metrics::Registry* metrics);
    // `still_valid` (optional) re-checks a session's token once the session is registered: see
    // SessionHub.
    Realtime(const Options& options, TokenVerifier verify, events::EventSink* sink,
             metrics::Registry* metrics, SessionHub::ValidityCheck still_valid = {});
    ~Realtime();
    Realtime(const Realtime&) = delete;
    Realtime& operator=(const Realtime&) = delete;

    // Checks an upgrade request (Nakama's order: format, then token) and
    // returns the session to open, or the HTTP response refusing it:
    // 400 text "Invalid format parameter" / "Protobuf format is not supported yet",
    // 401 text "Missing or invalid token".
    std::variant<SessionInfo, net::Response> authorize(const net::Request& request) const;

    // Registers GET /ws (authorize(), then accept() or the refusal).
    void attach(net::Router& router);
    // The upgrade handler attach() registers.
    void handle_upgrade(net::Request&& request, net::Upgrade& upgrade);

    // Completes the upgrade on a connection authorize() accepted and serves it;
    // the session holds `slot` (socket.max_connections) until its socket has
    // closed and the session is gone.
    void accept(SessionInfo info, net::UpgradedConnection&& connection);
    // `outcome` is told how the handshake ended (net counts it in http_requests).
    void accept(SessionInfo info, boost::beast::tcp_stream&& stream, UpgradeRequest&& request,
                net::ConnectionSlot slot = {}, net::UpgradeOutcome outcome = {});
    void accept(SessionInfo info, boost::beast::ssl_stream<boost::beast::tcp_stream>&& stream,
                UpgradeRequest&& request, net::ConnectionSlot slot = {},
                net::UpgradeOutcome outcome = {});

    // Closes every socket (1001 "server shutdown"), refuses new ones, and
    // returns once every session_end was submitted. Sockets that have not
    // finished within `grace` are dropped; if the io threads no longer run,
    // the remaining session_end events are submitted from here. Idempotent.
    void shutdown(std::chrono::milliseconds grace);

    // Closes the user's sockets (session_end "server-side session disconnect", close 1000 with
    // that text), or only those opened with the session token whose tid is `token_id` when it
    // is not empty. Returns the number of sockets told to close; they close asynchronously.
    //
    // What the API does with it (a socket lives no longer than the token that opened it would
    // authenticate a request): DELETE /v2/account and a logout naming no token (every session
    // of the user revoked) disconnect every socket of the user; a logout naming a session token
    // disconnects the sockets opened with that token; a logout naming only a refresh token
    // leaves sockets open (a refresh token cannot open one).
    std::size_t disconnect(const std::string& user_id, const std::string& token_id = {});
    // Closes, the same way, the user's sockets whose token the validity check (see the
    // constructors) no longer accepts: a new login with session.single_session revoked the
    // user's earlier sessions, and their sockets go with them while the new session's stay.
    // Returns the number told to close; none without a validity check.
    std::size_t disconnect_revoked(const std::string& user_id);

    // Several nodes with session.single_socket: `callback(user_id, session_id)` runs for each
    // socket opened here, so that the other nodes close the user's sockets they hold (they call
    // disconnect(user_id)). Set before serving; must not block.
    void set_on_single_socket(
        std::function<void(const std::string& user_id, const std::string& session_id)> callback);

    SessionRegistry& sessions() { return hub_->registry(); }
    const Options& options() const { return hub_->options(); }

private:
    std::shared_ptr<SessionHub> hub_;
    TokenVerifier verify_;
};

}  // namespace nk::realtime
