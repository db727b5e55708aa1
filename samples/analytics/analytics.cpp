// The analytics sample: live figures from custom and session events, and forwarding of every
// event to a collector in the Segment HTTP Tracking API batch format.
//
//   - stats.hpp      counts per event name (total, per minute for the last hour), sessions
//                    active, daily active users (HyperLogLog), session lengths (p50/p95/max);
//   - forwarder.hpp  bounded buffer, batching thread, retries, Segment's /v1/batch;
//   - chart_page.hpp the live chart page at /plugins/analytics (Chart.js, embedded);
//   - this file      wiring: event handlers, the `analytics_stats` RPC, shutdown and the state
//                    handed over on a hot reload.
//
// Configuration: runtime.env ANALYTICS_* keys (README.md). Forwarding is off unless
// ANALYTICS_ENDPOINT is set; the stats RPC, the chart page and the plugin metrics are always on.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "chart_page.hpp"
#include "forwarder.hpp"
#include "nk/sdk.hpp"
#include "stats.hpp"

namespace {

struct Analytics {
    Analytics(analytics::StatsLimits limits, analytics::ForwarderOptions options, nk::Logger logger)
        : stats(limits), forwarder(std::move(options), logger) {}
    analytics::Stats stats;
    analytics::Forwarder forwarder;
};

// ---- event ids, receive times and plugin metrics (ABI 1.1) ---------------------------------
// Each falls back to what the plugin can do alone when the host predates them.

// Segment's messageId: the host's event id (a UUID v7 given when the server received the event,
// the same wherever the event is seen again), else a random UUID given here, once, when the
// event is first buffered.
std::string MessageIdFor(const nk::Event& evt) {
    return !evt.id.empty() ? evt.id : analytics::random_uuid();
}
// The time an event counts at: when the server received it, else now.
std::int64_t CountedAtMs(const nk::Event& evt) {
    if (evt.received_at.time_since_epoch().count() == 0)
        return analytics::now_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               evt.received_at.time_since_epoch())
        .count();
}
// The same figures for Prometheus (<metrics.prefix>_custom_analytics_events{name} and
// _custom_analytics_sessions_active). Errors are ignored on purpose: an older host answers
// "unimplemented", and a name beyond the host's 256 tag sets per metric is dropped and counted
// by the host itself.
void PublishMetrics(nk::Module& nk, const nk::Event& evt, const analytics::Stats& stats) {
    nk.MetricsCounterAdd("analytics_events", {{"name", evt.name}}, 1);
    if (evt.kind != NK_EVENT_CUSTOM)
        nk.MetricsGaugeSet("analytics_sessions_active", {},
                           static_cast<double>(stats.SessionsActive()));
}
// ------------------------------------------------------------------------------------------

std::string Rfc3339Ms(std::int64_t ms) {
    return nk::json::format_rfc3339(ms / 1000, static_cast<std::int32_t>(ms % 1000) * 1000000);
}

// One Segment track event: {"type":"track","event":..,"userId":..,"properties":{..},
// "timestamp":..,"messageId":..}. Session events carry their session id (and session_end its
// reason) as properties.
std::string TrackJson(const nk::Context& ctx, const nk::Event& evt, const std::string& message_id,
                      std::int64_t at_ms) {
    rapidjson::StringBuffer sb;
    analytics::JsonWriter w(sb);
    auto str = [&](const std::string& s) {
        w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
    };
    w.StartObject();
    w.Key("type");
    w.String("track");
    w.Key("event");
    str(evt.name);
    if (!ctx.user_id.empty()) {
        w.Key("userId");
        str(ctx.user_id);
    } else {
        w.Key("anonymousId");  // Segment needs one of the two; background events have no user
        str(ctx.node.empty() ? std::string("nkhost") : ctx.node);
    }
    w.Key("properties");
    w.StartObject();
    for (const auto& [key, value] : evt.properties) {
        str(key);
        str(value);
    }
    if (evt.kind != NK_EVENT_CUSTOM && !ctx.session_id.empty()) {
        w.Key("session_id");
        str(ctx.session_id);
    }
    if (evt.kind == NK_EVENT_CUSTOM) {
        w.Key("external");
        w.Bool(evt.external);
    }
    w.EndObject();
    w.Key("timestamp");
    str(evt.has_timestamp ? nk::json::format_rfc3339(evt.timestamp_seconds, evt.timestamp_nanos)
                          : Rfc3339Ms(at_ms));
    w.Key("messageId");
    str(message_id);
    w.Key("context");
    w.StartObject();
    w.Key("library");
    w.StartObject();
    w.Key("name");
    w.String("nkhost-analytics");
    w.Key("version");
    w.String("1.0");
    w.EndObject();
    w.EndObject();
    w.EndObject();
    return std::string(sb.GetString(), sb.GetSize());
}

