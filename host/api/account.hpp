// Account endpoints, Nakama-compatible (nakama-server.md §6, §7, §9b):
//   POST /v2/account/authenticate/device|custom|email  (Basic server key; ?create=&username=)
//   POST /v2/account/session/refresh                   (Basic server key)
//   POST /v2/session/logout                            (Bearer)
//   GET|PUT|DELETE /v2/account                         (Bearer)
//
// Handlers check keys and tokens on the io thread, then run store calls,
// bcrypt and plugin hooks on Services::pool and respond from there. Each
// endpoint calls the before-hook (may rewrite the input JSON or reject) and,
// after success, the after-hook (its failure never changes the response) of
// Services::runtime under Nakama's api ids: AuthenticateDevice,
// AuthenticateCustom, AuthenticateEmail, SessionRefresh, SessionLogout,
// GetAccount, UpdateAccount, DeleteAccount. Hook input JSON is Nakama's
// request message (authenticate: {"account":{...},"create":b,"username":s}),
// output JSON is the response body.
//
// Services (tokens, accounts, pool; runtime optional) must outlive the server.
#pragma once

namespace nk::net {
class Router;
}

namespace nk::api {

struct Services;

void register_account_routes(net::Router& router, Services& services);

// Parts of register_account_routes, one per file.
void register_authenticate_routes(net::Router& router, Services& services);
void register_session_routes(net::Router& router, Services& services);

}  // namespace nk::api
