#include "api/rpc_api.hpp"

#include <algorithm>
#include <cctype>
#include <string>
#include <utility>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "api/bearer.hpp"
#include "api/blocking_work.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "auth/tokens.hpp"
#include "core/blocking_pool.hpp"
#include "core/json_read.hpp"
#include "net/router.hpp"

namespace nk::api {

namespace {

// RPC errors keep Nakama 3.x's extra "error" key (its RPC handler is not the gateway's).
net::Response rpc_error(const Status& s) {
    std::string body = "{\"error\":";
    append_json_string(body, s.message());
    body += ",\"message\":";
    append_json_string(body, s.message());
    body += ",\"code\":" + std::to_string(s.code_number()) + "}";
    net::Response r = net::Response::json(s.http_status(), std::move(body));
    if (s.code() == Code::unauthenticated)
        r.headers.emplace_back("WWW-Authenticate", s.message());
    return r;
}

std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return out;
}

// Decodes a JSON string literal; false when `text` is not one.
bool decode_json_string(std::string_view text, const JsonLimits& limits, std::string& out,
                        std::string& error) {
    rapidjson::Document d;
    const json_read::Result parsed =
        json_read::parse_document(text.data(), text.size(), d, limits.max_depth);
    if (!parsed) {
        error = parsed.too_deep ? json_status(parsed, limits).message()
                                : "invalid character in JSON payload";
        return false;
    }
    if (!d.IsString()) {
        const char* type = d.IsObject()   ? "object"
                           : d.IsArray()  ? "array"
                           : d.IsNumber() ? "number"
                           : d.IsBool()   ? "bool"
                                          : "null";
        if (d.IsNull()) {  // Go decodes null into a string as "" without error
            out.clear();
            return true;
        }
        error = std::string("json: cannot unmarshal ") + type + " into Go value of type string";
        return false;
    }
    out.assign(d.GetString(), d.GetStringLength());
    return true;
}

std::string payload_reply(const std::string& payload) {
    std::string body = "{\"payload\":";
    append_json_string(body, payload);
    body += "}";
    return body;
}

// Authenticates the caller: http_key first (Nakama's order), then a Bearer token
// (which fills ctx with the user).
Status authenticate(const net::Request& req, Services& services, RequestContext& ctx) {
    if (auto key = req.query_param("http_key")) {
        if (services.tokens == nullptr)
            return Status::unimplemented("Auth is not available.");
        if (!services.tokens->check_http_key(*key))
            return Status::unauthenticated("HTTP key invalid");
        return Status::ok();
    }
    if (req.header("Authorization").empty())
        return Status::unauthenticated("Auth token or HTTP key required");
    return authenticate_bearer(req, services, ctx);
}

void handle_rpc(net::Request&& req, net::Responder respond, Services& services) {
    RequestContext ctx;
    ctx.execution_mode = "rpc";
    ctx.client_ip = req.client_ip;
    ctx.client_port = req.client_port;
    if (Status st = authenticate(req, services, ctx); !st) {
        respond(rpc_error(st));
        return;
    }
    const std::string id = lower(req.path_param("id"));
    const bool unwrap = req.query_param("unwrap").has_value();

    std::string payload;
    std::string decode_error;
    if (req.method == net::Method::get) {
        auto p = req.query_param("payload");
        std::string_view raw = p ? *p : std::string_view();
        // Accept both a JSON string (like the POST body) and a bare value.
        if (unwrap || raw.empty() || !decode_json_string(raw, services.json, payload, decode_error))
            payload = raw;
    } else if (unwrap) {
        payload = std::move(req.body);
    } else if (!req.body.empty() && !decode_json_string(req.body, services.json, payload, decode_error)) {
        respond(rpc_error(Status::invalid_argument(decode_error)));
        return;
    }

    RuntimeBridge* runtime = services.runtime;
    if (runtime == nullptr || !runtime->has_rpc(id)) {
        respond(rpc_error(Status::not_found("RPC function not found")));
        return;
    }
    if (services.pool == nullptr) {
        respond(rpc_error(Status::unimplemented("RPC functions are not available.")));
        return;
    }
    const std::size_t bytes = payload.size();
    auto task = [runtime, id, ctx = std::move(ctx), payload = std::move(payload), unwrap,
                 respond]() mutable {
        std::string out;
        Status st = runtime->rpc(id, ctx, payload, out);
        if (!st) {
            respond(rpc_error(st));
        } else if (unwrap) {
            respond(net::Response::json(200, std::move(out)));
        } else {
            respond(net::Response::json(200, payload_reply(out)));
        }
    };
    post_request_work(services, respond, std::move(task), bytes, BlockingPool::Lane::general,
                      &rpc_error);
}

}  // namespace

void register_rpc_routes(net::Router& router, Services& services) {
    auto handler = [&services](net::Request&& req, net::Responder respond) {
        handle_rpc(std::move(req), std::move(respond), services);
    };
    router.add(net::Method::post, "/v2/rpc/{id}", handler);
    router.add(net::Method::get, "/v2/rpc/{id}", handler);
}

}  // namespace nk::api
