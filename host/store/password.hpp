// bcrypt password hashing through libxcrypt (crypt_gensalt_rn + crypt_rn:
// reentrant, thread-safe). Nakama stores bcrypt hashes, so we use bcrypt too
// and never a fast hash. Both calls are slow by design (cost 10 ≈ tens of ms):
// run them on the BlockingPool.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "core/status.hpp"

namespace nk::store {

// bcrypt uses only the first 72 bytes of a password; longer ones are refused (as Go's bcrypt
// does) rather than silently shortened, so passwords sharing 72 bytes cannot stand for each other.
constexpr std::size_t kMaxPasswordBytes = 72;
inline constexpr const char* kPasswordTooLong = "Password must be at most 72 bytes.";
inline constexpr const char* kPasswordNul = "Password must not contain NUL characters.";

// Why bcrypt cannot take `password` as it is (longer than kMaxPasswordBytes, or a NUL byte,
// where crypt() would cut a C string), as an invalid_argument status; ok otherwise.
Status check_password(std::string_view password);

// "$2b$<cost>$..." for `password`, or nullopt when libxcrypt fails or the password is longer
// than kMaxPasswordBytes or holds a NUL byte.
std::optional<std::string> bcrypt_hash(std::string_view password, int cost);
// True when `password` hashes to `hash` (result compared in constant time); false for a password
// bcrypt_hash would refuse.
bool bcrypt_verify(std::string_view password, std::string_view hash);

}  // namespace nk::store
