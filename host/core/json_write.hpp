// Hand-written JSON output shared across subsystems (session token claims, request bodies handed
// to hooks), next to append_json_string in core/status.hpp. Pure functions, thread-safe.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/status.hpp"

namespace nk {

// Writes one JSON object into `out`, member by member: '{' at construction, a comma between
// members, '}' at close(). Names and string values are escaped (append_json_string).
class JsonObjectWriter {
  public:
    explicit JsonObjectWriter(std::string& out) : out_(out) { out_ += '{'; }

    // Starts the member `name`: writes `"name":` and returns `out` for the caller to append
    // the value.
    std::string& key(std::string_view name) {
        if (!first_)
            out_ += ',';
        first_ = false;
        append_json_string(out_, name);
        out_ += ':';
        return out_;
    }
    // "name":"value".
    void string(std::string_view name, std::string_view value) {
        append_json_string(key(name), value);
    }
    // As string(), left out when `value` is empty (protobuf's JSON leaves out empty strings).
    void string_if_set(std::string_view name, std::string_view value) {
        if (!value.empty())
            string(name, value);
    }
    void close() { out_ += '}'; }

  private:
    std::string& out_;
    bool first_ = true;
};

// Appends `members` as a JSON object of strings, {"k":"v",...} in key order; {} when empty.
inline void append_json_string_map(std::string& out,
                                   const std::map<std::string, std::string>& members) {
    JsonObjectWriter o(out);
    for (const auto& [k, v] : members)
        o.string(k, v);
    o.close();
}

}  // namespace nk
