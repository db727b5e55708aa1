// GET, PUT and DELETE /v2/account, and register_account_routes().
#include "api/account.hpp"

#include <rapidjson/document.h>

#include <ctime>

#include "api/account_common.hpp"
#include "api/bearer.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "auth/tokens.hpp"
#include "net/router.hpp"
#include "store/account_store.hpp"

namespace nk::api {
namespace {

using namespace account_detail;

// protojson's Timestamp form for whole seconds: "2023-11-14T22:13:20Z".
std::string rfc3339(std::int64_t unix_seconds) {
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

// Nakama's Account message as protojson writes it: proto field names, fields in
// declaration order, zero values omitted, disable_time never shown.
std::string account_json(const store::Account& a) {
    std::string out = "{\"user\":{";
    bool first = true;
    auto field = [&](const char* name, const std::string& value) {
        if (value.empty())
            return;
        if (!first)
            out += ',';
        first = false;
        append_json_string(out, name);
        out += ':';
        append_json_string(out, value);
    };
    field("id", a.id);
    field("username", a.username);
    field("display_name", a.display_name);
    field("avatar_url", a.avatar_url);
    field("lang_tag", a.lang_tag);
    field("location", a.location);
    field("timezone", a.timezone);
    field("metadata", a.metadata);
    if (a.create_time != 0)
        field("create_time", rfc3339(a.create_time));
    if (a.update_time != 0)
        field("update_time", rfc3339(a.update_time));
    out += '}';
    if (!a.wallet.empty()) {
        out += ",\"wallet\":";
        append_json_string(out, a.wallet);
    }
    if (!a.email.empty()) {
        out += ",\"email\":";
        append_json_string(out, a.email);
    }
    if (!a.devices.empty()) {
        out += ",\"devices\":[";
        for (std::size_t i = 0; i < a.devices.size(); ++i) {
            if (i)
                out += ',';
            out += "{\"id\":";
            append_json_string(out, a.devices[i]);
            out += '}';
        }
        out += ']';
    }
    if (!a.custom_id.empty()) {
        out += ",\"custom_id\":";
        append_json_string(out, a.custom_id);
    }
    if (a.verify_time != 0) {
        out += ",\"verify_time\":";
        append_json_string(out, rfc3339(a.verify_time));
    }
    out += '}';
    return out;
}

constexpr const char* kUpdateFields[] = {"username", "display_name", "avatar_url",
                                         "lang_tag", "location",     "timezone"};

std::optional<std::string>& update_slot(store::AccountUpdate& u, std::size_t i) {
    std::optional<std::string>* slots[] = {&u.username, &u.display_name, &u.avatar_url,
                                           &u.lang_tag, &u.location,     &u.timezone};
    return *slots[i];
}

Status read_update(std::string_view json, store::AccountUpdate& out) {
    rapidjson::Document doc;
    if (auto s = parse_object(json, doc); !s)
        return s;
    store::AccountUpdate next;
    for (std::size_t i = 0; i < std::size(kUpdateFields); ++i) {
        std::string value;
        bool present = false;
        if (auto s = read_string(doc, kUpdateFields[i], value, present); !s)
            return s;
        if (present)
            update_slot(next, i) = std::move(value);
    }
    out = std::move(next);
    return Status::ok();
}

std::string update_json(store::AccountUpdate& u) {
    std::string out = "{";
    for (std::size_t i = 0; i < std::size(kUpdateFields); ++i) {
        const auto& v = update_slot(u, i);
        if (!v)
            continue;
        if (out.size() > 1)
            out += ',';
        append_json_string(out, kUpdateFields[i]);
        out += ':';
        append_json_string(out, *v);
    }
    out += '}';
    return out;
}

net::Response get_account(Services& services, const RequestContext& caller) {
    constexpr std::string_view id = "GetAccount";
    std::string in_json;
    if (auto s = run_before(services, id, caller, in_json); !s)
        return error(s);
    store::Account account;
    if (auto s = services.accounts->get_account(caller.user_id, account); !s)
        return error(s);
    std::string body = account_json(account);
    run_after(services, id, caller, body, "");
    return net::Response::json(200, std::move(body));
}

net::Response update_account(Services& services, store::AccountUpdate update,
                             const RequestContext& caller) {
    constexpr std::string_view id = "UpdateAccount";
    if (services.runtime != nullptr && services.runtime->has_before(id)) {
        std::string in_json = update_json(update);
        if (auto s = run_before(services, id, caller, in_json); !s)
            return error(s);
        if (auto s = read_update(in_json, update); !s)
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
    if (update.empty())
        return error(Status::invalid_argument("No fields to update."));
    if (auto s = services.accounts->update_account(caller.user_id, update); !s)
        return error(s);
    run_after(services, id, caller, "", update_json(update));
    return net::Response::empty_object();
}

net::Response delete_account(Services& services, const RequestContext& caller) {
    constexpr std::string_view id = "DeleteAccount";
    std::string in_json;
    if (auto s = run_before(services, id, caller, in_json); !s)
        return error(s);
    if (auto s = services.accounts->delete_account(caller.user_id); !s)
        return error(s);
    services.tokens->revoke_user(caller.user_id);
    run_after(services, id, caller, "", "");
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
                   if (auto s = read_update(request.body, update); !s)
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
