// Nakama's Account message as JSON: what GET /v2/account answers and what plugins get from
// nk.AccountGetId. Header-only (the runtime uses it without linking the SQLite store). Pure
// functions, thread-safe.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

#include "core/status.hpp"
#include "store/account_store.hpp"

namespace nk::store {

namespace detail {

// protojson's Timestamp form for whole seconds: "2023-11-14T22:13:20Z".
inline std::string rfc3339_seconds(std::int64_t unix_seconds) {
    const std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace detail

// As protojson writes it: proto field names, fields in declaration order, zero values omitted
// (an empty lang_tag too), times as RFC 3339 in whole seconds, disable_time never shown.
inline std::string account_json(const Account& a) {
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
        field("create_time", detail::rfc3339_seconds(a.create_time));
    if (a.update_time != 0)
        field("update_time", detail::rfc3339_seconds(a.update_time));
    out += '}';
    first = false;  // the top-level object goes on after "user"
    field("wallet", a.wallet);
    field("email", a.email);
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
    field("custom_id", a.custom_id);
    if (a.verify_time != 0)
        field("verify_time", detail::rfc3339_seconds(a.verify_time));
    out += '}';
    return out;
}

}  // namespace nk::store
