// nk/sdk.hpp — header-only C++17 wrapper over nk/sdk.h, compiled into the plugin.
//
// It makes a plugin read like Nakama's Go runtime:
//
//   nk::Error afterUpdateAccount(const nk::Context& ctx, nk::Logger& logger, nk::Module& nk,
//                                const nk::UpdateAccountRequest& in) {
//       nk::Event evt;
//       evt.name = "account_updated";
//       evt.external = false;
//       return nk.Event(nk::Context::Background(), evt);
//   }
//   NK_INIT_MODULE(ctx, logger, nk, initializer) {
//       if (auto err = initializer.RegisterAfterUpdateAccount(afterUpdateAccount)) return err;
//       logger.Info("Server loaded.");
//       return {};
//   }
//
// Only C types from sdk.h cross the boundary: the std::function objects
// registered here live in the plugin and are deleted by the plugin (through
// the registration's destroy callback, called by the host at unload).
// Every trampoline catches every exception and returns a status: a thrown nk::Error is the
// plugin's answer (its code and message reach the client); any other exception is reported to
// the host as a fault (nk_module.report_fault): the client gets the call's generic message,
// the log and the plugin_faults metric get the details.
// Threading: see sdk.h. nk::Logger, nk::Module are cheap handles over the
// host's tables, valid (and thread-safe) while the module is loaded.
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "nk/json_read.hpp"
#include "nk/sdk.h"

namespace nk {

// ---- errors ---------------------------------------------------------------

// Go's `error`: default-constructed = no error; `if (auto err = f()) return err;`.
class Error {
  public:
    Error() = default;
    Error(nk_status code, std::string message) : code_(code), message_(std::move(message)) {}
    static Error InvalidArgument(std::string m) { return {NK_INVALID_ARGUMENT, std::move(m)}; }
    static Error NotFound(std::string m) { return {NK_NOT_FOUND, std::move(m)}; }
    static Error PermissionDenied(std::string m) { return {NK_PERMISSION_DENIED, std::move(m)}; }
    static Error Internal(std::string m) { return {NK_INTERNAL, std::move(m)}; }

    explicit operator bool() const { return code_ != NK_OK; }  // true = there is an error
    nk_status code() const { return code_; }
    const std::string& message() const { return message_; }

  private:
    nk_status code_ = NK_OK;
    std::string message_;
};

namespace detail {
inline nk_str view(const std::string& s) {
    return nk_str_from(s.data(), s.size());
}
inline std::string copy(nk_str s) {
    return s.len ? std::string(s.ptr, s.len) : std::string();
}
inline std::map<std::string, std::string> copy_map(const nk_kv* kv, size_t n) {
    std::map<std::string, std::string> m;
    for (size_t i = 0; i < n; ++i)
        m[copy(kv[i].key)] = copy(kv[i].value);
    return m;
}
inline void string_sink_write(void* host, const char* p, size_t n) {
    static_cast<std::string*>(host)->append(p, n);
}
// A sink that appends into a std::string owned by the plugin.
inline nk_sink string_sink(std::string& s) {
    return nk_sink{&s, &string_sink_write};
}
}  // namespace detail

// ---- context ----------------------------------------------------------------

// A copy of the host's nk_context (Nakama's runtime context keys).
struct Context {
    std::string execution_mode;
    std::string node;
    std::string version;
    std::map<std::string, std::string> env;
    std::string user_id;
    std::string username;
    std::map<std::string, std::string> vars;
    std::int64_t user_session_exp = 0;
    std::string session_id;
    std::string lang;
    std::string client_ip;
    std::string client_port;

    // Go's context.Background(): no user, no session.
    static Context Background() { return Context{}; }

    static Context FromC(const nk_context* c) {
        Context x;
        if (c == nullptr)
            return x;
        x.execution_mode = detail::copy(c->execution_mode);
        x.node = detail::copy(c->node);
        x.version = detail::copy(c->version);
        x.env = detail::copy_map(c->env, c->env_count);
        x.user_id = detail::copy(c->user_id);
        x.username = detail::copy(c->username);
        x.vars = detail::copy_map(c->vars, c->vars_count);
        x.user_session_exp = c->user_session_exp;
        x.session_id = detail::copy(c->session_id);
        x.lang = detail::copy(c->lang);
        x.client_ip = detail::copy(c->client_ip);
        x.client_port = detail::copy(c->client_port);
        return x;
    }
};

namespace detail {
// Borrowed C view of a Context; valid while both objects live.
struct CContext {
    explicit CContext(const Context& x) {
        for (const auto& [k, v] : x.env)
            env.push_back({view(k), view(v)});
        for (const auto& [k, v] : x.vars)
            vars.push_back({view(k), view(v)});
        c.size = sizeof(nk_context);
        c.execution_mode = view(x.execution_mode);
        c.node = view(x.node);
        c.version = view(x.version);
        c.env = env.data();
        c.env_count = env.size();
        c.user_id = view(x.user_id);
        c.username = view(x.username);
        c.vars = vars.data();
        c.vars_count = vars.size();
        c.user_session_exp = x.user_session_exp;
        c.session_id = view(x.session_id);
        c.lang = view(x.lang);
        c.client_ip = view(x.client_ip);
        c.client_port = view(x.client_port);
    }
    std::vector<nk_kv> env, vars;
    nk_context c{};
};
}  // namespace detail

// ---- events ---------------------------------------------------------------

struct Event {
    std::string name;
    std::map<std::string, std::string> properties;
    bool external = false;
    bool has_timestamp = false;  // Nakama leaves it nil when the client omits it
    std::int64_t timestamp_seconds = 0;
    std::int32_t timestamp_nanos = 0;
    nk_event_kind kind = NK_EVENT_CUSTOM;
    // Set by the host on events a handler receives (ABI 1.1; empty / zero on an older host);
    // ignored when emitting with nk.Event. `id`: unique and time-ordered (UUID v7 text).
    std::string id;
    std::chrono::system_clock::time_point received_at{};

    const std::string& GetName() const { return name; }

    static Event FromC(const nk_event* e) {
        Event x;
        if (e == nullptr)
            return x;
        x.name = detail::copy(e->name);
        x.properties = detail::copy_map(e->properties, e->property_count);
        x.external = e->external != 0;
        x.has_timestamp = e->has_timestamp != 0;
        x.timestamp_seconds = e->timestamp_seconds;
        x.timestamp_nanos = e->timestamp_nanos;
        x.kind = static_cast<nk_event_kind>(e->kind);
        if (NK_HAS_FIELD(e, nk_event, received_at_nanos)) {
            x.id = detail::copy(e->id);
            x.received_at = std::chrono::system_clock::time_point(
                std::chrono::duration_cast<std::chrono::system_clock::duration>(
                    std::chrono::seconds(e->received_at_seconds) +
                    std::chrono::nanoseconds(e->received_at_nanos)));
        }
        return x;
    }

