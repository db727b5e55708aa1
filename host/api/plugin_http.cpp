#include "api/plugin_http.hpp"

#include <string>
#include <utility>

#include "api/bearer.hpp"
#include "api/blocking_work.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "auth/tokens.hpp"
#include "net/router.hpp"
#include "nk/sdk.h"

namespace nk::api {

namespace {

// Routes are matched by the runtime; the router only needs to send /plugins/... here. Its
// patterns capture whole segments, so one pattern per depth.
constexpr int kMaxDepth = 16;

std::string_view method_name(net::Method m) {
    switch (m) {
        case net::Method::get:
        case net::Method::head:
            return "GET";
        case net::Method::post:
            return "POST";
        case net::Method::put:
            return "PUT";
        case net::Method::patch:
            return "PATCH";
        case net::Method::delete_:
            return "DELETE";
        default:
            return "";
    }
}

Status check_auth(std::int32_t auth, const net::Request& req, Services& services,
                  RequestContext& ctx) {
    switch (auth) {
        case NK_HTTP_AUTH_NONE:
            return Status::ok();
        case NK_HTTP_AUTH_SERVER_KEY:
            if (services.tokens == nullptr)
                return Status::unimplemented("Auth is not available.");
            return services.tokens->check_server_key(req.header("Authorization"));
        case NK_HTTP_AUTH_HTTP_KEY: {
            if (services.tokens == nullptr)
                return Status::unimplemented("Auth is not available.");
            const auto key = req.query_param("http_key");
            if (!key)
                return Status::unauthenticated("HTTP key required");
            if (!services.tokens->check_http_key(*key))
                return Status::unauthenticated("HTTP key invalid");
            return Status::ok();
        }
        case NK_HTTP_AUTH_SESSION:
            return authenticate_bearer(req, services, ctx);
        default:
            return Status::internal("Unknown route auth mode.");
    }
}

void handle(net::Request&& req, net::Responder respond, Services& services) {
    RuntimeBridge* runtime = services.runtime;
    if (runtime == nullptr) {
        respond(net::Response::error(Status::not_found("Not Found")));
        return;
    }
    const std::string_view method = method_name(req.method);
    const std::string_view sub = std::string_view(req.path).substr(sizeof kPluginHttpPrefix - 1);
    RuntimeBridge::Pin pin = runtime->pin();
    const auto target = runtime->find_http(pin, method, sub);
    if (target.kind == RuntimeBridge::HttpTarget::Kind::none) {
        respond(net::Response::error(Status::not_found("Not Found")));
        return;
    }
    if (target.kind == RuntimeBridge::HttpTarget::Kind::method_not_allowed) {
        respond(net::Response::error(Status::unimplemented("Method Not Allowed")));
        return;
    }
    RequestContext ctx;
    ctx.client_ip = req.client_ip;
    ctx.client_port = req.client_port;
    if (Status st = check_auth(target.auth, req, services, ctx); !st) {
        respond(net::Response::error(st));
        return;
    }
    ctx.execution_mode = "http";
    if (services.pool == nullptr) {
        respond(net::Response::error(Status::unimplemented("No blocking pool for plugin routes.")));
        return;
    }
    const std::size_t bytes = req.body.size() + req.target.size();
    auto task = [runtime, pin = std::move(pin), ctx = std::move(ctx), req = std::move(req),
                 method, respond]() mutable {
        const auto q = req.target.find('?');
        RuntimeBridge::HttpCall call;
        call.method = method;
        call.path = req.path;
        call.sub_path = std::string_view(req.path).substr(sizeof kPluginHttpPrefix - 1);
        call.query = q == std::string::npos ? std::string_view()
                                            : std::string_view(req.target).substr(q + 1);
        call.query_params = &req.query;
        call.headers = &req.headers;
        call.body = req.body;
        RuntimeBridge::HttpReply reply;
        if (Status st = runtime->http(pin, ctx, call, reply); !st) {
            respond(net::Response::error(st));
            return;
        }
        net::Response r;
        r.status = reply.status;
        r.content_type = std::move(reply.content_type);
        r.headers = std::move(reply.headers);
        r.body = std::move(reply.body);
        respond(std::move(r));
    };
    post_request_work(services, respond, std::move(task), bytes);
}

}  // namespace

void register_plugin_http_routes(net::Router& router, Services& services) {
    auto handler = [&services](net::Request&& req, net::Responder respond) {
        handle(std::move(req), std::move(respond), services);
    };
    std::string pattern = kPluginHttpPrefix;
    for (int depth = 1; depth <= kMaxDepth; ++depth) {
        pattern += "/{s" + std::to_string(depth) + "}";
        for (net::Method m : {net::Method::get, net::Method::post, net::Method::put,
                              net::Method::patch, net::Method::delete_})
            router.add(m, pattern, handler);
    }
}

}  // namespace nk::api
