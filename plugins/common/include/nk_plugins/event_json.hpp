// The JSON form of an event shared by the first-party plugins: event_archive writes it as one
// line of its file, jetstream publishes it as a message's payload. One object, no newline:
//
//   {"id":"0193…","name":"level_up","properties":{"level":"3"},"external":true,
//    "timestamp":"2026-12-04T21:10:45Z","user_id":"…","username":"alice","session_id":null,
//    "node":"nakama","received_at":"2026-12-04T21:10:45.123Z"}
//
// Always valid JSON: a string that is not UTF-8 (event properties from plugins are not checked by
// the host) is written with U+FFFD in place of its invalid bytes. Thread-safe (no state).
// Header-only; each plugin compiles its own copy (hidden symbols, no helper library to ship).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>
#include <string_view>

#include <nk/sdk.hpp>

namespace nk_plugins::event_json {

// `s` with every byte sequence that is not valid UTF-8 replaced by U+FFFD.
inline std::string valid_utf8(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    std::size_t i = 0;
    while (i < s.size()) {
        const unsigned char c = p[i];
        std::size_t more = c < 0x80             ? 0
                           : (c & 0xE0) == 0xC0 ? 1
                           : (c & 0xF0) == 0xE0 ? 2
                           : (c & 0xF8) == 0xF0 ? 3
                                                : 4;
        std::uint32_t cp = more == 0   ? c
                           : more == 1 ? (c & 0x1F)
                           : more == 2 ? (c & 0x0F)
                                       : (c & 0x07);
        bool ok = more < 4 && s.size() - i > more;
        for (std::size_t k = 1; ok && k <= more; ++k) {
            ok = (p[i + k] & 0xC0) == 0x80;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        constexpr std::uint32_t smallest[] = {0, 0x80, 0x800, 0x10000};
        ok = ok && cp >= smallest[more] && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF);
        if (ok) {
            out.append(s.data() + i, more + 1);
            i += more + 1;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

// "2026-12-04T21:10:45.123Z": RFC 3339, UTC, always milliseconds.
inline std::string rfc3339_millis(std::chrono::system_clock::time_point t) {
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    long millis = static_cast<long>(ms % 1000);
    if (millis < 0) {
        millis += 1000;
        secs -= 1;
    }
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[80];  // room for any int the compiler cannot rule out
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
    return buf;
}

namespace detail {

using JsonWriter =
    rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                      rapidjson::CrtAllocator, rapidjson::kWriteValidateEncodingFlag>;

// Writes `s`; with `lossy`, invalid UTF-8 becomes U+FFFD. False on invalid UTF-8 otherwise.
inline bool write_string(JsonWriter& w, const std::string& s, bool lossy) {
    if (!lossy)
        return w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
    const std::string clean = valid_utf8(s);
    return w.String(clean.data(), static_cast<rapidjson::SizeType>(clean.size()));
}
// Writes `s`, or null when empty (a context key that is not set).
inline bool write_string_or_null(JsonWriter& w, const std::string& s, bool lossy) {
    return s.empty() ? w.Null() : write_string(w, s, lossy);
}

inline bool write_event(JsonWriter& w, const nk::Context& ctx, const nk::Event& evt, bool lossy) {
    bool ok = w.StartObject();
    ok = ok && w.Key("id") && write_string(w, evt.id, lossy);
    ok = ok && w.Key("name") && write_string(w, evt.name, lossy);
    ok = ok && w.Key("properties") && w.StartObject();
    for (const auto& [key, value] : evt.properties)
        ok = ok && write_string(w, key, lossy) && write_string(w, value, lossy);
    ok = ok && w.EndObject();
    ok = ok && w.Key("external") && w.Bool(evt.external);
    ok = ok && w.Key("timestamp");
    if (evt.has_timestamp) {
        const std::string ts = nk::json::format_rfc3339(evt.timestamp_seconds, evt.timestamp_nanos);
        ok = ok && w.String(ts.data(), static_cast<rapidjson::SizeType>(ts.size()));
    } else {
        ok = ok && w.Null();
    }
    ok = ok && w.Key("user_id") && write_string_or_null(w, ctx.user_id, lossy);
    ok = ok && w.Key("username") && write_string_or_null(w, ctx.username, lossy);
    ok = ok && w.Key("session_id") && write_string_or_null(w, ctx.session_id, lossy);
    ok = ok && w.Key("node") && write_string_or_null(w, ctx.node, lossy);
    const std::string received = rfc3339_millis(evt.received_at);
    ok = ok && w.Key("received_at") &&
         w.String(received.data(), static_cast<rapidjson::SizeType>(received.size()));
    return ok && w.EndObject();
}

}  // namespace detail

// The event as one JSON object, without a trailing newline.
inline std::string format(const nk::Context& ctx, const nk::Event& evt) {
    rapidjson::StringBuffer buffer;
    {
        detail::JsonWriter w(buffer);
        if (!detail::write_event(w, ctx, evt, false)) {  // rare: a string that is not UTF-8
            buffer.Clear();
            detail::JsonWriter again(buffer);
            detail::write_event(again, ctx, evt, true);
        }
    }
    return std::string(buffer.GetString(), buffer.GetSize());
}

}  // namespace nk_plugins::event_json
