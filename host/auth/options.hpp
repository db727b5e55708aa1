// Options of sessions and keys (config keys session.*, socket.server_key, runtime.http_key).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nk::auth {

struct Options {
    std::string server_key = "defaultkey";                           // socket.server_key
    std::string http_key = "defaulthttpkey";                         // runtime.http_key
    std::string encryption_key = "defaultencryptionkey";             // session.encryption_key
    std::string refresh_encryption_key = "defaultrefreshencryptionkey";  // session.refresh_encryption_key
    std::int64_t token_expiry_sec = 60;                              // session.token_expiry_sec
    std::int64_t refresh_token_expiry_sec = 3600;                    // session.refresh_token_expiry_sec
    bool single_session = false;                                     // session.single_session
    // session.max_vars_bytes: largest session vars, as the JSON object the token carries. The
    // config clamps it so that a token with such vars still fits in socket.max_header_size_bytes.
    std::size_t max_vars_bytes = 2048;
};

}  // namespace nk::auth
