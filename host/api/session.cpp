// POST /v2/account/session/refresh and POST /v2/session/logout.
#include "api/account.hpp"
#include "api/account_common.hpp"
#include "api/account_requests.hpp"
#include "api/bearer.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "api/session_vars.hpp"
#include "auth/tokens.hpp"
#include "net/router.hpp"
#include "store/account_store.hpp"

namespace nk::api {
namespace {

using namespace account_detail;

net::Response refresh(Services& services, RefreshRequest req, const RequestContext& anon) {
    const Hooks hooks(services, "SessionRefresh");
    if (hooks.has_before()) {
        std::string in_json = refresh_json(req);
        if (auto s = hooks.before(anon, in_json); !s)
            return error(s);
        if (auto s = read_refresh(in_json, services.json, req); !s)
            return error(s);
    }
    if (req.token.empty())
        return error(Status::invalid_argument("Refresh token is required."));
    if (auto s = check_vars_size(*services.tokens, req.vars); !s)
        return error(s);
    auto claims = services.tokens->verify_refresh(req.token);
    if (!claims)
        return error(Status::unauthenticated("Refresh token invalid or expired."));
    store::UserRef user;
    if (auto s = services.accounts->find_user(claims->user_id, user); !s)
        return error(s);
    // A protobuf map has no presence: "vars":{} reads as absent, so the token's vars are kept
    // (nakama-js always sends "vars":{}).
    const auto& vars = !req.vars.empty() ? req.vars : claims->vars;
    const auto session = services.tokens->reissue(*claims, user.username, vars);
    std::string body = session_json(false, session.token, session.refresh_token);
    if (hooks.has_after()) {
        RequestContext ctx = anon;
        ctx.user_id = user.user_id;
        ctx.username = user.username;
        ctx.vars = vars;
        ctx.session_expiry = session.session.expires_at;
        hooks.after(std::move(ctx), body, refresh_json(req));
    }
    return net::Response::json(200, std::move(body));
}

// Nakama's SessionLogout: named tokens must parse and belong to the caller;
// none named = every session of the caller.
// Open sockets (Nakama leaves them open): a socket lives no longer than its token would
// authenticate a request, so a logout of every session closes all of the caller's sockets and
// a named session token closes the sockets opened with it ("server-side session disconnect").
// A refresh token opens no socket: naming only one closes none.
net::Response logout(Services& services, LogoutRequest req, const RequestContext& caller) {
    const Hooks hooks(services, "SessionLogout");
    if (hooks.has_before()) {
        std::string in_json = logout_json(req);
        if (auto s = hooks.before(caller, in_json); !s)
            return error(s);
        if (auto s = read_logout(in_json, services.json, req); !s)
            return error(s);
    }
    std::optional<auth::TokenClaims> session, refresh;
    if (!req.token.empty()) {
        session = services.tokens->parse(req.token, auth::TokenKind::session);
        if (!session || session->user_id != caller.user_id) {
            return error(Status::invalid_argument("Session token invalid."));
        }
    }
    if (!req.refresh_token.empty()) {
        refresh = services.tokens->parse(req.refresh_token, auth::TokenKind::refresh);
        if (!refresh || refresh->user_id != caller.user_id) {
            return error(Status::invalid_argument("Refresh token invalid."));
        }
    }
    if (!session && !refresh) {
        services.tokens->revoke_user(caller.user_id);
        if (services.sessions != nullptr)
            services.sessions->disconnect(caller.user_id, {});
    } else {
        if (session)
            services.tokens->revoke_session(*session);
        if (refresh)
            services.tokens->revoke_refresh(*refresh);
        if (session && services.sessions != nullptr)
            services.sessions->disconnect(caller.user_id, session->token_id);
    }
    if (hooks.has_after())
        hooks.after(caller, "", logout_json(req));
    return net::Response::empty_object();
}

}  // namespace

void register_session_routes(net::Router& router, Services& services) {
    router.add(
        net::Method::post, "/v2/account/session/refresh",
        [&services](net::Request&& request, net::Responder respond) {
            if (auto s = require_services(services); !s)
                return respond(error(s));
            RefreshRequest req;
            if (auto s = read_refresh(request.body, services.json, req); !s)
                return respond(error(s));
            if (auto s = services.tokens->check_server_key(request.header("Authorization")); !s) {
                return respond(error(s));
            }
            run_blocking(
                services, std::move(respond),
                [&services, req = std::move(req), anon = anonymous_context(request)]() mutable {
                    return refresh(services, std::move(req), anon);
                });
        });
    router.add(net::Method::post, "/v2/session/logout",
               [&services](net::Request&& request, net::Responder respond) {
                   if (auto s = require_services(services); !s)
                       return respond(error(s));
                   LogoutRequest req;
                   if (auto s = read_logout(request.body, services.json, req); !s)
                       return respond(error(s));
                   RequestContext caller;
                   if (auto s = authenticate_bearer(request, services, caller); !s) {
                       return respond(error(s));
                   }
                   // Without hooks logout is cache work only: answer on the io thread.
                   if (services.runtime == nullptr) {
                       return respond(logout(services, std::move(req), caller));
                   }
                   run_blocking(services, std::move(respond),
                                [&services, req = std::move(req), caller]() mutable {
                                    return logout(services, std::move(req), caller);
                                });
               });
}

}  // namespace nk::api