    // Like Go's %+v: name:... properties:map[...] external:...
    std::string ToString() const {
        std::string s = "name:" + name + " properties:map[";
        bool first = true;
        for (const auto& [k, v] : properties) {
            if (!first)
                s += ' ';
            first = false;
            s += k + ":" + v;
        }
        s += "]";
        if (has_timestamp)
            s += " timestamp:" + std::to_string(timestamp_seconds);
        s += external ? " external:true" : " external:false";
        return s;
    }
};

// ---- typed hook messages (the REST API's JSON) --------------------------------

// Absent fields stay empty / nullopt.
struct UpdateAccountRequest {
    std::optional<std::string> username, display_name, avatar_url, lang_tag, location, timezone;
    // A JSON object as text. Only nk.AccountUpdateId sets it (ABI 1.2); clients cannot, as in
    // Nakama, so a before-hook never sees it.
    std::optional<std::string> metadata;
};
struct User {
    std::string id, username, display_name, avatar_url, lang_tag, location, timezone, metadata;
    std::string create_time, update_time;
    bool online = false;
    std::int64_t edge_count = 0;
};
struct AccountDevice {
    std::string id;
};
struct Account {
    User user;
    std::string wallet, email, custom_id, verify_time;
    std::vector<AccountDevice> devices;
};
struct Session {
    std::string token, refresh_token;
    bool created = false;
};
struct AccountDeviceRequest {  // AccountDevice / AccountCustom
    std::string id;
    std::map<std::string, std::string> vars;
};
struct AccountEmailRequest {
    std::string email, password;
    std::map<std::string, std::string> vars;
};
struct AuthenticateDeviceRequest {
    AccountDeviceRequest account;
    std::optional<bool> create;
    std::string username;
};
struct AuthenticateCustomRequest {
    AccountDeviceRequest account;
    std::optional<bool> create;
    std::string username;
};
struct AuthenticateEmailRequest {
    AccountEmailRequest account;
    std::optional<bool> create;
    std::string username;
};
struct SessionRefreshRequest {
    std::string token;
    std::map<std::string, std::string> vars;
};
struct SessionLogoutRequest {
    std::string token, refresh_token;
};
struct Empty {};

namespace json {
using Value = rapidjson::Value;
using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

inline void get(const Value& o, const char* k, std::string& out) {
    auto it = o.FindMember(k);
    if (it != o.MemberEnd() && it->value.IsString())
        out.assign(it->value.GetString(), it->value.GetStringLength());
}
inline void get(const Value& o, const char* k, std::optional<std::string>& out) {
    auto it = o.FindMember(k);
    if (it != o.MemberEnd() && it->value.IsString())
        out = std::string(it->value.GetString(), it->value.GetStringLength());
}
inline void get(const Value& o, const char* k, bool& out) {
    auto it = o.FindMember(k);
    if (it != o.MemberEnd() && it->value.IsBool())
        out = it->value.GetBool();
}
inline void get(const Value& o, const char* k, std::optional<bool>& out) {
    auto it = o.FindMember(k);
    if (it != o.MemberEnd() && it->value.IsBool())
        out = it->value.GetBool();
}
inline void get(const Value& o, const char* k, std::int64_t& out) {
    auto it = o.FindMember(k);
    if (it == o.MemberEnd())
        return;
    if (it->value.IsInt64())
        out = it->value.GetInt64();
    if (it->value.IsString())
        out = std::strtoll(it->value.GetString(), nullptr, 10);  // proto int64
}
inline void get(const Value& o, const char* k, std::map<std::string, std::string>& out) {
    auto it = o.FindMember(k);
    if (it == o.MemberEnd() || !it->value.IsObject())
        return;
    for (auto m = it->value.MemberBegin(); m != it->value.MemberEnd(); ++m)
        if (m->value.IsString())
            out[m->name.GetString()] = m->value.GetString();
}
inline void put(Writer& w, const char* k, const std::string& v, bool omit_empty = true) {
    if (omit_empty && v.empty())
        return;
    w.Key(k);
    w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
}
inline void put(Writer& w, const char* k, const std::optional<std::string>& v) {
    if (v)
        put(w, k, *v, false);
}
inline void put(Writer& w, const char* k, const std::map<std::string, std::string>& m) {
    if (m.empty())
        return;
    w.Key(k);
    w.StartObject();
    for (const auto& [key, v] : m) {
        w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
        w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
    }
    w.EndObject();
}
// A sub-object, or the object itself when the key is absent (lenient input).
inline const Value& sub(const Value& o, const char* k) {
    auto it = o.FindMember(k);
    return it != o.MemberEnd() && it->value.IsObject() ? it->value : o;
}

inline void read(const Value&, Empty&) {}
inline void write(Writer& w, const Empty&) {
    w.StartObject();
    w.EndObject();
}

inline void read(const Value& o, UpdateAccountRequest& r) {
    get(o, "username", r.username);
    get(o, "display_name", r.display_name);
    get(o, "avatar_url", r.avatar_url);
    get(o, "lang_tag", r.lang_tag);
    get(o, "location", r.location);
    get(o, "timezone", r.timezone);
}
inline void write(Writer& w, const UpdateAccountRequest& r) {
    w.StartObject();
    put(w, "username", r.username);
    put(w, "display_name", r.display_name);
    put(w, "avatar_url", r.avatar_url);
    put(w, "lang_tag", r.lang_tag);
    put(w, "location", r.location);
    put(w, "timezone", r.timezone);
    put(w, "metadata", r.metadata);
    w.EndObject();
}
inline void read(const Value& o, Account& a) {
    const Value& u = sub(o, "user");
    if (&u != &o) {
        get(u, "id", a.user.id);
        get(u, "username", a.user.username);
        get(u, "display_name", a.user.display_name);
        get(u, "avatar_url", a.user.avatar_url);
        get(u, "lang_tag", a.user.lang_tag);
        get(u, "location", a.user.location);
        get(u, "timezone", a.user.timezone);
        get(u, "metadata", a.user.metadata);
        get(u, "create_time", a.user.create_time);
        get(u, "update_time", a.user.update_time);
        get(u, "online", a.user.online);
        get(u, "edge_count", a.user.edge_count);
    }
    get(o, "wallet", a.wallet);
    get(o, "email", a.email);
    get(o, "custom_id", a.custom_id);
    get(o, "verify_time", a.verify_time);
    auto d = o.FindMember("devices");
    if (d != o.MemberEnd() && d->value.IsArray())
        for (const auto& dev : d->value.GetArray())
            if (dev.IsObject()) {
                AccountDevice ad;
                get(dev, "id", ad.id);
                a.devices.push_back(ad);
            }
}
inline void read(const Value& o, Session& s) {
    get(o, "token", s.token);
    get(o, "refresh_token", s.refresh_token);
    get(o, "created", s.created);
}
inline void read(const Value& o, AccountDeviceRequest& a) {
    get(o, "id", a.id);
    get(o, "vars", a.vars);
}
inline void read(const Value& o, AccountEmailRequest& a) {
    get(o, "email", a.email);
    get(o, "password", a.password);
    get(o, "vars", a.vars);
}
inline void write(Writer& w, const AccountDeviceRequest& a) {
    w.StartObject();
    put(w, "id", a.id);
    put(w, "vars", a.vars);
    w.EndObject();
}
inline void write(Writer& w, const AccountEmailRequest& a) {
    w.StartObject();
    put(w, "email", a.email);
    put(w, "password", a.password);
    put(w, "vars", a.vars);
    w.EndObject();
}
// Authenticate*Request: {"account":{...},"create":true,"username":"..."}.
template <class Req>
inline void read_auth(const Value& o, Req& r) {
    read(sub(o, "account"), r.account);
    get(o, "create", r.create);
    get(o, "username", r.username);
}
template <class Req>
inline void write_auth(Writer& w, const Req& r) {
    w.StartObject();
    w.Key("account");
    write(w, r.account);
    if (r.create) {
        w.Key("create");
        w.Bool(*r.create);
    }
    put(w, "username", r.username);
    w.EndObject();
}
inline void read(const Value& o, AuthenticateDeviceRequest& r) {
    read_auth(o, r);
}
inline void read(const Value& o, AuthenticateCustomRequest& r) {
    read_auth(o, r);
}
inline void read(const Value& o, AuthenticateEmailRequest& r) {
    read_auth(o, r);
}
inline void write(Writer& w, const AuthenticateDeviceRequest& r) {
    write_auth(w, r);
}
inline void write(Writer& w, const AuthenticateCustomRequest& r) {
    write_auth(w, r);
}
inline void write(Writer& w, const AuthenticateEmailRequest& r) {
    write_auth(w, r);
}
inline void read(const Value& o, SessionRefreshRequest& r) {
    get(o, "token", r.token);
    get(o, "vars", r.vars);
}
inline void write(Writer& w, const SessionRefreshRequest& r) {
    w.StartObject();
    put(w, "token", r.token);
    put(w, "vars", r.vars);
    w.EndObject();
}
inline void read(const Value& o, SessionLogoutRequest& r) {
    get(o, "token", r.token);
    get(o, "refresh_token", r.refresh_token);
}
inline void write(Writer& w, const SessionLogoutRequest& r) {
    w.StartObject();
    put(w, "token", r.token);
    put(w, "refresh_token", r.refresh_token);
    w.EndObject();
}
// RFC 3339 UTC ("2023-11-14T22:13:20Z", optional fraction) <-> unix seconds + nanos.
inline bool parse_rfc3339(const std::string& s, std::int64_t& sec, std::int32_t& nanos) {
    int y, mo, d, h, mi, se;
    char rest[40] = {0};
    if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%39s", &y, &mo, &d, &h, &mi, &se, rest) < 6)
        return false;
    // Days from civil (Howard Hinnant's algorithm): no timegm() dependency.
    y -= mo <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * static_cast<unsigned>(mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    sec = (era * 146097 + doe - 719468) * 86400 + h * 3600 + mi * 60 + se;
    nanos = 0;
    if (rest[0] == '.') {
        std::int32_t scale = 100000000;
        for (const char* p = rest + 1; *p >= '0' && *p <= '9'; ++p, scale /= 10)
            nanos += (*p - '0') * scale;
    }
    return true;
}
inline std::string format_rfc3339(std::int64_t sec, std::int32_t nanos) {
    const std::int64_t z = (sec >= 0 ? sec : sec - 86399) / 86400 + 719468;
    const std::int64_t secs_of_day = sec - (z - 719468) * 86400;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    const std::int64_t y = static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2);
    const int hh = static_cast<int>(secs_of_day / 3600),
              mm = static_cast<int>(secs_of_day / 60 % 60), ss = static_cast<int>(secs_of_day % 60);
    char buf[96];
    std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d", static_cast<long long>(y), m,
                  d, hh, mm, ss);
    std::string out = buf;
    if (nanos > 0) {
        std::snprintf(buf, sizeof buf, ".%09d", nanos);
        std::string frac = buf;
        while (frac.back() == '0')
            frac.pop_back();
        out += frac;
    }
    return out + "Z";
}

// Event JSON as /v2/event speaks it.
inline void read(const Value& o, Event& e) {
    get(o, "name", e.name);
    get(o, "properties", e.properties);
    get(o, "external", e.external);
    std::string ts;
    get(o, "timestamp", ts);
    e.has_timestamp = !ts.empty() && parse_rfc3339(ts, e.timestamp_seconds, e.timestamp_nanos);
}
inline void write(Writer& w, const Event& e) {
    w.StartObject();
    put(w, "name", e.name, false);
    put(w, "properties", e.properties);
    if (e.has_timestamp)
        put(w, "timestamp", format_rfc3339(e.timestamp_seconds, e.timestamp_nanos));
    w.Key("external");
    w.Bool(e.external);
    w.EndObject();
}

// ---- storage objects and wallets (ABI 1.2), as Nakama's runtime types ----
}  // namespace json

