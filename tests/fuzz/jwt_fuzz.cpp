// The session and refresh token verifier: any token text.
#include <cstdint>
#include <string_view>

#include "auth/tokens.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static nk::auth::Tokens tokens{nk::auth::Options{}};
    const std::string_view token(reinterpret_cast<const char*>(data), size);
    (void)tokens.verify_session(token);
    (void)tokens.verify_refresh(token);
    return 0;
}
