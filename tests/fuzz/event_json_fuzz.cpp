// The /v2/event body decoder (events/json): any bytes, under the default limits.
#include <cstdint>
#include <string>

#include "core/json_read.hpp"
#include "events/json.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string body(reinterpret_cast<const char*>(data), size);
    nk::events::Options limits;
    nk::JsonLimits json;
    nk::events::Event event;
    if (nk::events::decode_event_json(body, limits, json, event))
        (void)nk::events::encode_event_json(event);  // what was accepted re-encodes
    (void)nk::events::parse_rfc3339(std::string_view(reinterpret_cast<const char*>(data), size));
    return 0;
}
