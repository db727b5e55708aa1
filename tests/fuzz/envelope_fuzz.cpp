// The realtime socket's envelope decoder: any text frame.
#include <cstdint>
#include <string_view>

#include "core/json_read.hpp"
#include "realtime/envelope.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    nk::JsonLimits json;
    (void)nk::realtime::parse_envelope(
        std::string_view(reinterpret_cast<const char*>(data), size), json);
    return 0;
}