// What StorageRead asks for.
struct StorageRead {
    std::string collection;
    std::string key;
    std::string user_id;  // empty: the system user
};
// One object to write. value: a JSON object as text. version: "" = unconditional, "*" = only if
// absent, else only if the stored version is still this one. Permissions: read 0 none, 1 owner,
// 2 public; write 0 none (server only), 1 owner. Defaults as clients: owner, owner.
struct StorageWrite {
    std::string collection;
    std::string key;
    std::string user_id;  // empty: the system user
    std::string value;
    std::string version;
    int permission_read = 1;
    int permission_write = 1;
};
struct StorageDelete {
    std::string collection;
    std::string key;
    std::string user_id;
    std::string version;  // "" = unconditional
};
struct StorageObject {
    std::string collection;
    std::string key;
    std::string user_id;
    std::string value;  // a JSON object as text
    std::string version;
    int permission_read = 0;
    int permission_write = 0;
    std::string create_time;  // RFC 3339
    std::string update_time;
};
struct StorageObjectAck {
    std::string collection;
    std::string key;
    std::string user_id;
    std::string version;
};
// Currency -> amount (a wallet), or currency -> change (a changeset).
using WalletMap = std::map<std::string, std::int64_t>;
struct WalletUpdate {
    std::string user_id;
    WalletMap changeset;
    std::string metadata;  // a JSON object as text for the ledger entry, "" = {}
};
struct WalletUpdateResult {
    std::string user_id;
    WalletMap updated;
    WalletMap previous;
};
struct WalletLedgerItem {
    std::string id;
    std::string user_id;
    WalletMap changeset;
    std::string metadata;  // a JSON object as text
    std::string create_time;  // RFC 3339
    std::string update_time;
};

namespace json {
inline void get(const Value& o, const char* k, int& out) {
    auto it = o.FindMember(k);
    if (it != o.MemberEnd() && it->value.IsInt())
        out = it->value.GetInt();
}
inline void get(const Value& o, const char* k, WalletMap& out) {
    auto it = o.FindMember(k);
    if (it == o.MemberEnd() || !it->value.IsObject())
        return;
    for (auto m = it->value.MemberBegin(); m != it->value.MemberEnd(); ++m)
        if (m->value.IsInt64())
            out[std::string(m->name.GetString(), m->name.GetStringLength())] = m->value.GetInt64();
}
inline void put(Writer& w, const char* k, const WalletMap& m) {
    w.Key(k);
    w.StartObject();
    for (const auto& [name, amount] : m) {
        w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
        w.Int64(amount);
    }
    w.EndObject();
}
inline void put_int(Writer& w, const char* k, int v) {
    w.Key(k);
    w.Int(v);
}
// A JSON object given as text (metadata): written as an object, "" as {}. The text must be a
// valid JSON object (checked by the caller: the host refuses anything else).
inline void put_raw_object(Writer& w, const char* k, const std::string& text) {
    w.Key(k);
    if (text.empty()) {
        w.StartObject();
        w.EndObject();
    } else {
        w.RawValue(text.data(), text.size(), rapidjson::kObjectType);
    }
}
inline void read(const Value& o, StorageObject& out) {
    get(o, "collection", out.collection);
    get(o, "key", out.key);
    get(o, "user_id", out.user_id);
    get(o, "value", out.value);
    get(o, "version", out.version);
    get(o, "permission_read", out.permission_read);
    get(o, "permission_write", out.permission_write);
    get(o, "create_time", out.create_time);
    get(o, "update_time", out.update_time);
}
inline void read(const Value& o, StorageObjectAck& out) {
    get(o, "collection", out.collection);
    get(o, "key", out.key);
    get(o, "user_id", out.user_id);
    get(o, "version", out.version);
}
inline void read(const Value& o, WalletLedgerItem& out) {
    get(o, "id", out.id);
    get(o, "user_id", out.user_id);
    get(o, "changeset", out.changeset);
    auto it = o.FindMember("metadata");
    if (it != o.MemberEnd() && it->value.IsString())
        out.metadata.assign(it->value.GetString(), it->value.GetStringLength());
    get(o, "create_time", out.create_time);
    get(o, "update_time", out.update_time);
}
inline void read(const Value& o, WalletUpdateResult& out) {
    get(o, "user_id", out.user_id);
    get(o, "updated", out.updated);
    get(o, "previous", out.previous);
}
// {"<member>":[...]} into a vector of T.
template <class T>
inline bool read_array(const Value& o, const char* member, std::vector<T>& out) {
    auto it = o.FindMember(member);
    if (it == o.MemberEnd())
        return true;  // Nakama omits empty lists
    if (!it->value.IsArray())
        return false;
    for (const auto& e : it->value.GetArray()) {
        if (!e.IsObject())
            return false;
        T item;
        read(e, item);
        out.push_back(std::move(item));
    }
    return true;
}
}  // namespace json
namespace json {

// Parses `text` into `out`; an empty text leaves `out` default. False on bad JSON: malformed,
// not an object, invalid UTF-8, or nested deeper than json_read::kDefaultMaxDepth (64; fixed,
// since plugins get no config; the host refuses deeper client JSON before a plugin sees it).
template <class T>
inline bool parse(nk_str text, T& out) {
    if (text.len == 0)
        return true;
    rapidjson::Document d;
    if (!json_read::parse_document(text.ptr, text.len, d, json_read::kDefaultMaxDepth) ||
        !d.IsObject())
        return false;
    read(d, out);
    return true;
}
template <class T>
inline std::string serialize(const T& v) {
    rapidjson::StringBuffer sb;
    Writer w(sb);
    write(w, v);
    return std::string(sb.GetString(), sb.GetSize());
}
}  // namespace json

// ---- logger ---------------------------------------------------------------

