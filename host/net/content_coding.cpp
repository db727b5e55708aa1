#include "net/content_coding.hpp"

#include "net/text.hpp"

#include <zlib.h>

#include <algorithm>
#include <new>
#include <stdexcept>

namespace nk::net {

namespace {

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

// The q-value of one Accept-Encoding element's parameters (";q=0.5"); 1 when absent, 0 when
// malformed (an element a client garbled is not taken as consent).
double q_value(std::string_view params) {
    while (!params.empty()) {
        std::size_t semi = params.find(';');
        std::string_view p = trim(params.substr(0, semi));
        params = semi == std::string_view::npos ? std::string_view() : params.substr(semi + 1);
        if (p.size() < 2 || (p[0] != 'q' && p[0] != 'Q')) continue;
        p = trim(p.substr(1));
        if (p.empty() || p[0] != '=') continue;
        p = trim(p.substr(1));
        // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
        if (p.empty() || (p[0] != '0' && p[0] != '1')) return 0;
        double q = p[0] - '0';
        double scale = 0.1;
        if (p.size() > 1) {
            if (p[1] != '.' || p.size() > 5) return 0;
            for (char c : p.substr(2)) {
                if (c < '0' || c > '9') return 0;
                q += (c - '0') * scale;
                scale /= 10;
            }
        }
        return q > 1 ? 0 : q;
    }
    return 1;
}

}  // namespace

bool accepts_gzip(std::string_view accept_encoding) {
    double gzip_q = -1;  // -1: not listed
    double star_q = -1;
    while (!accept_encoding.empty()) {
        std::size_t comma = accept_encoding.find(',');
        std::string_view element = accept_encoding.substr(0, comma);
        accept_encoding = comma == std::string_view::npos ? std::string_view()
                                                          : accept_encoding.substr(comma + 1);
        std::size_t semi = element.find(';');
        std::string_view coding = trim(element.substr(0, semi));
        std::string_view params =
            semi == std::string_view::npos ? std::string_view() : element.substr(semi + 1);
        if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) {
            gzip_q = std::max(gzip_q, q_value(params));
        } else if (coding == "*") {
            star_q = std::max(star_q, q_value(params));
        }
    }
    if (gzip_q >= 0)
        return gzip_q > 0;
    return star_q > 0;
}

std::string gzip_encode(std::string_view in) {
    z_stream zs{};
    // 15 + 16: a gzip header and trailer around the deflate stream; 8: zlib's default memLevel.
    if (deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        throw std::bad_alloc();
    }
    std::string out;
    out.resize(deflateBound(&zs, static_cast<uLong>(in.size())));
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    zs.avail_in = static_cast<uInt>(in.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    // deflateBound() is enough room for one Z_FINISH call.
    const int rc = deflate(&zs, Z_FINISH);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    if (rc != Z_STREAM_END)
        throw std::runtime_error("gzip: deflate did not finish");
    return out;
}

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