// What every handler does with an event: count it, then forward it.
void Handle(Analytics& a, const nk::Context& ctx, nk::Module& nk, const nk::Event& evt) {
    const std::int64_t at = CountedAtMs(evt);
    a.stats.RecordEvent(evt.name, at);
    if (!ctx.user_id.empty())
        a.stats.RecordUser(ctx.user_id, at);
    if (evt.kind == NK_EVENT_SESSION_START)
        a.stats.RecordSessionStart(ctx.session_id, at);
    else if (evt.kind == NK_EVENT_SESSION_END)
        a.stats.RecordSessionEnd(ctx.session_id, at);
    PublishMetrics(nk, evt, a.stats);
    if (a.forwarder.enabled()) {
        std::string id = MessageIdFor(evt);
        std::string json = TrackJson(ctx, evt, id, at);
        a.forwarder.Enqueue(std::move(id), std::move(json));
    }
}

constexpr std::uint32_t kHandoffVersion = 1;  // bump on any change of the blob below

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    analytics::StatsLimits limits;
    analytics::ForwarderOptions options;
    std::string error;
    if (!analytics::StatsLimits::FromEnv(ctx.env, limits, error) ||
        !analytics::ForwarderOptions::FromEnv(ctx.env, options, error))
        return nk::Error::InvalidArgument(error);
    auto a = std::make_shared<Analytics>(limits, options, logger);

    auto on_event = [a](const nk::Context& c, nk::Logger&, nk::Module& m, const nk::Event& e) {
        Handle(*a, c, m, e);
    };
    if (auto err = initializer.RegisterEvent(on_event))
        return err;
    if (auto err = initializer.RegisterEventSessionStart(on_event))
        return err;
    if (auto err = initializer.RegisterEventSessionEnd(on_event))
        return err;

    // The stats as JSON (README.md shows its shape).
    auto stats_json = [a](const nk::Context& c) {
        const std::int64_t now = analytics::now_ms();
        rapidjson::StringBuffer sb;
        analytics::JsonWriter w(sb);
        w.StartObject();
        w.Key("node");
        w.String(c.node.c_str());
        w.Key("generated_at");
        w.String(Rfc3339Ms(now).c_str());
        a->stats.WriteJson(w, now);
        w.Key("forwarder");
        a->forwarder.WriteJson(w);
        w.EndObject();
        return std::string(sb.GetString(), sb.GetSize());
    };
    // Callable with a session token or, server to server, with ?http_key=.
    if (auto err = initializer.RegisterRpc(
            "analytics_stats", [stats_json](const nk::Context& c, nk::Logger&, nk::Module&,
                                            const std::string&, std::string& out) {
                out = stats_json(c);
                return nk::Error();
            }))
        return err;
    // The chart page and its data, under /plugins/analytics (chart_page.hpp).
    if (auto err = analytics::RegisterChartPage(initializer, stats_json))
        return err;

    // Server shutdown: send what is buffered within the grace. Hot reload: stop at once and
    // leave the buffer to the handoff (the collector may be down; the new generation retries).
    if (auto err = initializer.RegisterShutdown([a](const nk::Context& c, nk::Logger& l,
                                                    nk::Module&, std::int64_t grace_seconds) {
            if (c.execution_mode == "reload") {
                a->forwarder.Halt();
                return;
            }
            if (!a->forwarder.enabled())
                return;
            // The host rounds the grace up to whole seconds: keep a margin.
            const std::int64_t ms = grace_seconds * 1000;
            a->forwarder.Drain(std::chrono::milliseconds(ms >= 2000 ? ms - 1000 : ms / 2));
            l.Info("analytics: forwarder stopped");
        }))
        return err;

    if (auto err = initializer.RegisterHandoff(
            [a](const nk::Context&, nk::Logger&, nk::Module&, std::string& blob) {
                rapidjson::StringBuffer sb;
                analytics::JsonWriter w(sb);
                w.StartObject();
                w.Key("stats");
                a->stats.Save(w);
                w.Key("forwarder");
                a->forwarder.Save(w);
                w.EndObject();
                blob.assign(sb.GetString(), sb.GetSize());
                return kHandoffVersion;
            },
            [a](const nk::Context&, nk::Logger& l, nk::Module&, std::uint32_t version,
                const std::string& blob) -> nk::Error {
                if (version != kHandoffVersion)
                    return nk::Error::InvalidArgument("unknown analytics state version " +
                                                      std::to_string(version));
                rapidjson::Document d;
                if (!nk::json_read::parse_document(blob.data(), blob.size(), d,
                                                   nk::json_read::kDefaultMaxDepth) ||
                    !d.IsObject() || !d.HasMember("stats") || !d.HasMember("forwarder"))
                    return nk::Error::InvalidArgument("malformed analytics state");
                // Merge: this generation has been counting since the swap.
                if (!a->stats.Merge(d["stats"]) || !a->forwarder.Merge(d["forwarder"]))
                    return nk::Error::InvalidArgument("malformed analytics state");
                l.Info("analytics: state of the previous generation merged (%zu bytes)",
                       blob.size());
                return {};
            }))
        return err;

    a->forwarder.Start();
    if (a->forwarder.enabled()) {
        logger.Info("analytics: forwarding to %s/v1/batch (batch %zu, every %lld ms, buffer %zu)",
                    options.endpoint.c_str(), options.batch_size,
                    static_cast<long long>(options.flush_interval.count()), options.buffer_limit);
    } else {
        logger.Info("analytics: forwarding off (ANALYTICS_ENDPOINT not set)");
    }
    logger.Info("analytics: stats in the RPC analytics_stats and at /plugins/analytics?http_key=...");
    return {};
}