class Logger {
  public:
    explicit Logger(const nk_logger* raw) : raw_(raw) {}
#if defined(__GNUC__)
#define NK_PRINTF_FORMAT __attribute__((format(printf, 2, 3)))
#else
#define NK_PRINTF_FORMAT
#endif
    // printf-style formatting.
    void Debug(const char* fmt, ...) const NK_PRINTF_FORMAT {
        va_list ap;
        va_start(ap, fmt);
        vlog(NK_LOG_DEBUG, fmt, ap);
        va_end(ap);
    }
    void Info(const char* fmt, ...) const NK_PRINTF_FORMAT {
        va_list ap;
        va_start(ap, fmt);
        vlog(NK_LOG_INFO, fmt, ap);
        va_end(ap);
    }
    void Warn(const char* fmt, ...) const NK_PRINTF_FORMAT {
        va_list ap;
        va_start(ap, fmt);
        vlog(NK_LOG_WARN, fmt, ap);
        va_end(ap);
    }
    void Error(const char* fmt, ...) const NK_PRINTF_FORMAT {
        va_list ap;
        va_start(ap, fmt);
        vlog(NK_LOG_ERROR, fmt, ap);
        va_end(ap);
    }
#undef NK_PRINTF_FORMAT
    // One line with structured fields.
    void Log(nk_log_level level, const std::string& message,
             const std::map<std::string, std::string>& fields = {}) const {
        std::vector<nk_kv> kv;
        for (const auto& [k, v] : fields)
            kv.push_back({detail::view(k), detail::view(v)});
        nk_log_fn fn = level_fn(level);
        if (fn != nullptr)
            fn(raw_, detail::view(message), kv.data(), kv.size());
    }
    bool Enabled(nk_log_level level) const {
        return raw_ != nullptr && (raw_->enabled == nullptr || raw_->enabled(raw_, level) != 0);
    }
    const nk_logger* raw() const {
        return raw_;
    }

  private:
    nk_log_fn level_fn(nk_log_level level) const {
        if (raw_ == nullptr)
            return nullptr;
        switch (level) {
            case NK_LOG_DEBUG:
                return raw_->debug;
            case NK_LOG_INFO:
                return raw_->info;
            case NK_LOG_WARN:
                return raw_->warn;
            default:
                return raw_->error;
        }
    }
    void vlog(nk_log_level level, const char* fmt, va_list ap) const {
        if (!Enabled(level))
            return;
        char small[512];
        va_list copy;
        va_copy(copy, ap);
        int n = std::vsnprintf(small, sizeof small, fmt, copy);
        va_end(copy);
        if (n < 0)
            return;
        std::string msg;
        if (static_cast<size_t>(n) < sizeof small) {
            msg.assign(small, static_cast<size_t>(n));
        } else {
            msg.resize(static_cast<size_t>(n) + 1);
            std::vsnprintf(msg.data(), msg.size(), fmt, ap);
            msg.resize(static_cast<size_t>(n));
        }
        nk_log_fn fn = level_fn(level);
        if (fn != nullptr)
            fn(raw_, detail::view(msg), nullptr, 0);
    }
    const nk_logger* raw_;
};

// ---- module -----------------------------------------------------------------

class Module {
  public:
    explicit Module(const nk_module* raw) : raw_(raw) {}

    // Go's nk.Event(ctx, evt): enqueues a custom event with ctx and evt.external as given.
    Error Event(const Context& ctx, const ::nk::Event& evt) const {
        if (!NK_HAS_FIELD(raw_, nk_module, event) || raw_->event == nullptr)
            return {NK_UNIMPLEMENTED, "nk.event is not available"};
        detail::CContext c(ctx);
        std::vector<nk_kv> props;
        for (const auto& [k, v] : evt.properties)
            props.push_back({detail::view(k), detail::view(v)});
        nk_event e{};
        e.size = sizeof(nk_event);
        e.kind = NK_EVENT_CUSTOM;
        e.name = detail::view(evt.name);
        e.properties = props.data();
        e.property_count = props.size();
        e.has_timestamp = evt.has_timestamp ? 1 : 0;
        e.timestamp_seconds = evt.timestamp_seconds;
        e.timestamp_nanos = evt.timestamp_nanos;
        e.external = evt.external ? 1 : 0;
        std::string err;
        nk_sink es = detail::string_sink(err);
        nk_status st = raw_->event(raw_, &c.c, &e, &es);
        return st == NK_OK ? Error() : Error(st, err);
    }

    Error AccountGetId(const Context& ctx, const std::string& user_id, Account& out) const {
        if (!NK_HAS_FIELD(raw_, nk_module, account_get_id) || raw_->account_get_id == nullptr)
            return {NK_UNIMPLEMENTED, "nk.account_get_id is not available"};
        detail::CContext c(ctx);
        std::string body, err;
        nk_sink bs = detail::string_sink(body), es = detail::string_sink(err);
        nk_status st = raw_->account_get_id(raw_, &c.c, detail::view(user_id), &bs, &es);
        if (st != NK_OK)
            return {st, err};
        if (!json::parse(detail::view(body), out))
            return Error::Internal("bad account JSON");
        return {};
    }

    Error AccountUpdateId(const Context& ctx, const std::string& user_id,
                          const UpdateAccountRequest& update) const {
        if (!NK_HAS_FIELD(raw_, nk_module, account_update_id) || raw_->account_update_id == nullptr)
            return {NK_UNIMPLEMENTED, "nk.account_update_id is not available"};
        detail::CContext c(ctx);
        std::string body = json::serialize(update), err;
        nk_sink es = detail::string_sink(err);
        nk_status st =
            raw_->account_update_id(raw_, &c.c, detail::view(user_id), detail::view(body), &es);
        return st == NK_OK ? Error() : Error(st, err);
    }

    // ---- storage objects and wallets (ABI 1.2), as Nakama's Go runtime ----
    // Server calls: no permission checks, and user_id "" is the system user. All may block.

