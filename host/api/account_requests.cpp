#include "api/account_requests.hpp"

#include <rapidjson/document.h>

#include <iterator>
#include <utility>

#include "api/account_common.hpp"
#include "core/json_write.hpp"

namespace nk::api::account_detail {
namespace {

constexpr const char* kUpdateFields[] = {"username", "display_name", "avatar_url",
                                         "lang_tag", "location",     "timezone"};

template <class Update>
auto& update_slot(Update& u, std::size_t i) {
    decltype(&u.username) slots[] = {&u.username, &u.display_name, &u.avatar_url,
                                     &u.lang_tag, &u.location,     &u.timezone};
    return *slots[i];
}

Status read_account(const rapidjson::Value& account, AuthenticateKind kind,
                    AuthenticateRequest& req) {
    bool present = false;
    Status s;
    if (kind == AuthenticateKind::email) {
        if (!(s = read_string(account, "email", req.email, present)))
            return s;
        if (!(s = read_string(account, "password", req.password, present)))
            return s;
    } else {
        if (!(s = read_string(account, "id", req.id, present)))
            return s;
    }
    return read_vars(account, "vars", req.vars, req.has_vars);
}

// Reads a request object into a fresh Request with `read_members`; `r` changes only when the
// whole object read cleanly.
template <class Request, class ReadMembers>
Status read_request(std::string_view json, const JsonLimits& limits, Request& r,
                    ReadMembers read_members) {
    rapidjson::Document doc;
    if (auto s = parse_object(json, limits, doc); !s)
        return s;
    Request next;
    if (auto s = read_members(doc, next); !s)
        return s;
    r = std::move(next);
    return Status::ok();
}

}  // namespace

Status read_update(std::string_view json, const JsonLimits& limits, store::AccountUpdate& out) {
    rapidjson::Document doc;
    if (auto s = parse_object(json, limits, doc); !s)
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

std::string update_json(const store::AccountUpdate& u) {
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

Status read_authenticate(const net::Request& request, const JsonLimits& limits,
                         AuthenticateKind kind, AuthenticateRequest& out) {
    AuthenticateRequest req;
    rapidjson::Document doc;
    if (auto s = parse_object(request.body, limits, doc); !s)
        return s;
    if (request.body.find('{') != std::string::npos) {  // an account message was sent
        req.has_account = true;
        if (auto s = read_account(doc, kind, req); !s)
            return s;
    }
    if (auto create = request.query_param("create")) {
        bool value = true;
        if (!parse_bool(*create, value)) {
            return Status::invalid_argument("parsing field \"create\": strconv.ParseBool: parsing \"" +
                                            std::string(*create) + "\": invalid syntax");
        }
        req.create = value;
    }
    if (auto username = request.query_param("username"))
        req.username = std::string(*username);
    out = std::move(req);
    return Status::ok();
}

std::string authenticate_json(const AuthenticateRequest& req, AuthenticateKind kind) {
    std::string out = "{";
    bool first = true;
    auto key = [&](const char* name) {
        if (!first)
            out += ',';
        first = false;
        append_json_string(out, name);
        out += ':';
    };
    if (req.has_account) {
        key("account");
        out += '{';
        if (kind == AuthenticateKind::email) {
            out += "\"email\":";
            append_json_string(out, req.email);
            out += ",\"password\":";
            append_json_string(out, req.password);
        } else {
            out += "\"id\":";
            append_json_string(out, req.id);
        }
        if (req.has_vars) {
            out += ",\"vars\":";
            append_vars(out, req.vars);
        }
        out += '}';
    }
    if (req.create) {
        key("create");
        out += *req.create ? "true" : "false";
    }
    if (!req.username.empty()) {
        key("username");
        append_json_string(out, req.username);
    }
    out += '}';
    return out;
}

Status read_authenticate_json(std::string_view json, const JsonLimits& limits,
                              AuthenticateKind kind, AuthenticateRequest& out) {
    rapidjson::Document doc;
    if (auto s = parse_object(json, limits, doc); !s)
        return s;
    AuthenticateRequest next;
    auto account = doc.FindMember("account");
    if (account != doc.MemberEnd() && !account->value.IsNull()) {
        if (!account->value.IsObject()) {
            return Status::invalid_argument("proto: invalid value for message field account");
        }
        next.has_account = true;
        if (auto s = read_account(account->value, kind, next); !s)
            return s;
    }
    auto create = doc.FindMember("create");
    if (create != doc.MemberEnd() && !create->value.IsNull()) {
        if (!create->value.IsBool()) {
            return Status::invalid_argument("proto: invalid value for bool field create");
        }
        next.create = create->value.GetBool();
    }
    bool present = false;
    if (auto s = read_string(doc, "username", next.username, present); !s)
        return s;
    out = std::move(next);
    return Status::ok();
}

Status read_refresh(std::string_view json, const JsonLimits& limits, RefreshRequest& out) {
    return read_request(json, limits, out, [](const rapidjson::Value& doc, RefreshRequest& next) {
        bool present = false;
        if (auto s = read_string(doc, "token", next.token, present); !s)
            return s;
        return read_vars(doc, "vars", next.vars, next.has_vars);
    });
}

std::string refresh_json(const RefreshRequest& r) {
    std::string out;
    JsonObjectWriter o(out);
    o.string_if_set("token", r.token);
    if (r.has_vars)
        append_vars(o.key("vars"), r.vars);
    o.close();
    return out;
}

Status read_logout(std::string_view json, const JsonLimits& limits, LogoutRequest& out) {
    return read_request(json, limits, out, [](const rapidjson::Value& doc, LogoutRequest& next) {
        bool present = false;
        if (auto s = read_string(doc, "token", next.token, present); !s)
            return s;
        return read_string(doc, "refresh_token", next.refresh_token, present);
    });
}

std::string logout_json(const LogoutRequest& r) {
    std::string out;
    JsonObjectWriter o(out);
    o.string_if_set("token", r.token);
    o.string_if_set("refresh_token", r.refresh_token);
    o.close();
    return out;
}

}  // namespace nk::api::account_detail
