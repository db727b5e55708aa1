// nkhost logging: installs the default spdlog logger with nkhost's line format.
//
// Formats (logger.format):
//   text: 2026-11-27T18:00:00.123Z info message key=value key2="quoted value"
//   json: {"level":"info","ts":"2026-11-27T18:00:00.123Z","msg":"message","key":"value"}
// One entry per line, UTC timestamps with milliseconds. Level names: debug, info, warn, error
// (trace and critical print as "trace" and "fatal").
//
// Host code logs with spdlog::info(...) etc. and gets the same format; write() adds structured
// fields (e.g. {"module","quickstart"}), which become JSON keys or key=value pairs.
//
// Threading: init()/flush() may be called from any thread but init() should run once at
// startup before other threads log. write() and spdlog::* are thread-safe (_mt sinks).
// Errors: init() throws std::invalid_argument for a bad level/format and std::runtime_error
// when logger.file cannot be opened.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "log/options.hpp"

namespace nk::log {

using Field = std::pair<std::string, std::string>;
using Fields = std::vector<Field>;

// Installs the default logger: stdout (plus logger.file when set, appended to).
void init(const Options& options);

// Same, but the console output goes to `out` instead of stdout (tests capture it). `out` must
// outlive the logger (until the next init() or spdlog::shutdown()).
void init(const Options& options, std::ostream& out);

// Logs `msg` with structured fields through the default logger (no-op below its level).
void write(spdlog::level::level_enum level, std::string_view msg, const Fields& fields);

// Flushes every sink of the default logger. init() already flushes after every line, so this is
// only a safety net before exit.
void flush();

// "debug"|"info"|"warn"|"error" (also "trace", "fatal") -> level; nullopt otherwise.
std::optional<spdlog::level::level_enum> parse_level(std::string_view name);

// The formatter used by init(), for callers that build their own loggers/sinks.
std::unique_ptr<spdlog::formatter> make_formatter(std::string_view format);

}  // namespace nk::log