    Error StorageRead(const Context& ctx, const std::vector<::nk::StorageRead>& reads,
                      std::vector<StorageObject>& out) const {
        if (!has_storage())
            return unavailable();
        std::string request = build([&](json::Writer& w) {
            w.Key("object_ids");
            w.StartArray();
            for (const auto& r : reads) {
                w.StartObject();
                json::put(w, "collection", r.collection, false);
                json::put(w, "key", r.key, false);
                json::put(w, "user_id", r.user_id, false);
                w.EndObject();
            }
            w.EndArray();
        });
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->storage_read(raw_, &c.c, detail::view(request), rs, es);
            },
            [&](const json::Value& d) { return json::read_array(d, "objects", out); });
    }

    Error StorageWrite(const Context& ctx, const std::vector<::nk::StorageWrite>& writes,
                       std::vector<StorageObjectAck>* acks = nullptr) const {
        if (!has_storage())
            return unavailable();
        std::string request = build([&](json::Writer& w) { put_writes(w, "objects", writes); });
        std::vector<StorageObjectAck> ignored;
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->storage_write(raw_, &c.c, detail::view(request), rs, es);
            },
            [&](const json::Value& d) {
                return json::read_array(d, "acks", acks != nullptr ? *acks : ignored);
            });
    }

    // caller_id "" lists as the server (everything); user_id "" lists every user's objects.
    Error StorageList(const Context& ctx, const std::string& caller_id, const std::string& user_id,
                      const std::string& collection, int limit, const std::string& cursor,
                      std::vector<StorageObject>& out, std::string& next_cursor) const {
        if (!has_storage())
            return unavailable();
        const std::string from = cursor;  // next_cursor may be the same string
        next_cursor.clear();
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->storage_list(raw_, &c.c, detail::view(caller_id),
                                          detail::view(user_id), detail::view(collection),
                                          static_cast<int32_t>(limit), detail::view(from), rs,
                                          es);
            },
            [&](const json::Value& d) {
                json::get(d, "cursor", next_cursor);
                return json::read_array(d, "objects", out);
            });
    }

    Error StorageDelete(const Context& ctx, const std::vector<::nk::StorageDelete>& deletes) const {
        if (!has_storage())
            return unavailable();
        std::string request =
            build([&](json::Writer& w) { put_deletes(w, "object_ids", deletes); });
        detail::CContext c(ctx);
        std::string err;
        nk_sink es = detail::string_sink(err);
        const nk_status st = raw_->storage_delete(raw_, &c.c, detail::view(request), &es);
        return st == NK_OK ? Error() : Error(st, err);
    }

    // Adds `changeset` to the wallet of `user_id` atomically; refused (nothing changes) when a
    // currency would go negative. metadata_json: a JSON object for the ledger entry ("" = {}).
    Error WalletUpdate(const Context& ctx, const std::string& user_id, const WalletMap& changeset,
                       const std::string& metadata_json, bool update_ledger,
                       WalletMap* updated = nullptr, WalletMap* previous = nullptr) const {
        if (!has_storage())
            return unavailable();
        std::string cs = changeset_json(changeset);
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->wallet_update(raw_, &c.c, detail::view(user_id), detail::view(cs),
                                           detail::view(metadata_json), update_ledger ? 1 : 0,
                                           rs, es);
            },
            [&](const json::Value& d) {
                if (updated != nullptr)
                    json::get(d, "updated", *updated);
                if (previous != nullptr)
                    json::get(d, "previous", *previous);
                return true;
            });
    }

    // Several wallets at once: all or nothing.
    Error WalletsUpdate(const Context& ctx, const std::vector<::nk::WalletUpdate>& updates,
                        bool update_ledger, std::vector<WalletUpdateResult>* results = nullptr) const {
        if (!has_storage())
            return unavailable();
        std::string request =
            build([&](json::Writer& w) { put_wallet_updates(w, "updates", updates); });
        std::vector<WalletUpdateResult> ignored;
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->wallets_update(raw_, &c.c, detail::view(request),
                                            update_ledger ? 1 : 0, rs, es);
            },
            [&](const json::Value& d) {
                return json::read_array(d, "results", results != nullptr ? *results : ignored);
            });
    }

    // Nakama's MultiUpdate: storage writes and deletes and wallet updates in one transaction,
    // all or nothing: the way to grant an item and charge its price consistently.
    Error MultiUpdate(const Context& ctx, const std::vector<::nk::StorageWrite>& writes,
                      const std::vector<::nk::StorageDelete>& deletes,
                      const std::vector<::nk::WalletUpdate>& wallet_updates, bool update_ledger,
                      std::vector<StorageObjectAck>* acks = nullptr,
                      std::vector<WalletUpdateResult>* wallet_results = nullptr) const {
        if (!has_storage())
            return unavailable();
        std::string request = build([&](json::Writer& w) {
            put_writes(w, "storage_writes", writes);
            put_deletes(w, "storage_deletes", deletes);
            put_wallet_updates(w, "wallet_updates", wallet_updates);
        });
        std::vector<StorageObjectAck> no_acks;
        std::vector<WalletUpdateResult> no_results;
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->multi_update(raw_, &c.c, detail::view(request),
                                          update_ledger ? 1 : 0, rs, es);
            },
            [&](const json::Value& d) {
                return json::read_array(d, "acks", acks != nullptr ? *acks : no_acks) &&
                       json::read_array(d, "wallet_results",
                                        wallet_results != nullptr ? *wallet_results : no_results);
            });
    }

    Error WalletLedgerList(const Context& ctx, const std::string& user_id, int limit,
                           const std::string& cursor, std::vector<WalletLedgerItem>& out,
                           std::string& next_cursor) const {
        if (!has_storage())
            return unavailable();
        const std::string from = cursor;  // next_cursor may be the same string
        next_cursor.clear();
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->wallet_ledger_list(raw_, &c.c, detail::view(user_id),
                                                static_cast<int32_t>(limit), detail::view(from),
                                                rs, es);
            },
            [&](const json::Value& d) {
                json::get(d, "cursor", next_cursor);
                return json::read_array(d, "items", out);
            });
    }

    Error WalletLedgerUpdate(const Context& ctx, const std::string& item_id,
                             const std::string& metadata_json,
                             WalletLedgerItem* out = nullptr) const {
        if (!has_storage())
            return unavailable();
        return call_json(
            [&](nk_sink* rs, nk_sink* es) {
                detail::CContext c(ctx);
                return raw_->wallet_ledger_update(raw_, &c.c, detail::view(item_id),
                                                  detail::view(metadata_json), rs, es);
            },
            [&](const json::Value& d) {
                if (out != nullptr)
                    json::read(d, *out);
                return true;
            });
    }

    // Plugin metrics (ABI 1.1), as Nakama's: exported on the Prometheus endpoint as
    // <metrics.prefix>_custom_<name>{node_name, tags...}. Names and tag keys are
    // [a-zA-Z_][a-zA-Z0-9_]* (see sdk.h for every limit); a bad one is an InvalidArgument error.
    // Cheap once a tag set exists: call it per event. Keep tag values few (no user ids): each
    // metric holds at most 256 tag sets, further ones are dropped and counted.
    using Tags = std::map<std::string, std::string>;
    Error MetricsCounterAdd(const std::string& name, const Tags& tags, std::int64_t delta) const {
        if (!NK_HAS_FIELD(raw_, nk_module, metrics_counter_add) ||
            raw_->metrics_counter_add == nullptr)
            return {NK_UNIMPLEMENTED, "metrics: the host predates ABI 1.1"};
        return metric(tags, [&](const nk_kv* kv, size_t n, nk_sink* es) {
            return raw_->metrics_counter_add(raw_, detail::view(name), kv, n, delta, es);
        });
    }
    Error MetricsGaugeSet(const std::string& name, const Tags& tags, double value) const {
        if (!NK_HAS_FIELD(raw_, nk_module, metrics_gauge_set) || raw_->metrics_gauge_set == nullptr)
            return {NK_UNIMPLEMENTED, "metrics: the host predates ABI 1.1"};
        return metric(tags, [&](const nk_kv* kv, size_t n, nk_sink* es) {
            return raw_->metrics_gauge_set(raw_, detail::view(name), kv, n, value, es);
        });
    }
    Error MetricsTimerRecord(const std::string& name, const Tags& tags,
                             std::chrono::nanoseconds duration) const {
        if (!NK_HAS_FIELD(raw_, nk_module, metrics_timer_record) ||
            raw_->metrics_timer_record == nullptr)
            return {NK_UNIMPLEMENTED, "metrics: the host predates ABI 1.1"};
        return metric(tags, [&](const nk_kv* kv, size_t n, nk_sink* es) {
            return raw_->metrics_timer_record(raw_, detail::view(name), kv, n,
                                              static_cast<int64_t>(duration.count()), es);
        });
    }

    const nk_module* raw() const { return raw_; }

  private:
    // Tags as nk_kv views on the stack (no allocation for the usual few), then `call`.
    template <class Call>
    static Error metric(const Tags& tags, Call call) {
        nk_kv small[8];
        std::vector<nk_kv> large;
        nk_kv* kv = small;
        if (tags.size() > 8) {
            large.resize(tags.size());
            kv = large.data();
        }
        size_t n = 0;
        for (const auto& [k, v] : tags)
            kv[n++] = {detail::view(k), detail::view(v)};
        std::string err;
        nk_sink es = detail::string_sink(err);
        const nk_status st = call(kv, n, &es);
        return st == NK_OK ? Error() : Error(st, err);
    }

    bool has_storage() const {
        return NK_HAS_FIELD(raw_, nk_module, multi_update) && raw_->storage_read != nullptr;
    }
    static void put_writes(json::Writer& w, const char* member,
                           const std::vector<::nk::StorageWrite>& writes) {
        w.Key(member);
        w.StartArray();
        for (const auto& o : writes) {
            w.StartObject();
            json::put(w, "collection", o.collection, false);
            json::put(w, "key", o.key, false);
            json::put(w, "user_id", o.user_id, false);
            json::put(w, "value", o.value, false);
            json::put(w, "version", o.version);
            json::put_int(w, "permission_read", o.permission_read);
            json::put_int(w, "permission_write", o.permission_write);
            w.EndObject();
        }
        w.EndArray();
    }
    static void put_deletes(json::Writer& w, const char* member,
                            const std::vector<::nk::StorageDelete>& deletes) {
        w.Key(member);
        w.StartArray();
        for (const auto& o : deletes) {
            w.StartObject();
            json::put(w, "collection", o.collection, false);
            json::put(w, "key", o.key, false);
            json::put(w, "user_id", o.user_id, false);
            json::put(w, "version", o.version);
            w.EndObject();
        }
        w.EndArray();
    }
    static void put_wallet_updates(json::Writer& w, const char* member,
                                   const std::vector<::nk::WalletUpdate>& updates) {
        w.Key(member);
        w.StartArray();
        for (const auto& u : updates) {
            w.StartObject();
            json::put(w, "user_id", u.user_id, false);
            json::put(w, "changeset", u.changeset);
            json::put_raw_object(w, "metadata", u.metadata);
            w.EndObject();
        }
        w.EndArray();
    }
    static Error unavailable() {
        return {NK_UNIMPLEMENTED, "storage and wallets: the host predates ABI 1.2"};
    }
    template <class F>
    static std::string build(F body) {
        rapidjson::StringBuffer sb;
        json::Writer w(sb);
        w.StartObject();
        body(w);
        w.EndObject();
        return std::string(sb.GetString(), sb.GetSize());
    }
    static std::string changeset_json(const WalletMap& m) {
        rapidjson::StringBuffer sb;
        json::Writer w(sb);
        w.StartObject();
        for (const auto& [name, amount] : m) {
            w.Key(name.data(), static_cast<rapidjson::SizeType>(name.size()));
            w.Int64(amount);
        }
        w.EndObject();
        return std::string(sb.GetString(), sb.GetSize());
    }
    // Calls `invoke(response_sink, error_sink)`, then hands the parsed response to `read`.
    template <class Invoke, class Read>
    static Error call_json(Invoke invoke, Read read) {
        std::string body, err;
        nk_sink bs = detail::string_sink(body), es = detail::string_sink(err);
        const nk_status st = invoke(&bs, &es);
        if (st != NK_OK)
            return {st, err};
        if (body.empty())
            return {};
        rapidjson::Document d;
        if (!json_read::parse_document(body.data(), body.size(), d, json_read::kDefaultMaxDepth) ||
            !d.IsObject() || !read(static_cast<const json::Value&>(d)))
            return Error::Internal("bad JSON from the host");
        return {};
    }

    const nk_module* raw_;
};

