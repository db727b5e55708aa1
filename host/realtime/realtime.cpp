#include "realtime/realtime.hpp"

#include <boost/uuid/random_generator.hpp>
#include <boost/uuid/uuid_io.hpp>
#include <spdlog/spdlog.h>

#include "auth/tokens.hpp"
#include "net/router.hpp"

namespace nk::realtime {

namespace {

net::Response text_response(int status, std::string_view message) {
    net::Response r;
    r.status = status;
    r.content_type = "text/plain; charset=utf-8";
    r.body.assign(message);
    r.body += '\n';  // Nakama answers through Go's http.Error, which appends a newline
    return r;
}

std::string new_session_id() {
    // One generator per thread: boost's generator is not thread-safe.
    thread_local boost::uuids::random_generator generator;
    return boost::uuids::to_string(generator());
}

// A session that holds the connection's place in socket.max_connections: the place is given
// back when the session is destroyed, right after its socket closed and its last handler ran.
template <class WsSessionType, class Stream>
std::shared_ptr<WsSessionType> make_session(std::shared_ptr<SessionHub> hub, SessionInfo info,
                                            Stream&& stream, net::ConnectionSlot slot) {
    return std::shared_ptr<WsSessionType>(
        new WsSessionType(std::move(hub), std::move(info), std::move(stream)),
        [slot = std::move(slot)](WsSessionType* session) mutable {
            delete session;
            slot.release();
        });
}

bool parse_bool(std::string_view v) {
    // Go's strconv.ParseBool; anything else is false, as Nakama ignores the error.
    return v == "1" || v == "t" || v == "T" || v == "true" || v == "TRUE" || v == "True";
}

}  // namespace

Realtime::Realtime(const Options& options, TokenVerifier verify, events::EventSink* sink,
                   metrics::Registry* metrics, SessionHub::ValidityCheck still_valid)
    : hub_(std::make_shared<SessionHub>(options, sink, metrics, std::move(still_valid))),
      verify_(std::move(verify)) {}

Realtime::Realtime(const Options& options, auth::Tokens& tokens, events::EventSink* sink,
                   metrics::Registry* metrics)
    : Realtime(options,
               [&tokens](std::string_view token) -> std::optional<Identity> {
                   auto claims = tokens.verify_session(token);
                   if (!claims) return std::nullopt;
                   return Identity{std::move(claims->user_id), std::move(claims->username),
                                   std::move(claims->vars), claims->expires_at,
                                   std::move(claims->token_id), claims->issued_at};
               },
               sink, metrics,
               [&tokens](const SessionInfo& info) {
                   return tokens.revocations().session_valid(info.user_id, info.token_id,
                                                             info.issued_at);
               }) {}

Realtime::~Realtime() = default;

void Realtime::attach(net::Router& router) {
    router.add_upgrade("/ws", [this](net::Request&& request, net::Upgrade& upgrade) {
        handle_upgrade(std::move(request), upgrade);
    });
}

void Realtime::handle_upgrade(net::Request&& request, net::Upgrade& upgrade) {
    auto decision = authorize(request);
    if (auto* refusal = std::get_if<net::Response>(&decision)) {
        upgrade.reject(std::move(*refusal));
        return;
    }
    accept(std::move(std::get<SessionInfo>(decision)), upgrade.take());
}

void Realtime::accept(SessionInfo info, net::UpgradedConnection&& connection) {
    // A conforming client sends no frame before the 101 answer, so bytes read
    // past the request can only be a protocol violation: refuse the socket.
    if (connection.buffered.size() > 0) {
        spdlog::debug("WebSocket client sent data before the upgrade completed; closing");
        return;  // the stream is destroyed, closing the connection; no answer (outcome 0)
    }
    if (auto* plain = std::get_if<net::PlainStream>(&connection.stream)) {
        accept(std::move(info), std::move(*plain), std::move(connection.request),
               std::move(connection.slot), std::move(connection.outcome));
    } else {
        accept(std::move(info), std::move(std::get<net::TlsStream>(connection.stream)),
               std::move(connection.request), std::move(connection.slot),
               std::move(connection.outcome));
    }
}

std::variant<SessionInfo, net::Response> Realtime::authorize(const net::Request& request) const {
    auto format = request.query_param("format");
    if (format && *format != "json") {
        if (*format == "protobuf") {
            return text_response(400, "Protobuf format is not supported yet");
        }
        return text_response(400, "Invalid format parameter");
    }

    std::string_view token;
    std::string_view authorization = request.header("Authorization");
    if (!authorization.empty()) {
        constexpr std::string_view bearer = "Bearer ";
        if (authorization.size() <= bearer.size() ||
            authorization.substr(0, bearer.size()) != bearer) {
            return text_response(401, "Missing or invalid token");
        }
        token = authorization.substr(bearer.size());
    } else if (auto q = request.query_param("token")) {
        token = *q;
    }
    std::optional<Identity> identity;
    if (!token.empty() && verify_) identity = verify_(token);
    if (!identity) return text_response(401, "Missing or invalid token");

    SessionInfo info;
    info.session_id = new_session_id();
    info.user_id = std::move(identity->user_id);
    info.token_id = std::move(identity->token_id);
    info.issued_at = identity->issued_at;
    info.username = std::move(identity->username);
    info.vars = std::move(identity->vars);
    info.expiry = identity->expiry;
    if (auto lang = request.query_param("lang"); lang && !lang->empty()) info.lang = *lang;
    if (auto status = request.query_param("status")) info.status = parse_bool(*status);
    info.client_ip = request.client_ip;
    info.client_port = request.client_port;
    info.opened_at = std::chrono::system_clock::now();
    return info;
}

void Realtime::accept(SessionInfo info, boost::beast::tcp_stream&& stream, UpgradeRequest&& request,
                      net::ConnectionSlot slot, net::UpgradeOutcome outcome) {
    auto session =
        make_session<PlainWsSession>(hub_, std::move(info), std::move(stream), std::move(slot));
    session->run(std::move(request), std::move(outcome));
}

void Realtime::accept(SessionInfo info,
                      boost::beast::ssl_stream<boost::beast::tcp_stream>&& stream,
                      UpgradeRequest&& request, net::ConnectionSlot slot,
                      net::UpgradeOutcome outcome) {
    auto session =
        make_session<TlsWsSession>(hub_, std::move(info), std::move(stream), std::move(slot));
    session->run(std::move(request), std::move(outcome));
}

std::size_t Realtime::disconnect(const std::string& user_id, const std::string& token_id) {
    std::size_t n = 0;
    for (auto& s : hub_->registry().for_user(user_id)) {
        if (!token_id.empty() && s->info().token_id != token_id) continue;
        s->close(EndReason::kicked);
        ++n;
    }
    return n;
}

void Realtime::set_on_single_socket(
    std::function<void(const std::string& user_id, const std::string& session_id)> callback) {
    hub_->set_on_single_socket([callback = std::move(callback)](const SessionInfo& info) {
        callback(info.user_id, info.session_id);
    });
}

std::size_t Realtime::disconnect_revoked(const std::string& user_id) {
    std::size_t n = 0;
    for (auto& s : hub_->registry().for_user(user_id)) {
        if (hub_->still_valid(s->info())) continue;
        s->close(EndReason::kicked);
        ++n;
    }
    return n;
}

void Realtime::shutdown(std::chrono::milliseconds grace) {
    auto& registry = hub_->registry();
    registry.close_for_new();
    auto sessions = registry.all();
    if (!sessions.empty()) spdlog::info("Closing {} realtime sessions", sessions.size());
    for (auto& s : sessions) s->close(EndReason::server_shutdown);
    sessions.clear();
    if (registry.wait_empty(std::chrono::steady_clock::now() + grace)) return;

    // Peers that did not answer the close in time: drop their connections.
    for (auto& s : registry.all()) s->abort(EndReason::server_shutdown);
    if (registry.wait_empty(std::chrono::steady_clock::now() + std::chrono::seconds(1))) return;

    // The io threads are not making progress: end the rest from here. The
    // session's own finish() later finds its end already claimed.
    for (auto& s : registry.all()) {
        s->ending().record(EndReason::server_shutdown);
        hub_->end(*s);
    }
}

}  // namespace nk::realtime
