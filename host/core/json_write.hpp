// Hand-written JSON output shared across subsystems (session token claims, request bodies handed
// to hooks), next to append_json_string in core/status.hpp. Pure functions, thread-safe.
#pragma once

#include <map>
#include <string>

#include "core/status.hpp"

namespace nk {

// Appends `members` as a JSON object of strings, {"k":"v",...} in key order; {} when empty.
inline void append_json_string_map(std::string& out,
                                   const std::map<std::string, std::string>& members) {
    out += '{';
    bool first = true;
    for (const auto& [k, v] : members) {
        if (!first)
            out += ',';
        first = false;
        append_json_string(out, k);
        out += ':';
        append_json_string(out, v);
    }
    out += '}';
}

}  // namespace nk
