#include "core/uuid.hpp"

#include <sys/random.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace nk {
namespace {

void fill_random(unsigned char* p, std::size_t size) {
    std::size_t got = 0;
    while (got < size) {
        const ssize_t n = ::getrandom(p + got, size - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw std::runtime_error("getrandom failed");
        }
        got += static_cast<std::size_t>(n);
    }
}

// Random bytes read ahead per thread: one getrandom per 64 event ids instead of one per id
// (event ids are made on the request path; they need uniqueness, and unpredictability is kept
// because the bytes still come from the kernel's CSPRNG).
class RandomBlock {
  public:
    void take(unsigned char* out, std::size_t n) {
        if (used_ + n > bytes_.size()) {
            fill_random(bytes_.data(), bytes_.size());
            used_ = 0;
        }
        std::memcpy(out, bytes_.data() + used_, n);
        used_ += n;
    }

  private:
    std::array<unsigned char, 512> bytes_{};
    std::size_t used_ = bytes_.size();
};

}  // namespace

std::string random_uuid_v4() {
    UuidBytes b;
    fill_random(b.data(), b.size());
    return format_uuid_v4(b);
}

UuidBytes uuid_v7(std::chrono::system_clock::time_point at) {
    using namespace std::chrono;
    const auto ns = duration_cast<nanoseconds>(at.time_since_epoch()).count();
    const auto unix_ns = static_cast<std::uint64_t>(ns < 0 ? 0 : ns);
    const std::uint64_t ms = unix_ns / 1'000'000;
    // Sub-millisecond fraction scaled to 12 bits: floor(frac * 4096), always < 4096.
    const std::uint64_t sub = (unix_ns % 1'000'000) * 4096 / 1'000'000;
    UuidBytes b;
    thread_local RandomBlock random;
    random.take(b.data() + 8, 8);
    for (int i = 0; i < 6; ++i)
        b[static_cast<std::size_t>(i)] = static_cast<unsigned char>(ms >> (40 - 8 * i));
    b[6] = static_cast<unsigned char>(0x70 | ((sub >> 8) & 0x0F));  // version 7
    b[7] = static_cast<unsigned char>(sub & 0xFF);
    b[8] = static_cast<unsigned char>((b[8] & 0x3F) | 0x80);  // RFC 9562 variant
    return b;
}

}  // namespace nk
