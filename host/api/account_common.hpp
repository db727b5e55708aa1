// Internals shared by the account, authenticate and session endpoints:
// blocking-pool dispatch, plugin hook calls with Nakama's conventions, and
// the small JSON readers/writers these endpoints need. Not a public API.
#pragma once

#include <rapidjson/document.h>

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "core/blocking_pool.hpp"
#include "core/context.hpp"
#include "core/json_read.hpp"
#include "core/status.hpp"
#include "api/runtime_bridge.hpp"
#include "net/http.hpp"

namespace nk::api {
struct Services;
}

namespace nk::api::account_detail {

// 501 code 12 unless tokens, accounts and pool are all wired.
Status require_services(const Services& services);

// Runs `work` on the blocking pool and sends what it returns (see post_request_work: 503 code 14
// when the pool refuses it, dropped unrun when the client has gone). `bytes` is what the queued
// work holds; password work (bcrypt) goes to BlockingPool::Lane::password.
void run_blocking(Services& services, net::Responder respond, std::function<net::Response()> work,
                  std::size_t bytes = 0, BlockingPool::Lane lane = BlockingPool::Lane::general);

// Context for hooks of a request without a known user (authenticate, refresh).
RequestContext anonymous_context(const net::Request& request);

// The plugin hooks of one request (api id), pinned when constructed: its before- and after-hook
// come from the same module generation even when a hot reload swaps modules in between.
// Construct it on the pool, at the start of the request's work.
class Hooks {
  public:
    Hooks(Services& services, std::string_view api_id);
    bool has_before() const;
    bool has_after() const;
    // OK (and `in_json` possibly rewritten) when none is registered or it passed.
    Status before(RequestContext ctx, std::string& in_json) const;
    // Its outcome never changes the response.
    void after(RequestContext ctx, std::string_view out_json, std::string_view in_json) const;

  private:
    RuntimeBridge* runtime_;
    bool hooked_ = false;  // a before- or after-hook for api_id_ was registered at construction
    RuntimeBridge::Pin pin_;
    std::string_view api_id_;
};

// Parses a request body that must be a JSON object; empty body = {}.
// Malformed, invalid UTF-8 or nested deeper than `limits` → 400 code 3.
Status parse_object(std::string_view body, const JsonLimits& limits, rapidjson::Document& doc);
// Reads an optional string member: absent/null → false; non-string → 400.
Status read_string(const rapidjson::Value& obj, const char* name, std::string& out, bool& present);
// Reads an optional string→string map member ("vars"); non-object or non-string values → 400.
Status read_vars(const rapidjson::Value& obj, const char* name,
                 std::map<std::string, std::string>& out, bool& present);

void append_vars(std::string& out, const std::map<std::string, std::string>& vars);
// {"created":true,"token":"..","refresh_token":".."}, created omitted when false.
std::string session_json(bool created, const std::string& token, const std::string& refresh);

// Go's strconv.ParseBool for query parameters such as `create`.
bool parse_bool(std::string_view text, bool& out);

// Nakama's checks on ids and usernames (bytes, ASCII classes).
bool has_space_or_control(std::string_view s);
bool has_control(std::string_view s);

net::Response error(const Status& status);

}  // namespace nk::api::account_detail
