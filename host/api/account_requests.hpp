// The request messages of the account endpoints (account.hpp): readers of the bodies clients
// send (PUT /v2/account, POST /v2/account/authenticate/*, /v2/account/session/refresh,
// /v2/session/logout) and of the messages before-hooks hand back, and the JSON those hooks see.
//
// Every reader takes input from outside (a client body, a plugin's rewritten message) under the
// JSON limits: on a malformed body, invalid UTF-8, too deep a nesting or a member of the wrong
// type it returns 400 code 3 (invalid_argument) and leaves `out` unchanged; on success `out`
// holds exactly what was read. An empty body reads as {}. Values are not validated here (lengths,
// characters): the endpoints do that after the before-hook. Not a public API.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/json_read.hpp"
#include "core/status.hpp"
#include "net/http.hpp"
#include "store/account_store.hpp"

namespace nk::api::account_detail {

// PUT /v2/account: the profile fields a client may change.
Status read_update(std::string_view json, const JsonLimits& limits, store::AccountUpdate& out);
// The fields of `u` that are set, as an UpdateAccountRequest message.
std::string update_json(const store::AccountUpdate& u);

enum class AuthenticateKind { device, custom, email };

// Nakama's Authenticate{Device,Custom,Email}Request.
struct AuthenticateRequest {
    bool has_account = false;
    std::string id;  // device or custom id
    std::string email;
    std::string password;
    std::map<std::string, std::string> vars;
    bool has_vars = false;
    std::optional<bool> create;
    std::string username;
};

// A client's request: the body is the account message, the query parameters `create` (Go's
// ParseBool) and `username` complete it.
Status read_authenticate(const net::Request& request, const JsonLimits& limits,
                         AuthenticateKind kind, AuthenticateRequest& out);
// The request message as hooks see it ({"account":{...},"create":b,"username":s}).
std::string authenticate_json(const AuthenticateRequest& req, AuthenticateKind kind);
// Reads back a (possibly rewritten) hook message.
Status read_authenticate_json(std::string_view json, const JsonLimits& limits,
                              AuthenticateKind kind, AuthenticateRequest& out);

// POST /v2/account/session/refresh.
struct RefreshRequest {
    std::string token;
    std::map<std::string, std::string> vars;
    bool has_vars = false;
};
Status read_refresh(std::string_view json, const JsonLimits& limits, RefreshRequest& out);
std::string refresh_json(const RefreshRequest& r);

// POST /v2/session/logout.
struct LogoutRequest {
    std::string token;
    std::string refresh_token;
};
Status read_logout(std::string_view json, const JsonLimits& limits, LogoutRequest& out);
std::string logout_json(const LogoutRequest& r);

}  // namespace nk::api::account_detail
