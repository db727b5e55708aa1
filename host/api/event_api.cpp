#include "api/event_api.hpp"

#include <chrono>
#include <string>
#include <utility>

#include "api/account_common.hpp"
#include "api/bearer.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "events/handlers.hpp"
#include "events/json.hpp"
#include "events/options.hpp"
#include "net/router.hpp"

namespace nk::api {
namespace {

constexpr std::string_view api_id = "Event";

const events::Options& limits_of(const Services& services) {
    static const events::Options defaults;
    return services.event_limits ? *services.event_limits : defaults;
}

net::Response unavailable(const Services& services, std::string message) {
    net::Response r = net::Response::error(Status::unavailable(std::move(message)));
    r.headers.emplace_back("Retry-After",
                           std::to_string(limits_of(services).reject_retry_after_sec));
    return r;
}

// Decodes, runs the hooks when `with_hooks`, submits. `ctx` is the caller (user + client).
net::Response handle_event(Services& services, std::string& body, RequestContext ctx,
                           bool with_hooks) {
    const events::Options& limits = limits_of(services);
    events::Event event;
    if (auto s = events::decode_event_json(body, limits, services.json, event); !s) {
        return net::Response::error(s);
    }

    RuntimeBridge* runtime = with_hooks ? services.runtime : nullptr;
    // One request, one set of registrations (a hot reload may swap them meanwhile).
    const RuntimeBridge::Pin pin = runtime != nullptr ? runtime->pin() : nullptr;
    if (runtime != nullptr && runtime->has_before(pin, api_id)) {
        // The before-hook sees the event as the client sent it (external not yet forced).
        std::string in_json = events::encode_event_json(event);
        RequestContext hook_ctx = ctx;
        hook_ctx.execution_mode = "before";
        if (auto s = runtime->before(pin, api_id, hook_ctx, in_json); !s)
            return net::Response::error(s);
        events::Event rewritten;
        if (auto s = events::decode_event_json(in_json, limits, services.json, rewritten); !s) {
            return net::Response::error(s);
        }
        event = std::move(rewritten);
    }

    event.external = true;
    event.kind = events::Kind::custom;
    events::stamp(event);  // its id and receive time
    std::string after_json;
    const bool after = runtime != nullptr && runtime->has_after(pin, api_id);
    if (after)
        after_json = events::encode_event_json(event);
    ctx.execution_mode = "event";
    if (after)
        event.set_context(ctx);  // the after-hook below still needs the caller
    else
        event.set_context(std::move(ctx));

    switch (services.events->submit(std::move(event))) {
        case events::SubmitResult::accepted:
        case events::SubmitResult::dropped:  // Nakama answers 200 and counts the drop
            break;
        case events::SubmitResult::rejected:
            return unavailable(services, "Event queue is full, retry later.");
        case events::SubmitResult::shut_down:
            return unavailable(services, "Server is shutting down.");
    }

    if (after) {
        ctx.execution_mode = "after";
        try {
            runtime->after(pin, api_id, ctx, "", after_json);
        } catch (...) {
            // The bridge counts and logs hook failures; the response never changes.
        }
    }
    return net::Response::empty_object();
}

}  // namespace

void register_event_routes(net::Router& router, Services& services) {
    router.add(
        net::Method::post, "/v2/event",
        [&services](net::Request&& request, net::Responder respond) {
            if (services.events == nullptr) {
                respond(net::Response::error(Status::unimplemented("Events are not available.")));
                return;
            }
            RequestContext ctx;
            if (auto s = authenticate_bearer(request, services, ctx); !s) {
                respond(net::Response::error(s));
                return;
            }
            RuntimeBridge* runtime = services.runtime;
            const bool hooks =
                runtime != nullptr && (runtime->has_before(api_id) || runtime->has_after(api_id));
            if (!hooks) {
                respond(handle_event(services, request.body, std::move(ctx), false));
                return;
            }
            if (services.pool == nullptr) {
                respond(net::Response::error(Status::unimplemented("No blocking pool for hooks.")));
                return;
            }
            // Hooks may block: the pool's limits and dropping of abandoned work apply as to
            // every other endpoint.
            const std::size_t bytes = request.body.size();
            account_detail::run_blocking(
                services, std::move(respond),
                [&services, body = std::move(request.body), ctx = std::move(ctx)]() mutable {
                    return handle_event(services, body, std::move(ctx), true);
                },
                bytes);
        });
}

}  // namespace nk::api
