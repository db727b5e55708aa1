#include "store/password.hpp"

#include <crypt.h>

#include <cstring>
#include <memory>

namespace nk::store {
namespace {

bool constant_time_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size())
        return false;
    volatile unsigned char diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        diff = static_cast<unsigned char>(
            diff | (static_cast<unsigned char>(a[i]) ^ static_cast<unsigned char>(b[i])));
    }
    return diff == 0;
}

// crypt() takes a C string: a password with an embedded NUL would be cut there, and bcrypt
// ignores every byte after the 72nd. Such passwords are refused rather than silently shortened.
bool usable(std::string_view password) {
    return password.size() <= kMaxPasswordBytes && password.find('\0') == std::string_view::npos;
}

}  // namespace

Status check_password(std::string_view password) {
    if (password.size() > kMaxPasswordBytes)
        return Status::invalid_argument(kPasswordTooLong);
    if (password.find('\0') != std::string_view::npos)
        return Status::invalid_argument(kPasswordNul);
    return Status::ok();
}

std::optional<std::string> bcrypt_hash(std::string_view password, int cost) {
    if (!usable(password))
        return std::nullopt;
    char setting[CRYPT_GENSALT_OUTPUT_SIZE];
    if (crypt_gensalt_rn("$2b$", static_cast<unsigned long>(cost), nullptr, 0, setting,
                         sizeof setting) == nullptr) {
        return std::nullopt;
    }
    auto data = std::make_unique<crypt_data>();  // ~32 KiB: keep it off the stack
    const std::string phrase(password);
    const char* out = crypt_rn(phrase.c_str(), setting, data.get(), sizeof(crypt_data));
    if (out == nullptr || out[0] == '*')
        return std::nullopt;
    return std::string(out);
}

bool bcrypt_verify(std::string_view password, std::string_view hash) {
    if (!usable(password) || hash.empty() || hash.find('\0') != std::string_view::npos) {
        return false;
    }
    auto data = std::make_unique<crypt_data>();
    const std::string phrase(password);
    const std::string setting(hash);
    const char* out = crypt_rn(phrase.c_str(), setting.c_str(), data.get(), sizeof(crypt_data));
    if (out == nullptr || out[0] == '*')
        return false;
    return constant_time_equal(out, hash);
}

}  // namespace nk::store
