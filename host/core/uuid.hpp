// Version-4 UUIDs: random ones for user ids and session token ids, and the formatting of 16 bytes.
// Thread-safe.
#pragma once

#include <array>
#include <string>

namespace nk {

using UuidBytes = std::array<unsigned char, 16>;

// Sets the version (4) and RFC 4122 variant bits of `b` and formats it as
// "xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx" in lower-case hex (V is one of 8, 9, a, b).
inline std::string format_uuid_v4(UuidBytes b) {
    b[6] = static_cast<unsigned char>((b[6] & 0x0F) | 0x40);
    b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(36);
    for (std::size_t i = 0; i < b.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out.push_back('-');
        out.push_back(hex[b[i] >> 4]);
        out.push_back(hex[b[i] & 0x0F]);
    }
    return out;
}

// A random version-4 UUID from the kernel's CSPRNG (getrandom), as Nakama's crypto/rand ones:
// ids appear in URLs, friend lists and tokens, so they must not be predictable from earlier
// ones. Throws std::runtime_error if the kernel refuses.
std::string random_uuid_v4();

}  // namespace nk
