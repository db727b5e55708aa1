// GET, PUT and DELETE /v2/account, and register_account_routes().
#include "api/account.hpp"

#include <rapidjson/document.h>

#include <ctime>

#include "api/account_common.hpp"
#include "api/account_requests.hpp"
#include "api/bearer.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "auth/tokens.hpp"
#include "net/router.hpp"
#include "store/account_json.hpp"
#include "store/account_store.hpp"

namespace nk::api {
namespace {

using namespace account_detail;

// Characters as the schema's length() counts them: every byte that does not continue a UTF-8
// sequence.
std::size_t char_count(std::string_view s) {
    std::size_t n = 0;
    for (const char ch : s)
        n += (static_cast<unsigned char>(ch) & 0xC0) != 0x80;
    return n;
}

// The profile fields' length limits, checked here so that an over-long value is the client's
// 400 naming the field rather than the database's CHECK failure (500).
Status check_field_lengths(const store::AccountUpdate& u) {
    const struct {
        const std::optional<std::string>& value;
        const char* name;
        std::size_t max;
    } limits[] = {{u.display_name, "display_name", store::kMaxDisplayNameChars},
                  {u.avatar_url, "avatar_url", store::kMaxAvatarUrlChars},
                  {u.lang_tag, "lang_tag", store::kMaxLangTagChars},
                  {u.location, "location", store::kMaxLocationChars},
                  {u.timezone, "timezone", store::kMaxTimezoneChars}};
    for (const auto& f : limits) {
        if (f.value && char_count(*f.value) > f.max) {
            return Status::invalid_argument(std::string("Invalid ") + f.name +
                                            ", must be at most " + std::to_string(f.max) +
                                            " characters.");
        }
    }
    return Status::ok();
}

net::Response get_account(Services& services, const RequestContext& caller) {
    const Hooks hooks(services, "GetAccount");
    std::string in_json;
    if (auto s = hooks.before(caller, in_json); !s)
        return error(s);
    store::Account account;
    if (auto s = services.accounts->get_account(caller.user_id, account); !s)
        return error(s);
    std::string body = store::account_json(account);
    hooks.after(caller, body, "");
    return net::Response::json(200, std::move(body));
}

net::Response update_account(Services& services, store::AccountUpdate update,
                             const RequestContext& caller) {
    const Hooks hooks(services, "UpdateAccount");
    if (hooks.has_before()) {
        std::string in_json = update_json(update);
        if (auto s = hooks.before(caller, in_json); !s)
            return error(s);
        if (auto s = read_update(in_json, services.json, update); !s)
            return error(s);
    }
    if (update.username) {
        const std::string& u = *update.username;
        if (u.empty() || u.size() > 128) {
            return error(Status::invalid_argument("Username invalid, must be 1-128 bytes."));
        }
        if (has_control(u)) {
            return error(Status::invalid_argument(
                "Username invalid, no spaces or control characters allowed."));
        }
    }
    if (auto s = check_field_lengths(update); !s)
        return error(s);
    if (update.empty())
        return error(Status::invalid_argument("No fields to update."));
    if (auto s = services.accounts->update_account(caller.user_id, update); !s)
        return error(s);
    if (hooks.has_after())
        hooks.after(caller, "", update_json(update));
    return net::Response::empty_object();
}

net::Response delete_account(Services& services, const RequestContext& caller) {
    const Hooks hooks(services, "DeleteAccount");
    std::string in_json;
    if (auto s = hooks.before(caller, in_json); !s)
        return error(s);
    if (auto s = services.accounts->delete_account(caller.user_id); !s)
        return error(s);
    services.tokens->revoke_user(caller.user_id);
    // As Nakama: the deleted user's sockets are closed ("server-side session disconnect").
    if (services.sessions != nullptr)
        services.sessions->disconnect(caller.user_id, {});
    hooks.after(caller, "", "");
    return net::Response::empty_object();
}

// Checks services and the bearer token on the io thread, then runs `work` on the pool.
template <class Work>
void with_caller(Services& services, const net::Request& request, net::Responder respond,
                 Work work) {
    if (auto s = require_services(services); !s)
        return respond(error(s));
    RequestContext caller;
    if (auto s = authenticate_bearer(request, services, caller); !s)
        return respond(error(s));
    run_blocking(
        services, std::move(respond),
        [work = std::move(work), caller = std::move(caller)]() mutable { return work(caller); });
}

}  // namespace

void register_account_routes(net::Router& router, Services& services) {
    register_authenticate_routes(router, services);
    register_session_routes(router, services);
    router.add(net::Method::get, "/v2/account",
               [&services](net::Request&& request, net::Responder respond) {
                   with_caller(services, request, std::move(respond),
                               [&services](const RequestContext& caller) {
                                   return get_account(services, caller);
                               });
               });
    router.add(net::Method::put, "/v2/account",
               [&services](net::Request&& request, net::Responder respond) {
                   store::AccountUpdate update;
                   if (auto s = read_update(request.body, services.json, update); !s)
                       return respond(error(s));
                   with_caller(services, request, std::move(respond),
                               [&services,
                                update = std::move(update)](const RequestContext& caller) mutable {
                                   return update_account(services, std::move(update), caller);
                               });
               });
    router.add(net::Method::delete_, "/v2/account",
               [&services](net::Request&& request, net::Responder respond) {
                   with_caller(services, request, std::move(respond),
                               [&services](const RequestContext& caller) {
                                   return delete_account(services, caller);
                               });
               });
}

}  // namespace nk::api
