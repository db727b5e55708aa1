// Reading JSON that came from outside (clients, plugins, tokens): every parse in the host goes
// through parse_json() or json_status(), which add the host's error vocabulary and counting to
// nk/json_read.hpp (the depth-limited, iterative, UTF-8-validating parse shared with sdk.hpp).
//
// Errors are 400 code 3 (Status::invalid_argument): "proto: syntax error (offset N): <reason>"
// for malformed JSON or invalid UTF-8, and a message naming socket.max_json_depth for a document
// nested deeper than the limit. Thread-safe as long as on_too_deep is.
#pragma once

#include <rapidjson/document.h>

#include <functional>
#include <string_view>
#include <utility>

#include "core/status.hpp"
#include "nk/json_read.hpp"

namespace nk {

struct JsonLimits {
    unsigned max_depth = json_read::kDefaultMaxDepth;  // socket.max_json_depth
    std::function<void()> on_too_deep;  // counts refusals for depth (a metric); may be empty
};

// Limits whose refusals count in `registry`'s json_depth_exceeded counter (none when null).
// `Registry` is metrics::Registry; a template so that core does not depend on metrics.
template <class Registry>
JsonLimits counted_json_limits(unsigned max_depth, Registry* registry) {
    JsonLimits limits{max_depth, {}};
    if (registry != nullptr) {
        auto& counter = registry->counter(
            "json_depth_exceeded",
            "JSON documents refused for nesting deeper than socket.max_json_depth.");
        limits.on_too_deep = [&counter] { counter.inc(); };
    }
    return limits;
}

// Parses `text` into `doc` within `limits`. On error `doc` keeps its previous value.
Status parse_json(std::string_view text, rapidjson::Document& doc, const JsonLimits& limits);

// The Status of a finished parse (OK when it succeeded); counts a refusal for depth.
Status json_status(const json_read::Result& result, const JsonLimits& limits);

}  // namespace nk
