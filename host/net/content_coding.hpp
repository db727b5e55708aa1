// HTTP content codings with zlib. Internal to net.
// - Request bodies: decompression (Content-Encoding gzip / deflate). The
//   decompressed size is bounded by `limit` so a small compressed body cannot
//   expand without bound (zip bomb -> too_large).
// - Responses: gzip when the client's Accept-Encoding allows it (Nakama
//   compresses responses per Accept-Encoding).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nk::net {

enum class DecodeResult { ok, too_large, corrupt, unsupported };

// Replaces `body` by its decoded form. `encoding` is the Content-Encoding
// header value ("", "identity", "gzip", "x-gzip", "deflate"; case-insensitive).
DecodeResult decode_body(std::string_view encoding, std::string& body, std::size_t limit);

// Whether an Accept-Encoding header value allows a gzip response (RFC 9110
// §12.5.3): "gzip" or "x-gzip" with a q-value above 0, or "*" with one when
// gzip is not listed. Tokens are case-insensitive; an empty value allows
// nothing.
bool accepts_gzip(std::string_view accept_encoding);

// `in` as one gzip member (RFC 1952) at zlib's default level.
std::string gzip_encode(std::string_view in);

}  // namespace nk::net
