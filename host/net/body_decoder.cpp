#include "net/body_decoder.hpp"

#include <strings.h>
#include <zlib.h>

namespace nk::net {

namespace {

bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && ::strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
}

// window_bits: 15 + 16 gzip, 15 zlib, -15 raw deflate.
DecodeResult inflate_into(const std::string& in, std::string& out, int window_bits,
                          std::size_t limit) {
    z_stream zs{};
    if (inflateInit2(&zs, window_bits) != Z_OK) return DecodeResult::corrupt;
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    out.clear();
    char chunk[16384];
    DecodeResult result = DecodeResult::corrupt;
    for (;;) {
        zs.next_out = reinterpret_cast<Bytef*>(chunk);
        zs.avail_out = sizeof chunk;
        int rc = inflate(&zs, Z_NO_FLUSH);
        std::size_t produced = sizeof chunk - zs.avail_out;
        if (out.size() + produced > limit) {
            result = DecodeResult::too_large;
            break;
        }
        out.append(chunk, produced);
        if (rc == Z_STREAM_END) {
            // Trailing bytes after the stream (or a second gzip member) are
            // not accepted: a body is one compressed stream.
            result = zs.avail_in == 0 ? DecodeResult::ok : DecodeResult::corrupt;
            break;
        }
        if (rc != Z_OK) break;  // Z_DATA_ERROR, Z_BUF_ERROR (truncated), Z_MEM_ERROR
        if (produced == 0 && zs.avail_in == 0) break;  // truncated input
    }
    inflateEnd(&zs);
    return result;
}

}  // namespace

DecodeResult decode_body(std::string_view encoding, std::string& body, std::size_t limit) {
    encoding = trim(encoding);
    if (encoding.empty() || iequals(encoding, "identity")) return DecodeResult::ok;
    std::string out;
    DecodeResult r;
    if (iequals(encoding, "gzip") || iequals(encoding, "x-gzip")) {
        r = inflate_into(body, out, 15 + 16, limit);
    } else if (iequals(encoding, "deflate")) {
        // RFC 9110 "deflate" is the zlib format, but some clients send raw
        // deflate; accept both.
        r = inflate_into(body, out, 15, limit);
        if (r == DecodeResult::corrupt) r = inflate_into(body, out, -15, limit);
    } else {
        return DecodeResult::unsupported;
    }
    if (r == DecodeResult::ok) body = std::move(out);
    return r;
}

}  // namespace nk::net
