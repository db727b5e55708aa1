#include "core/uuid.hpp"

#include <sys/random.h>

#include <cerrno>
#include <stdexcept>

namespace nk {

std::string random_uuid_v4() {
    UuidBytes b;
    std::size_t got = 0;
    while (got < b.size()) {
        const ssize_t n = ::getrandom(b.data() + got, b.size() - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            throw std::runtime_error("getrandom failed");
        }
        got += static_cast<std::size_t>(n);
    }
    return format_uuid_v4(b);
}

}  // namespace nk
