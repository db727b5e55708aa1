// Accept-Encoding parsing and request body decoding (gzip, deflate) under a size limit.
#include <cstdint>
#include <string>
#include <string_view>

#include "net/content_coding.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    (void)nk::net::accepts_gzip(in);
    // First byte picks the coding, the rest is the body.
    if (size == 0)
        return 0;
    static constexpr std::string_view codings[] = {"gzip", "deflate", "x-gzip", "identity", "br"};
    std::string body(in.substr(1));
    (void)nk::net::decode_body(codings[data[0] % 5], body, 1 << 20);
    return 0;
}