// ---- trampolines ----------------------------------------------------------

namespace detail {
// Runs `f`, turning any exception into a status. A returned or thrown nk::Error is the
// plugin's answer (its code and message reach the client). Any other exception is a fault of
// the plugin's code: reported to the host (nk_module.report_fault, ABI 1.2), which logs it
// naming the module and the call, rate-limited, counts it, and answers the client the call's
// generic message; its text never reaches the client. Without `nk` (InitModule) the text is
// logged and written to r_error (InitModule's refusal reason, for the operator).
template <class F>
inline nk_status guarded(const nk_logger* logger, const nk_module* nk, nk_sink* r_error,
                         const char* what, F&& f) {
    std::string message;
    try {
        Error err = f();
        if (!err)
            return NK_OK;
        nk_sink_write(r_error, err.message().data(), err.message().size());
        return err.code();
    } catch (const Error& err) {  // a thrown nk::Error keeps its code
        nk_sink_write(r_error, err.message().data(), err.message().size());
        return err.code() == NK_OK ? NK_INTERNAL : err.code();
    } catch (const std::exception& e) {
        message = e.what();
    } catch (...) {
        message = "a non-standard exception";
    }
    try {
        if (NK_HAS_FIELD(nk, nk_module, report_fault) && nk->report_fault != nullptr) {
            message = std::string(what) + " threw: " + message;
            nk->report_fault(nk, view(message));
            return NK_INTERNAL;
        }
        message = std::string(what) + " threw: " + message;
        Logger(logger).Log(NK_LOG_ERROR, message);
        nk_sink_write(r_error, message.data(), message.size());
    } catch (...) {
    }
    return NK_INTERNAL;
}

template <class Fn>
inline void destroy_fn(void* p) {
    delete static_cast<Fn*>(p);
}

using EventFn = std::function<void(const Context&, Logger&, Module&, const Event&)>;

inline void on_event(void* ud, const nk_context* ctx, const nk_logger* logger, const nk_module* nk,
                     const nk_event* evt) {
    guarded(logger, nk, nullptr, "event handler", [&] {
        Logger l(logger);
        Module m(nk);
        (*static_cast<EventFn*>(ud))(Context::FromC(ctx), l, m, Event::FromC(evt));
        return Error();
    });
}

// Before-hook over a typed request: parsed in, handler may modify it, written back.
template <class Req>
struct Before {
    using Fn = std::function<Error(const Context&, Logger&, Module&, Req&)>;
    static nk_status call(void* ud, const nk_context* ctx, const nk_logger* logger,
                          const nk_module* nk, nk_str in_json, nk_sink* r_in_json,
                          nk_sink* r_error) {
        return guarded(logger, nk, r_error, "before-hook", [&] {
            Req req{};
            if (!json::parse(in_json, req))
                return Error::InvalidArgument("bad request JSON");
            Logger l(logger);
            Module m(nk);
            Error err = (*static_cast<Fn*>(ud))(Context::FromC(ctx), l, m, req);
            if (!err) {
                std::string out = json::serialize(req);
                nk_sink_write(r_in_json, out.data(), out.size());
            }
            return err;
        });
    }
};

template <class Out, class In>
struct After {
    using Fn = std::function<Error(const Context&, Logger&, Module&, const Out&, const In&)>;
    static nk_status call(void* ud, const nk_context* ctx, const nk_logger* logger,
                          const nk_module* nk, nk_str out_json, nk_str in_json, nk_sink* r_error) {
        return guarded(logger, nk, r_error, "after-hook", [&] {
            Out out{};
            In in{};
            if (!json::parse(out_json, out) || !json::parse(in_json, in))
                return Error::InvalidArgument("bad hook JSON");
            Logger l(logger);
            Module m(nk);
            return (*static_cast<Fn*>(ud))(Context::FromC(ctx), l, m, out, in);
        });
    }
};

using RpcFn = std::function<Error(const Context&, Logger&, Module&, const std::string& payload,
                                  std::string& out)>;
inline nk_status on_rpc(void* ud, const nk_context* ctx, const nk_logger* logger,
                        const nk_module* nk, nk_str payload, nk_sink* r_payload, nk_sink* r_error) {
    return guarded(logger, nk, r_error, "rpc function", [&] {
        Logger l(logger);
        Module m(nk);
        std::string out;
        Error err = (*static_cast<RpcFn*>(ud))(Context::FromC(ctx), l, m, copy(payload), out);
        if (!err)
            nk_sink_write(r_payload, out.data(), out.size());
        return err;
    });
}

using ShutdownFn = std::function<void(const Context&, Logger&, Module&, std::int64_t)>;
inline void on_shutdown(void* ud, const nk_context* ctx, const nk_logger* logger,
                        const nk_module* nk, int64_t grace) {
    guarded(logger, nk, nullptr, "shutdown handler", [&] {
        Logger l(logger);
        Module m(nk);
        (*static_cast<ShutdownFn*>(ud))(Context::FromC(ctx), l, m, grace);
        return Error();
    });
}

// State handoff (ABI 1.1): save returns the blob's format version and fills `blob`; load
// merges a predecessor's blob (an Error for a version it does not know: it starts fresh).
using HandoffSaveFn = std::function<std::uint32_t(const Context&, Logger&, Module&, std::string& blob)>;
using HandoffLoadFn = std::function<Error(const Context&, Logger&, Module&, std::uint32_t version,
                                          const std::string& blob)>;
struct HandoffFns {
    HandoffSaveFn save;
    HandoffLoadFn load;
};
inline void on_handoff_save(void* ud, const nk_context* ctx, const nk_logger* logger,
                            const nk_module* nk, uint32_t* r_version, nk_sink* r_blob) {
    auto& fns = *static_cast<HandoffFns*>(ud);
    if (!fns.save)
        return;
    guarded(logger, nk, nullptr, "handoff save", [&] {
        Logger l(logger);
        Module m(nk);
        std::string blob;
        const std::uint32_t version = fns.save(Context::FromC(ctx), l, m, blob);
        if (r_version != nullptr)
            *r_version = version;
        nk_sink_write(r_blob, blob.data(), blob.size());
        return Error();
    });
}
inline nk_status on_handoff_load(void* ud, const nk_context* ctx, const nk_logger* logger,
                                 const nk_module* nk, uint32_t version, nk_str blob) {
    auto& fns = *static_cast<HandoffFns*>(ud);
    if (!fns.load)
        return NK_OK;
    return guarded(logger, nk, nullptr, "handoff load", [&] {
        Logger l(logger);
        Module m(nk);
        return fns.load(Context::FromC(ctx), l, m, version, copy(blob));
    });
}
}  // namespace detail

// ---- plugin HTTP routes (ABI 1.1) ---------------------------------------------

// A request to a plugin route (a copy: keep it as long as you like).
struct HttpRequest {
    std::string method;  // "GET", "POST", ...
    std::string path;    // e.g. "/plugins/stats"
    std::string route;   // the registered path, e.g. "/stats"
    std::string query;   // raw, without '?'
    std::vector<std::pair<std::string, std::string>> query_params;  // decoded, in order
    std::vector<std::pair<std::string, std::string>> headers;       // as received
    std::string body;

