// Router: maps (method, path) to a Handler; "{name}" segments capture.
//
// Patterns are absolute paths split on '/'; a segment "{name}" matches any
// one non-empty segment and is stored in Request::path_params. Exact
// (capture-free) patterns are found by one hash lookup; patterns with
// captures are tried in insertion order, segment by segment (no regex).
// HEAD is served by the GET route (net drops the body).
//
// Unknown path -> 404 {"code":5,"message":"Not Found"}; known path with
// another method -> 501 {"code":12,"message":"Method Not Allowed"}. With a
// fallback set, every path that matches no route goes to the fallback (for
// any method) instead of 404/501.
//
// Threading: configure (add/add_upgrade/set_fallback) before Server::start();
// afterwards the Router is read-only and shared by all io threads.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "net/http.hpp"
#include "net/upgrade.hpp"

namespace nk::net {

class Router {
public:
    Router();
    ~Router();
    Router(const Router&) = delete;
    Router& operator=(const Router&) = delete;

    // Throws std::invalid_argument on a malformed pattern or a duplicate (method, pattern).
    void add(Method method, std::string_view pattern, Handler handler);
    // WebSocket upgrade endpoint on an exact path (see upgrade.hpp).
    void add_upgrade(std::string_view path, UpgradeHandler handler);
    // Answers every request no route matches (any path, any method).
    void set_fallback(Handler handler);

    // Result of matching one request. `route` names the pattern for metrics:
    // the matched pattern, "fallback", or "unmatched".
    struct Match {
        enum class Kind { handler, not_found, method_not_allowed };
        Kind kind = Kind::not_found;
        const Handler* handler = nullptr;
        std::string_view route = "unmatched";
        std::size_t route_id = 0;  // dense id of `route`, < route_count()
    };
    // Matches `path` (already percent-decoded); appends captures to `params`.
    Match match(Method method, std::string_view path, KeyValues& params) const;
    // The upgrade handler registered for `path`, or nullptr.
    const UpgradeHandler* find_upgrade(std::string_view path) const;
    // Route id for an upgrade path (for metrics); only valid when find_upgrade() succeeded.
    std::size_t upgrade_route_id(std::string_view path) const;
    // Number of distinct route ids (patterns + upgrades + "fallback" + "unmatched").
    std::size_t route_count() const;
    std::string_view route_name(std::size_t route_id) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// Percent-decodes `in` ('+' as space when `plus_as_space`); invalid escapes are kept verbatim.
std::string percent_decode(std::string_view in, bool plus_as_space);
// Parses a query string (without '?'): percent-decoded, '+' as space, empty
// parameters ("&&", trailing '&') dropped; "a" alone gives ("a", "").
void parse_query(std::string_view query, KeyValues& out);
Method method_from_string(std::string_view name);

}  // namespace nk::net
