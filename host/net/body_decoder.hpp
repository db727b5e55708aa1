// Request body decompression (Content-Encoding gzip / deflate) with zlib.
// Internal to net. The decompressed size is bounded by `limit` so a small
// compressed body cannot expand without bound (zip bomb -> too_large).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace nk::net {

enum class DecodeResult { ok, too_large, corrupt, unsupported };

// Replaces `body` by its decoded form. `encoding` is the Content-Encoding
// header value ("", "identity", "gzip", "x-gzip", "deflate"; case-insensitive).
DecodeResult decode_body(std::string_view encoding, std::string& body, std::size_t limit);

}  // namespace nk::net
