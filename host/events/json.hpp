// Event <-> JSON, in the shape of Nakama's api.Event as the REST gateway speaks it:
//   {"name":"...","properties":{"k":"v"},"timestamp":"2023-11-14T22:13:20Z","external":true}
//
// Decoding follows protojson with DiscardUnknown: unknown members are ignored (any value), an
// empty body is an empty event, null leaves a field unset, a member of the wrong JSON type, a
// non-string property value, a malformed timestamp, invalid UTF-8, duplicate members or
// malformed JSON or nesting deeper than the JsonLimits (skipped values included) give Status
// code 3 (invalid argument). The limits of Options
// (max_properties, max_name_bytes, max_key_bytes, max_value_bytes) are enforced while
// decoding, each with a message naming the limit. Pure functions, thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/json_read.hpp"
#include "core/status.hpp"
#include "events/event.hpp"
#include "events/options.hpp"

namespace nk::events {

// Decodes `body` into name/properties/timestamp/external of `out` (other members untouched).
// `body` is parsed in place (its bytes are clobbered) to spare a copy of every string.
Status decode_event_json(std::string& body, const Options& limits, const JsonLimits& json,
                         Event& out);

// The same JSON for hooks and tools (fields at their default omitted, like protojson).
std::string encode_event_json(const Event& event);

// RFC 3339 ("2023-11-14T22:13:20.5Z", "...+02:00") within years 0001..9999, as protobuf's
// Timestamp JSON mapping accepts it. nullopt when malformed or out of range.
std::optional<Timestamp> parse_rfc3339(std::string_view text);
// UTC, "Z" suffix, fraction of 0, 3, 6 or 9 digits (protojson's format).
std::string format_rfc3339(const Timestamp& ts);

}  // namespace nk::events
