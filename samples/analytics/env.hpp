// env.hpp — reading the plugin's runtime.env keys (ctx.env in InitModule).
#pragma once

#include <cstdlib>
#include <map>
#include <string>

namespace analytics {

// Sets `out` from env[key] when the key is present and non-empty; false with `error` set when
// the value is not an integer from `lo` to `hi` (InitModule then refuses to load, naming the key).
inline bool EnvInteger(const std::map<std::string, std::string>& env, const char* key,
                       long long lo, long long hi, long long& out, std::string& error) {
    auto it = env.find(key);
    if (it == env.end() || it->second.empty())
        return true;  // the default stays
    char* end = nullptr;
    const long long v = std::strtoll(it->second.c_str(), &end, 10);
    if (*end != '\0' || v < lo || v > hi) {
        error = std::string(key) + " must be an integer from " + std::to_string(lo) + " to " +
                std::to_string(hi) + ", got \"" + it->second + "\"";
        return false;
    }
    out = v;
    return true;
}

}  // namespace analytics
