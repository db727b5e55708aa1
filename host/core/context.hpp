// RequestContext: who and where a call comes from.
//
// Filled by the API layer (from the JWT and the connection) and by realtime
// (session fields); carried by events and passed to plugin hooks, where the
// runtime bridge adds env, node and version. A plain value: copy freely.
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace nk {

struct RequestContext {
    std::string execution_mode;  // "event", "before", "after", "rpc", "run_once", "shutdown", ...
    std::string user_id;         // empty when no user is known
    std::string username;
    std::map<std::string, std::string> vars;
    std::int64_t session_expiry = 0;  // unix seconds; 0 when unknown
    std::string session_id;           // realtime sessions only
    std::string lang;                 // realtime sessions only
    std::string client_ip;
    std::string client_port;
};

}  // namespace nk
