// The account endpoints' request readers (api/account_requests): PUT /v2/account, the
// authenticate bodies with their create/username query parameters, the session refresh and
// logout bodies, and the authenticate message a before-hook hands back. What a reader accepts
// must survive the round trip through the JSON hooks see: written, it reads back the same.
//
// First byte picks the reader. For a client's authenticate request the rest is
// "<query string>\n<body>" (no newline: all body); otherwise it is the body.
#include <cstdint>
#include <string>
#include <string_view>

#include "api/account_requests.hpp"
#include "net/http_parse.hpp"
#include "net/router.hpp"

namespace {

using namespace nk::api::account_detail;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

bool same(const nk::store::AccountUpdate& a, const nk::store::AccountUpdate& b) {
    return a.username == b.username && a.display_name == b.display_name &&
           a.avatar_url == b.avatar_url && a.lang_tag == b.lang_tag && a.location == b.location &&
           a.timezone == b.timezone && a.metadata == b.metadata;
}

bool same(const AuthenticateRequest& a, const AuthenticateRequest& b) {
    return a.has_account == b.has_account && a.id == b.id && a.email == b.email &&
           a.password == b.password && a.vars == b.vars && a.has_vars == b.has_vars &&
           a.create == b.create && a.username == b.username;
}

void round_trip(const AuthenticateRequest& req, AuthenticateKind kind,
                const nk::JsonLimits& limits) {
    AuthenticateRequest back;
    check(read_authenticate_json(authenticate_json(req, kind), limits, kind, back).is_ok());
    check(same(req, back));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0)
        return 0;
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    const nk::JsonLimits limits;
    switch (data[0] % 9) {
        case 0: {
            nk::store::AccountUpdate u;
            if (!read_update(rest, limits, u).is_ok())
                return 0;
            nk::store::AccountUpdate back;
            check(read_update(update_json(u), limits, back).is_ok());
            check(same(u, back));
            return 0;
        }
        case 1:
        case 2:
        case 3: {
            const auto kind = static_cast<AuthenticateKind>(data[0] % 9 - 1);
            nk::net::Request request;
            const auto newline = rest.find('\n');
            if (newline != std::string_view::npos) {
                nk::net::parse_query(rest.substr(0, newline), request.query);
                request.body = std::string(rest.substr(newline + 1));
            } else {
                request.body = std::string(rest);
            }
            // The server answers 400 before any handler sees a query that is not UTF-8.
            if (nk::net::invalid_utf8(request))
                return 0;
            AuthenticateRequest req;
            if (!read_authenticate(request, limits, kind, req).is_ok())
                return 0;
            round_trip(req, kind, limits);
            return 0;
        }
        case 4:
        case 5:
        case 6: {
            const auto kind = static_cast<AuthenticateKind>(data[0] % 9 - 4);
            AuthenticateRequest req;
            if (!read_authenticate_json(rest, limits, kind, req).is_ok())
                return 0;
            round_trip(req, kind, limits);
            return 0;
        }
        case 7: {
            RefreshRequest r, back;
            if (!read_refresh(rest, limits, r).is_ok())
                return 0;
            check(read_refresh(refresh_json(r), limits, back).is_ok());
            check(r.token == back.token && r.vars == back.vars && r.has_vars == back.has_vars);
            return 0;
        }
        default: {
            LogoutRequest r, back;
            if (!read_logout(rest, limits, r).is_ok())
                return 0;
            check(read_logout(logout_json(r), limits, back).is_ok());
            check(r.token == back.token && r.refresh_token == back.refresh_token);
            return 0;
        }
    }
}
