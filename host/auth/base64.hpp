// Base64 codecs used by JWT (base64url, no padding) and HTTP Basic auth (standard alphabet).
//
// OpenSSL's EVP_EncodeBlock/DecodeBlock only speak the padded standard
// alphabet and accept non-canonical input, so the two variants JWT and Basic
// auth need are written here. Decoders are strict: any character outside the
// alphabet, a wrong length, or non-zero trailing bits yields nullopt. Pure functions.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nk::auth {

std::string base64url_encode(std::string_view bytes);
std::optional<std::string> base64url_decode(std::string_view text);

// Standard alphabet; padding optional on decode ("=" only at the end).
std::string base64_encode(std::string_view bytes);
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace nk::auth
