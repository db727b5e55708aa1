#include "realtime/session_hub.hpp"

#include <spdlog/spdlog.h>

#include "metrics/registry.hpp"

namespace nk::realtime {

SessionHub::SessionHub(const Options& options, events::EventSink* sink,
                       metrics::Registry* metrics, ValidityCheck still_valid)
    : options_(options), sink_(sink), still_valid_(std::move(still_valid)) {
    json_ = counted_json_limits(options.max_json_depth, metrics);
    if (metrics) {
        opened_ = &metrics->counter("socket_ws_opened", "Number of opened WebSocket connections");
        // Every cause but none (an end always has one) gets its series up front.
        for (std::size_t i = 1; i < kEndReasonCount; ++i) {
            closed_[i] = &metrics->counter(
                "socket_ws_closed", "Number of closed WebSocket connections, by session_end cause",
                {{"reason", end_reason_label(static_cast<EndReason>(i))}});
        }
        open_ = &metrics->gauge("sockets_open", "Number of WebSocket connections currently open");
    }
}

events::Event SessionHub::make_event(events::Kind kind, const Session& session) {
    const SessionInfo& info = session.info();
    events::Event event;
    event.kind = kind;
    if (kind == events::Kind::session_start) {
        event.name = "session_start";
    } else {
        event.name = "session_end";
        event.properties.emplace_back("reason", session.ending().reason_text());
    }
    auto now = std::chrono::system_clock::now();
    event.has_timestamp = true;
    event.timestamp.seconds =
        std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
    event.timestamp.nanos = 0;
    event.external = false;
    events::stamp(event, now);
    RequestContext ctx;
    ctx.execution_mode = "event";
    ctx.user_id = info.user_id;
    ctx.username = info.username;
    ctx.vars = info.vars;
    ctx.session_expiry = info.expiry;
    ctx.session_id = info.session_id;
    ctx.lang = info.lang;
    ctx.client_ip = info.client_ip;
    ctx.client_port = info.client_port;
    event.set_context(std::move(ctx));
    return event;
}

bool SessionHub::start(const std::shared_ptr<Session>& session) {
    // session_start is submitted before the session becomes visible to anyone
    // who could end it (kicks, shutdown), so its end is always submitted after.
    if (opened_) opened_->inc();
    if (open_) open_->add(1);
    if (sink_) sink_->submit(make_event(events::Kind::session_start, *session));

    std::vector<std::shared_ptr<Session>> same_user;
    if (!registry_.add(session, options_.single_socket ? &same_user : nullptr)) {
        session->ending().record(EndReason::server_shutdown);
        end(*session);
        return false;
    }
    for (auto& older : same_user) older->close(EndReason::kicked);
    if (options_.single_socket && on_single_socket_) on_single_socket_(session->info());
    if (still_valid_ && !still_valid_(session->info())) session->close(EndReason::kicked);
    return true;
}

void SessionHub::end(Session& session) {
    if (!session.ending().claim_end()) return;
    // An end without a recorded cause is a socket that vanished.
    session.ending().record(EndReason::connection_lost);
    if (auto* closed = closed_[static_cast<std::size_t>(session.ending().reason())]) closed->inc();
    if (open_) open_->add(-1);
    if (sink_) {
        auto result = sink_->submit(make_event(events::Kind::session_end, session));
        if (result == events::SubmitResult::shut_down) {
            spdlog::warn("session_end of session {} submitted after the event pipeline stopped",
                         session.id());
        }
    }
    registry_.remove(session.id());
}

}  // namespace nk::realtime
