// Options of the plugin runtime (config keys runtime.*, except the event_* ones).
#pragma once

#include <map>
#include <string>

#include "nk/json_read.hpp"

namespace nk::runtime {

struct Options {
    std::string path;                         // runtime.path ("" = <data_dir>/modules)
    std::map<std::string, std::string> env;   // runtime.env KEY=VALUE (repeatable)
    bool skip_failed_modules = false;         // runtime.skip_failed_modules
    bool hot_reload = false;                  // runtime.hot_reload (inotify watcher)
    int hot_reload_debounce_ms = 200;         // runtime.hot_reload_debounce_ms: quiet time per file
    int hot_reload_grace_ms = 5000;           // runtime.hot_reload_grace_ms: a retired generation's shutdown handlers
    int stuck_call_ms = 5000;                 // runtime.stuck_call_ms: report plugin calls running longer (0 = off)
    std::string data_dir;                     // copied from data_dir: private copies of loaded modules live under it
    std::string node;                         // copied from name
    unsigned max_json_depth = json_read::kDefaultMaxDepth;  // copied from socket.max_json_depth
};

}  // namespace nk::runtime
