// nkhost configuration: one table of keys fills every subsystem's Options.
//
// Sources, later wins: files given with --config FILE (repeatable, in order; INI, or Nakama
// YAML when the name ends in .yml/.yaml), then command-line flags (--key value, --key=value).
// runtime.env KEY=VALUE entries merge per KEY across all sources.
//
// Errors: parse() never exits and never throws for bad input; it returns a ParseResult with
// exit_code 2 and one line naming the key and why. --help and --version return exit_code 0
// and their text in `output`. Thread-safety: all functions are pure (no shared state).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "auth/login_throttle.hpp"
#include "auth/options.hpp"
#include "events/options.hpp"
#include "log/options.hpp"
#include "metrics/options.hpp"
#include "net/options.hpp"
#include "realtime/options.hpp"
#include "runtime/options.hpp"
#include "store/options.hpp"

namespace nk::config {

struct Config {
    std::string name = "nakama";  // node name, 1-16 chars
    std::string data_dir;         // default "<cwd>/data" (always absolute after parse)
    unsigned shutdown_grace_sec = 30;
    // socket.max_json_depth: copied into realtime and runtime; the app hands it to api.
    unsigned max_json_depth = json_read::kDefaultMaxDepth;
    log::Options logger;
    net::Options socket;
    realtime::Options realtime;
    auth::Options session;  // also holds socket.server_key and runtime.http_key
    auth::LoginThrottleOptions login_throttle;  // session.login_* keys
    store::Options database;
    events::Options events;  // runtime.event_* keys
    runtime::Options runtime;
    metrics::Options metrics;
    // Startup warnings to log: default keys in use, unsupported Nakama YAML keys.
    std::vector<std::string> warnings;
};

struct ParseResult {
    std::optional<Config> config;  // set when the server should start
    int exit_code = 0;             // meaningful when !config: 0 for --help/--version, 2 for errors
    std::string output;            // help/version text, or the one-line error ("nkhost: ...")
};

// Parses argv (argv[0] is the program name; any subcommand must already be removed).
// Derived values: data_dir made absolute; runtime.path defaults to <data_dir>/modules;
// database.address defaults to <data_dir>/nkhost.db; runtime.data_dir = data_dir;
// runtime.node = metrics.node_name = name; realtime.max_json_depth = runtime.max_json_depth =
// max_json_depth.
ParseResult parse(int argc, const char* const* argv);

// What --help prints: every key with its default and meaning.
std::string help_text();

// The body of docs/configuration.md, generated from the same table as --help.
std::string markdown_reference();

// "nkhost <version>", the project version from CMake.
std::string version_text();

}  // namespace nk::config