    // First value of a query parameter / header (case-insensitive), or "" when absent.
    std::string Query(const std::string& name) const {
        for (const auto& [k, v] : query_params)
            if (k == name)
                return v;
        return {};
    }
    std::string Header(const std::string& name) const {
        for (const auto& [k, v] : headers) {
            if (k.size() == name.size() &&
                std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
                    return std::tolower(static_cast<unsigned char>(a)) ==
                           std::tolower(static_cast<unsigned char>(b));
                }))
                return v;
        }
        return {};
    }
};

// What a route handler answers: status 200 and Content-Type application/json unless set.
struct HttpResponse {
    int status = 200;
    std::string content_type;  // empty: application/json
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
};

namespace detail {
using HttpFn = std::function<Error(const Context&, Logger&, Module&, const HttpRequest&,
                                   HttpResponse&)>;
inline std::vector<std::pair<std::string, std::string>> copy_pairs(const nk_kv* kv, size_t n) {
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(n);
    for (size_t i = 0; i < n; ++i)
        out.emplace_back(copy(kv[i].key), copy(kv[i].value));
    return out;
}
inline nk_status on_http(void* ud, const nk_context* ctx, const nk_logger* logger,
                         const nk_module* nk, const nk_http_request* req, nk_http_response* resp,
                         nk_sink* r_error) {
    return guarded(logger, nk, r_error, "http handler", [&] {
        HttpRequest r;
        r.method = copy(req->method);
        r.path = copy(req->path);
        r.route = copy(req->route);
        r.query = copy(req->query);
        r.query_params = copy_pairs(req->query_params, req->query_param_count);
        r.headers = copy_pairs(req->headers, req->header_count);
        r.body = copy(req->body);
        Logger l(logger);
        Module m(nk);
        HttpResponse out;
        Error err = (*static_cast<HttpFn*>(ud))(Context::FromC(ctx), l, m, r, out);
        if (err)
            return err;
        resp->set_status(resp, out.status);
        if (!out.content_type.empty())
            resp->add_header(resp, nk_str_c("Content-Type"), view(out.content_type));
        for (const auto& [k, v] : out.headers)
            resp->add_header(resp, view(k), view(v));
        nk_sink_write(resp->body, out.body.data(), out.body.size());
        return Error();
    });
}
}  // namespace detail

// ---- initializer ------------------------------------------------------------

class Initializer {
  public:
    explicit Initializer(const nk_initializer* raw) : raw_(raw) {}

    using EventHandler = std::function<void(const Context&, Logger&, Module&, const Event&)>;

    // Handlers take (ctx, logger, evt) like Go's, or (ctx, logger, nk, evt).
    template <class F>
    Error RegisterEvent(F fn) {
        return event(raw_->register_event, adapt_event(std::move(fn)));
    }
    template <class F>
    Error RegisterEventSessionStart(F fn) {
        return event(raw_->register_event_session_start, adapt_event(std::move(fn)));
    }
    template <class F>
    Error RegisterEventSessionEnd(F fn) {
        return event(raw_->register_event_session_end, adapt_event(std::move(fn)));
    }

    // RPC: payload in, `out` is the reply.
    using RpcHandler = detail::RpcFn;
    Error RegisterRpc(const std::string& id, RpcHandler fn) {
        auto* ud = new RpcHandler(std::move(fn));
        return status(raw_->register_rpc(raw_, detail::view(id), &detail::on_rpc, ud,
                                         &detail::destroy_fn<RpcHandler>),
                      "register_rpc " + id);
    }

    using ShutdownHandler = detail::ShutdownFn;
    Error RegisterShutdown(ShutdownHandler fn) {
        auto* ud = new ShutdownHandler(std::move(fn));
        return status(raw_->register_shutdown(raw_, &detail::on_shutdown, ud,
                                              &detail::destroy_fn<ShutdownHandler>),
                      "register_shutdown");
    }

    // State handoff across a hot reload (ABI 1.1): `save` runs on the generation being
    // retired, after its last call returned; `load` runs on its replacement, which is already
    // serving, so it must merge (see sdk.h). Either may be empty.
    using HandoffSave = detail::HandoffSaveFn;
    using HandoffLoad = detail::HandoffLoadFn;
    Error RegisterHandoff(HandoffSave save, HandoffLoad load) {
        if (!NK_HAS_FIELD(raw_, nk_initializer, register_handoff))
            return Error(NK_UNIMPLEMENTED, "register_handoff: the host predates ABI 1.1");
        auto* ud = new detail::HandoffFns{std::move(save), std::move(load)};
        return status(raw_->register_handoff(raw_, &detail::on_handoff_save,
                                             &detail::on_handoff_load, ud,
                                             &detail::destroy_fn<detail::HandoffFns>),
                      "register_handoff");
    }

    // Plugin HTTP route (ABI 1.1), as Nakama's RegisterHttp: served at "/plugins" + path.
    // `methods`: comma-separated GET, POST, PUT, PATCH, DELETE ("" = GET); `auth`: an
    // nk_http_auth (NK_HTTP_AUTH_NONE, _SERVER_KEY, _HTTP_KEY, _SESSION). See sdk.h.
    using HttpHandler = detail::HttpFn;
    Error RegisterHttp(const std::string& path, const std::string& methods, nk_http_auth auth,
                       HttpHandler fn) {
        if (!NK_HAS_FIELD(raw_, nk_initializer, register_http))
            return Error(NK_UNIMPLEMENTED, "register_http: the host predates ABI 1.1");
        auto* ud = new HttpHandler(std::move(fn));
        return status(raw_->register_http(raw_, detail::view(path), detail::view(methods),
                                          static_cast<int32_t>(auth), &detail::on_http, ud,
                                          &detail::destroy_fn<HttpHandler>),
                      "register_http " + path);
    }

    // Generic typed hooks (any api id the host knows).
    template <class Req>
    Error RegisterBefore(const char* api_id, typename detail::Before<Req>::Fn fn) {
        using Fn = typename detail::Before<Req>::Fn;
        auto* ud = new Fn(std::move(fn));
        return status(raw_->register_before(raw_, nk_str_c(api_id), &detail::Before<Req>::call, ud,
                                            &detail::destroy_fn<Fn>),
                      std::string("register_before ") + api_id);
    }
    template <class Out, class In>
    Error RegisterAfter(const char* api_id, typename detail::After<Out, In>::Fn fn) {
        using Fn = typename detail::After<Out, In>::Fn;
        auto* ud = new Fn(std::move(fn));
        return status(raw_->register_after(raw_, nk_str_c(api_id), &detail::After<Out, In>::call,
                                           ud, &detail::destroy_fn<Fn>),
                      std::string("register_after ") + api_id);
    }

    // Nakama's named hooks. Before-hooks may modify the request in place or
    // return an error to reject it.
    template <class F>
    Error RegisterBeforeAuthenticateDevice(F fn) {
        return RegisterBefore<AuthenticateDeviceRequest>(NK_API_AUTHENTICATE_DEVICE, std::move(fn));
    }
    template <class F>
    Error RegisterBeforeAuthenticateCustom(F fn) {
        return RegisterBefore<AuthenticateCustomRequest>(NK_API_AUTHENTICATE_CUSTOM, std::move(fn));
    }
    template <class F>
    Error RegisterBeforeAuthenticateEmail(F fn) {
        return RegisterBefore<AuthenticateEmailRequest>(NK_API_AUTHENTICATE_EMAIL, std::move(fn));
    }
    template <class F>
    Error RegisterBeforeSessionRefresh(F fn) {
        return RegisterBefore<SessionRefreshRequest>(NK_API_SESSION_REFRESH, std::move(fn));
    }
    template <class F>
    Error RegisterBeforeSessionLogout(F fn) {
        return RegisterBefore<SessionLogoutRequest>(NK_API_SESSION_LOGOUT, std::move(fn));
    }
    template <class F>
    Error RegisterBeforeUpdateAccount(F fn) {
        return RegisterBefore<UpdateAccountRequest>(NK_API_UPDATE_ACCOUNT, std::move(fn));
    }
    template <class F>
    Error RegisterBeforeEvent(F fn) {
        return RegisterBefore<Event>(NK_API_EVENT, std::move(fn));
    }
    // GetAccount and DeleteAccount have no request body: fn(ctx, logger, nk).
    template <class F>
    Error RegisterBeforeGetAccount(F fn) {
        return RegisterBefore<Empty>(NK_API_GET_ACCOUNT, no_body_before(std::move(fn)));
    }
    template <class F>
    Error RegisterBeforeDeleteAccount(F fn) {
        return RegisterBefore<Empty>(NK_API_DELETE_ACCOUNT, no_body_before(std::move(fn)));
    }

