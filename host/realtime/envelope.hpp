// Realtime envelopes on a JSON socket: {"cid":"..","<kind>":{...}} text frames.
//
// parse_envelope() classifies one inbound frame; encode_*() build the frames
// the server sends. Pure functions, no state: safe on any thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/json_read.hpp"

namespace nk::realtime {

// Codes of rtapi.Error (Nakama's realtime error enum).
enum class EnvelopeError : int {
    runtime_exception = 0,
    unrecognized_payload = 1,
    missing_payload = 2,
    bad_input = 3,
};

struct Envelope {
    enum class Type {
        ping,   // "ping": answered with "pong"
        pong,   // "pong": ignored
        other,  // any other kind (named in `kind`)
        empty,  // no kind at all: "Missing message."
    };
    Type type = Type::empty;
    std::string cid;   // "" when absent
    std::string kind;  // the one member besides "cid", e.g. "channel_join"
};

// Parses a text frame. nullopt means a malformed payload: not valid UTF-8 JSON,
// nested deeper than `limits` (counted through it), not an object, "cid" not a string, a kind whose value is not an object, or
// more than one kind (protobuf's oneof). A kind whose value is null counts as
// absent, as protojson reads it.
std::optional<Envelope> parse_envelope(std::string_view text, const JsonLimits& limits);

// {"cid":"..","pong":{}}; cid omitted when empty (protojson omits empty strings).
std::string encode_pong(std::string_view cid);
// {"cid":"..","error":{"code":N,"message":".."}}
std::string encode_error(std::string_view cid, EnvelopeError code, std::string_view message);

}  // namespace nk::realtime
