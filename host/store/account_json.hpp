// Nakama's Account message as JSON: what GET /v2/account answers and what plugins get from
// nk.AccountGetId. Header-only (the runtime uses it without linking the SQLite store). Pure
// functions, thread-safe.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

#include "core/json_write.hpp"
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
    std::string out;
    JsonObjectWriter top(out);
    {
        top.key("user");
        JsonObjectWriter user(out);
        user.string_if_set("id", a.id);
        user.string_if_set("username", a.username);
        user.string_if_set("display_name", a.display_name);
        user.string_if_set("avatar_url", a.avatar_url);
        user.string_if_set("lang_tag", a.lang_tag);
        user.string_if_set("location", a.location);
        user.string_if_set("timezone", a.timezone);
        user.string_if_set("metadata", a.metadata);
        if (a.create_time != 0)
            user.string("create_time", detail::rfc3339_seconds(a.create_time));
        if (a.update_time != 0)
            user.string("update_time", detail::rfc3339_seconds(a.update_time));
        user.close();
    }
    top.string_if_set("wallet", a.wallet);
    top.string_if_set("email", a.email);
    if (!a.devices.empty()) {
        top.key("devices") += '[';
        for (std::size_t i = 0; i < a.devices.size(); ++i) {
            if (i)
                out += ',';
            JsonObjectWriter device(out);
            device.string("id", a.devices[i]);
            device.close();
        }
        out += ']';
    }
    top.string_if_set("custom_id", a.custom_id);
    if (a.verify_time != 0)
        top.string("verify_time", detail::rfc3339_seconds(a.verify_time));
    top.close();
    return out;
}

}  // namespace nk::store