    // After-hooks, with Nakama's arguments: (out, in) when both exist.
    using AfterAuthDevice = std::function<Error(const Context&, Logger&, Module&, const Session&,
                                                const AuthenticateDeviceRequest&)>;
    Error RegisterAfterAuthenticateDevice(AfterAuthDevice fn) {
        return RegisterAfter<Session, AuthenticateDeviceRequest>(NK_API_AUTHENTICATE_DEVICE,
                                                                 std::move(fn));
    }
    using AfterAuthCustom = std::function<Error(const Context&, Logger&, Module&, const Session&,
                                                const AuthenticateCustomRequest&)>;
    Error RegisterAfterAuthenticateCustom(AfterAuthCustom fn) {
        return RegisterAfter<Session, AuthenticateCustomRequest>(NK_API_AUTHENTICATE_CUSTOM,
                                                                 std::move(fn));
    }
    using AfterAuthEmail = std::function<Error(const Context&, Logger&, Module&, const Session&,
                                               const AuthenticateEmailRequest&)>;
    Error RegisterAfterAuthenticateEmail(AfterAuthEmail fn) {
        return RegisterAfter<Session, AuthenticateEmailRequest>(NK_API_AUTHENTICATE_EMAIL,
                                                                std::move(fn));
    }
    using AfterSessionRefreshFn = std::function<Error(
        const Context&, Logger&, Module&, const Session&, const SessionRefreshRequest&)>;
    Error RegisterAfterSessionRefresh(AfterSessionRefreshFn fn) {
        return RegisterAfter<Session, SessionRefreshRequest>(NK_API_SESSION_REFRESH, std::move(fn));
    }
    // In-only hooks: fn(ctx, logger, nk, in).
    Error RegisterAfterSessionLogout(
        std::function<Error(const Context&, Logger&, Module&, const SessionLogoutRequest&)> fn) {
        return in_only<SessionLogoutRequest>(NK_API_SESSION_LOGOUT, std::move(fn));
    }
    Error RegisterAfterUpdateAccount(
        std::function<Error(const Context&, Logger&, Module&, const UpdateAccountRequest&)> fn) {
        return in_only<UpdateAccountRequest>(NK_API_UPDATE_ACCOUNT, std::move(fn));
    }
    Error RegisterAfterEvent(
        std::function<Error(const Context&, Logger&, Module&, const Event&)> fn) {
        return in_only<Event>(NK_API_EVENT, std::move(fn));
    }
    // GetAccount: fn(ctx, logger, nk, out).
    Error RegisterAfterGetAccount(
        std::function<Error(const Context&, Logger&, Module&, const Account&)> fn) {
        return RegisterAfter<Account, Empty>(
            NK_API_GET_ACCOUNT,
            [fn = std::move(fn)](const Context& c, Logger& l, Module& m, const Account& out,
                                 const Empty&) { return fn(c, l, m, out); });
    }
    // DeleteAccount: fn(ctx, logger, nk).
    Error RegisterAfterDeleteAccount(std::function<Error(const Context&, Logger&, Module&)> fn) {
        return RegisterAfter<Empty, Empty>(
            NK_API_DELETE_ACCOUNT,
            [fn = std::move(fn)](const Context& c, Logger& l, Module& m, const Empty&,
                                 const Empty&) { return fn(c, l, m); });
    }

    const nk_initializer* raw() const { return raw_; }

  private:
    using RegisterEventFn = nk_status (*)(const nk_initializer*, nk_on_event_fn, void*,
                                          nk_on_destroy_fn);
    Error event(RegisterEventFn reg, EventHandler fn) {
        auto* ud = new detail::EventFn(std::move(fn));
        return status(reg(raw_, &detail::on_event, ud, &detail::destroy_fn<detail::EventFn>),
                      "register_event");
    }
    template <class F>
    static EventHandler adapt_event(F fn) {
        if constexpr (std::is_invocable_v<F&, const Context&, Logger&, Module&, const Event&>) {
            return EventHandler(std::move(fn));
        } else {
            static_assert(std::is_invocable_v<F&, const Context&, Logger&, const Event&>,
                          "event handler: void(ctx, logger, evt) or void(ctx, logger, nk, evt)");
            return [fn = std::move(fn)](const Context& c, Logger& l, Module&, const Event& e) {
                fn(c, l, e);
            };
        }
    }
    template <class In, class F>
    Error in_only(const char* api_id, F fn) {
        return RegisterAfter<Empty, In>(
            api_id, [fn = std::move(fn)](const Context& c, Logger& l, Module& m, const Empty&,
                                         const In& in) { return fn(c, l, m, in); });
    }
    template <class F>
    static typename detail::Before<Empty>::Fn no_body_before(F fn) {
        return [fn = std::move(fn)](const Context& c, Logger& l, Module& m, Empty&) {
            return fn(c, l, m);
        };
    }
    Error status(nk_status st, const std::string& what) const {
        // On refusal the host has already destroyed user_data. ABI 1.2: the host says why.
        if (st == NK_OK)
            return Error();
        std::string reason;
        if (NK_HAS_FIELD(raw_, nk_initializer, last_error) && raw_->last_error != nullptr) {
            nk_sink sink = detail::string_sink(reason);
            raw_->last_error(raw_, &sink);
        }
        return Error(st, reason.empty() ? what + " refused by the host"
                                        : what + " refused by the host: " + reason);
    }
    const nk_initializer* raw_;
};

namespace detail {
using InitFn = Error (*)(const Context&, Logger&, Module&, Initializer&);
// What InitModule's body receives. The macro keeps them in a static of the plugin's own
// translation unit (internal linkage: every plugin, and every generation of it, a separate
// dlopen of a separate copy, has its own), not on InitModule's stack, so a handler that
// captures ctx, logger, nk or initializer by reference ([&]) stays valid while the module is
// loaded. ctx keeps InitModule's context (mode "run_once"); handlers get their own context as
// an argument. The initializer refuses registrations once InitModule has returned.
struct InitArgs {
    Context ctx;
    Logger logger;
    Module nk;
    Initializer initializer;
};
inline nk_status run_init(const nk_context* ctx, const nk_logger* logger, const nk_module* nk,
                          const nk_initializer* initializer, InitFn fn,
                          std::optional<InitArgs>& args) {
    std::string reason;
    nk_sink sink = string_sink(reason);
    nk_status st = guarded(logger, nullptr, &sink, "InitModule", [&] {
        args.emplace(InitArgs{Context::FromC(ctx), Logger(logger), Module(nk), Initializer(initializer)});
        return fn(args->ctx, args->logger, args->nk, args->initializer);
    });
    if (st != NK_OK && NK_HAS_FIELD(initializer, nk_initializer, set_init_error) &&
        initializer->set_init_error != nullptr)
        initializer->set_init_error(initializer, view(reason));
    return st;
}
}  // namespace detail

}  // namespace nk

// Defines the plugin's exports (the ABI info symbol and InitModule) around a
// C++ body that returns nk::Error:
//   NK_INIT_MODULE(ctx, logger, nk, initializer) { ...; return {}; }
#define NK_INIT_MODULE(ctx, logger, nk, initializer)                                               \
    static ::nk::Error nk_init_module_body(const ::nk::Context&, ::nk::Logger&, ::nk::Module&,     \
                                           ::nk::Initializer&);                                    \
    static std::optional<::nk::detail::InitArgs> nk_init_module_args;                              \
    NK_PLUGIN_ABI()                                                                                \
    extern "C" NK_EXPORT nk_status InitModule(const nk_context* c_ctx, const nk_logger* c_logger,  \
                                              const nk_module* c_nk,                               \
                                              const nk_initializer* c_initializer) {               \
        return ::nk::detail::run_init(c_ctx, c_logger, c_nk, c_initializer, &nk_init_module_body,  \
                                      nk_init_module_args);                                        \
    }                                                                                              \
    static ::nk::Error nk_init_module_body(                                                        \
        [[maybe_unused]] const ::nk::Context& ctx, [[maybe_unused]] ::nk::Logger& logger,          \
        [[maybe_unused]] ::nk::Module& nk, [[maybe_unused]] ::nk::Initializer& initializer)
