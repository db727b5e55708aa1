// Small text helpers of the HTTP layer (header names and values). Internal to net.
#pragma once

#include <strings.h>

#include <string_view>

namespace nk::net {

// ASCII case-insensitive equality (header names, tokens).
inline bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

// Without leading and trailing spaces and tabs (HTTP's optional whitespace).
inline std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, surrogates or code points
// above U+10FFFF, no truncated sequence). NUL is valid.
bool valid_utf8(std::string_view s);

// Whether `headers` (name/value pairs) has a header named `name`.
template <class KeyValues>
bool has_header(const KeyValues& headers, std::string_view name) {
    for (const auto& [k, v] : headers) {
        if (iequals(k, name)) return true;
    }
    return false;
}

}  // namespace nk::net
