// bcrypt password hashing through libxcrypt (crypt_gensalt_rn + crypt_rn:
// reentrant, thread-safe). Nakama stores bcrypt hashes, so we use bcrypt too
// and never a fast hash. Both calls are slow by design (cost 10 ≈ tens of ms):
// run them on the BlockingPool.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace nk::store {

// "$2b$<cost>$..." for `password`, or nullopt when libxcrypt fails.
std::optional<std::string> bcrypt_hash(std::string_view password, int cost);
// True when `password` hashes to `hash` (result compared in constant time).
bool bcrypt_verify(std::string_view password, std::string_view hash);

}  // namespace nk::store
