// UUIDs: random version-4 ones for user ids and session token ids, time-ordered version-7 ones
// for event ids, and the formatting of 16 bytes. Thread-safe.
#pragma once

#include <array>
#include <chrono>
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

// Formats 16 bytes as they are ("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx", lower-case hex) into
// exactly 36 chars at `out` (no terminator).
inline void format_uuid_to(const UuidBytes& b, char* out) {
    static constexpr char hex[] = "0123456789abcdef";
    for (std::size_t i = 0; i < b.size(); ++i) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *out++ = '-';
        *out++ = hex[b[i] >> 4];
        *out++ = hex[b[i] & 0x0F];
    }
}
inline constexpr std::size_t kUuidTextSize = 36;

// A version-7 UUID (RFC 9562) for the instant `at`: 48 bits of Unix milliseconds, then in
// rand_a the sub-millisecond fraction in 12 bits (RFC 9562 6.2 method 3, ~244 ns steps), then 62
// random bits. Ids sort (as bytes or text) in the order of their instants, down to that step;
// ids of one step differ by their random bits. The random bits come from the kernel's CSPRNG
// (getrandom), read ahead in blocks per thread so an id costs no system call. Throws
// std::runtime_error if the kernel refuses.
UuidBytes uuid_v7(std::chrono::system_clock::time_point at);

// A random version-4 UUID from the kernel's CSPRNG (getrandom), as Nakama's crypto/rand ones:
// ids appear in URLs, friend lists and tokens, so they must not be predictable from earlier
// ones. Throws std::runtime_error if the kernel refuses.
std::string random_uuid_v4();

}  // namespace nk
