// POST /v2/account/authenticate/{device,custom,email}.
#include <optional>

#include "api/account.hpp"
#include "api/account_common.hpp"
#include "api/account_requests.hpp"
#include "api/blocking_work.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "api/session_vars.hpp"
#include "auth/login_throttle.hpp"
#include "auth/tokens.hpp"
#include "net/router.hpp"
#include "store/account_store.hpp"
#include "store/password.hpp"

namespace nk::api {
namespace {

using namespace account_detail;

using Kind = AuthenticateKind;

std::string_view api_id(Kind kind) {
    switch (kind) {
        case Kind::device:
            return "AuthenticateDevice";
        case Kind::custom:
            return "AuthenticateCustom";
        case Kind::email:
            return "AuthenticateEmail";
    }
    return "";
}

Status validate_username(const std::string& username) {
    if (has_control(username)) {
        return Status::invalid_argument(
            "Username invalid, no spaces or control characters allowed.");
    }
    if (username.size() > 128) {
        return Status::invalid_argument("Username invalid, must be 1-128 bytes.");
    }
    return Status::ok();
}

Status validate_id(const std::string& id, std::string_view label, std::size_t min) {
    const std::string name(label);
    if (id.empty())
        return Status::invalid_argument(name + " ID is required.");
    if (has_space_or_control(id)) {
        return Status::invalid_argument(name +
                                        " ID invalid, no spaces or control characters allowed.");
    }
    if (id.size() < min || id.size() > 128) {
        return Status::invalid_argument(name + " ID invalid, must be " + std::to_string(min) +
                                        "-128 bytes.");
    }
    return Status::ok();
}

// Nakama's ^.+@.+\..+$ on a string already free of whitespace and control characters.
bool looks_like_email(std::string_view e) {
    const auto at = e.find('@', 1);
    if (at == std::string_view::npos)
        return false;
    const auto dot = e.rfind('.');
    return dot != std::string_view::npos && dot >= at + 2 && dot + 1 < e.size();
}

// Validates and completes `req` (generated username). `username_login` is set for
// an email request without an email.
Status validate(Kind kind, AuthenticateRequest& req, bool& username_login) {
    username_login = false;
    if (kind == Kind::email) {
        if (!req.has_account) {
            return Status::invalid_argument("Email address and password is required.");
        }
        if (req.email.empty()) {
            username_login = true;
        } else if (has_space_or_control(req.email)) {
            return Status::invalid_argument(
                "Invalid email address, no spaces or control characters allowed.");
        } else if (!looks_like_email(req.email)) {
            return Status::invalid_argument("Invalid email address format.");
        } else if (req.email.size() < 10 || req.email.size() > 255) {
            return Status::invalid_argument("Invalid email address, must be 10-255 bytes.");
        }
        if (req.password.size() < 8) {
            return Status::invalid_argument("Password must be at least 8 characters long.");
        }
        if (Status st = store::check_password(req.password); !st)
            return st;
        if (req.username.empty() && username_login) {
            return Status::invalid_argument(
                "Username is required when email address is not supplied.");
        }
    } else {
        const bool device = kind == Kind::device;
        if (auto s = validate_id(req.id, device ? "Device" : "Custom", device ? 10 : 6); !s) {
            return s;
        }
    }
    if (req.username.empty()) {
        req.username = store::generate_username();
    } else if (auto s = validate_username(req.username); !s) {
        return s;
    }
    return Status::ok();
}

// The account a password login names, as the login throttle keys it (emails compare
// case-insensitively, as the store does).
std::string throttle_account(const AuthenticateRequest& req) {
    if (req.email.empty()) return "username:" + req.username;
    std::string key = "email:";
    for (unsigned char c : req.email)
        key += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    return key;
}

// Feeds the outcome of a password login to the throttle; only wrong credentials and unknown
// accounts count as failures (a refused or malformed request is not a guess).
void record_login(Services& services, const std::string& account, const std::string& address,
                  const Status& outcome) {
    if (services.login_throttle == nullptr) return;
    if (outcome.is_ok()) {
        services.login_throttle->succeeded(account, address);
    } else if (outcome.code() == Code::unauthenticated || outcome.code() == Code::not_found) {
        services.login_throttle->failed(account, address);
    }
}

net::Response authenticate(Services& services, Kind kind, AuthenticateRequest req,
                           const RequestContext& anon, const std::string& login_account) {
    const Hooks hooks(services, api_id(kind));
    if (hooks.has_before()) {
        std::string in_json = authenticate_json(req, kind);
        if (auto s = hooks.before(anon, in_json); !s)
            return error(s);
        if (auto s = read_authenticate_json(in_json, services.json, kind, req); !s)
            return error(s);
    }
    bool username_login = false;
    if (auto s = validate(kind, req, username_login); !s)
        return error(s);
    if (auto s = check_vars_size(*services.tokens, req.vars); !s)
        return error(s);
    const bool create = req.create.value_or(true);

    store::AuthResult result;
    Status s;
    switch (kind) {
        case Kind::device:
            s = services.accounts->authenticate_device(req.id, req.username, create, result);
            break;
        case Kind::custom:
            s = services.accounts->authenticate_custom(req.id, req.username, create, result);
            break;
        case Kind::email:
            s = services.accounts->authenticate_email(username_login ? "" : req.email, req.password,
                                                      req.username, create, result);
            record_login(services, login_account, anon.client_ip, s);
            break;
    }
    if (!s)
        return error(s);

    const auto session = services.tokens->issue(result.user_id, result.username, req.vars);
    // single_session revoked the user's earlier sessions: their sockets close with them (the new
    // session has none yet, and a concurrent login's valid one stays open).
    if (services.tokens->options().single_session && services.sessions != nullptr)
        services.sessions->disconnect_revoked(result.user_id);
    std::string body = session_json(result.created, session.token, session.refresh_token);
    if (hooks.has_after()) {
        RequestContext ctx = anon;
        ctx.user_id = result.user_id;
        ctx.username = result.username;
        ctx.vars = req.vars;
        ctx.session_expiry = session.session.expires_at;
        hooks.after(std::move(ctx), body, authenticate_json(req, kind));
    }
    return net::Response::json(200, std::move(body));
}

void handle(Services& services, Kind kind, net::Request&& request, net::Responder respond) {
    if (auto s = require_services(services); !s)
        return respond(error(s));
    AuthenticateRequest req;
    if (auto s = read_authenticate(request, services.json, kind, req); !s)
        return respond(error(s));
    if (auto s = services.tokens->check_server_key(request.header("Authorization")); !s) {
        return respond(error(s));
    }
    // Password logins: throttled before any bcrypt work, and hashed on the password lane so
    // that a flood of them leaves the rest of the pool serving other requests.
    std::string login_account;
    auto lane = BlockingPool::Lane::general;
    if (kind == Kind::email) {
        lane = BlockingPool::Lane::password;
        login_account = throttle_account(req);
        if (services.login_throttle != nullptr) {
            if (auto v = services.login_throttle->check(login_account, request.client_ip); !v) {
                if (services.work_metrics != nullptr) services.work_metrics->throttled(v.limit);
                auto r = error(Status(Code::resource_exhausted,
                                      "Too many failed login attempts, try again later."));
                r.headers.emplace_back("Retry-After", std::to_string(v.retry_after.count()));
                return respond(std::move(r));
            }
        }
    }
    RequestContext anon = anonymous_context(request);
    run_blocking(
        services, std::move(respond),
        [&services, kind, req = std::move(req), anon = std::move(anon),
         login_account = std::move(login_account)]() mutable {
            return authenticate(services, kind, std::move(req), anon, login_account);
        },
        request.body.size(), lane);
}

}  // namespace

void register_authenticate_routes(net::Router& router, Services& services) {
    for (auto [path, kind] : {std::pair{"/v2/account/authenticate/device", Kind::device},
                              std::pair{"/v2/account/authenticate/custom", Kind::custom},
                              std::pair{"/v2/account/authenticate/email", Kind::email}}) {
        router.add(net::Method::post, path,
                   [&services, kind = kind](net::Request&& request, net::Responder respond) {
                       handle(services, kind, std::move(request), std::move(respond));
                   });
    }
}

}  // namespace nk::api
