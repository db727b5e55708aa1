// RuntimeBridge: what the API layer asks of the plugin runtime.
//
// The API calls before/after hooks and RPC functions through this interface;
// the plugin runtime implements it (host/runtime), tests may implement it
// in-process. All calls may block (they run plugin code): call them on the
// BlockingPool, never on an io thread. Thread-safe.
//
// Messages travel as JSON text, the same JSON the REST API speaks.
// `api_id` is Nakama's method name: "AuthenticateDevice", "AuthenticateCustom",
// "AuthenticateEmail", "SessionRefresh", "SessionLogout", "GetAccount",
// "UpdateAccount", "DeleteAccount", "Event".
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/context.hpp"
#include "core/status.hpp"

namespace nk::api {

class RuntimeBridge {
public:
    virtual ~RuntimeBridge() = default;

    // Cheap, lock-free checks so the hot path skips the pool when nothing is registered. They
    // read the latest registrations: use them only to decide whether a request needs the pool.
    virtual bool has_before(std::string_view api_id) const = 0;
    virtual bool has_after(std::string_view api_id) const = 0;

    // The registrations of this moment, held by one request from its before-hook to its
    // after-hook, so a hot reload in between cannot pair one module generation's before-hook
    // with another's after-hook. Take it once, on the pool, at the start of the request's work.
    using Pin = std::shared_ptr<const void>;
    virtual Pin pin() const = 0;
    virtual bool has_before(const Pin& pin, std::string_view api_id) const = 0;
    virtual bool has_after(const Pin& pin, std::string_view api_id) const = 0;

    // Runs the before-hook of `pin` (nothing when it has none). On OK, `in_json` holds the
    // (possibly rewritten) input. An error status rejects the request with that code and message.
    virtual Status before(const Pin& pin, std::string_view api_id, const RequestContext& ctx,
                          std::string& in_json) = 0;

    // Runs the after-hook of `pin` (nothing when it has none). Its failure is counted and logged
    // by the runtime, never surfaced to the client. `out_json` is empty for endpoints without a
    // response body, `in_json` empty for those without a request body.
    virtual void after(const Pin& pin, std::string_view api_id, const RequestContext& ctx,
                       std::string_view out_json, std::string_view in_json) = 0;

    // Plugin HTTP routes (served under /plugins). `path` is the request path without that
    // prefix. Cheap; call it on the io thread with the request's pin.
    struct HttpTarget {
        enum class Kind { none, method_not_allowed, found };
        Kind kind = Kind::none;
        std::int32_t auth = 0;  // nk_http_auth of the matched route
    };
    virtual HttpTarget find_http(const Pin&, std::string_view /*method*/,
                                 std::string_view /*path*/) const {
        return {};
    }
    using Pairs = std::vector<std::pair<std::string, std::string>>;
    struct HttpCall {
        std::string_view method;      // upper case; HEAD is passed as GET
        std::string_view path;        // full request path, with the /plugins prefix
        std::string_view sub_path;    // without it: what find_http matched
        std::string_view query;       // raw, without '?'
        const Pairs* query_params = nullptr;
        const Pairs* headers = nullptr;
        std::string_view body;
    };
    struct HttpReply {
        int status = 200;
        std::string content_type = "application/json";
        Pairs headers;
        std::string body;
    };
    // Runs the route handler of `pin` matching call.sub_path (not found → 404 status). A plugin
    // error status becomes the returned Status (its message for the client).
    virtual Status http(const Pin&, const RequestContext&, const HttpCall&, HttpReply&) {
        return Status::not_found("Not Found");
    }

    virtual bool has_rpc(std::string_view id) const = 0;
    // Runs RPC `id`. On OK, `out_payload` holds the function's reply.
    virtual Status rpc(std::string_view id, const RequestContext& ctx, std::string_view payload,
                       std::string& out_payload) = 0;
};

}  // namespace nk::api
