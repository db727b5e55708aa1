// UUID v7 event ids (RFC 9562): layout, time order, uniqueness.
#include <doctest/doctest.h>

#include <set>
#include <string>

#include "core/uuid.hpp"

using namespace std::chrono;

namespace {

std::string text(const nk::UuidBytes& b) {
    std::string s(nk::kUuidTextSize, '?');
    nk::format_uuid_to(b, s.data());
    return s;
}

}  // namespace

TEST_CASE("uuid_v7 carries the unix milliseconds, version 7 and the RFC variant") {
    const system_clock::time_point at{milliseconds(1733346645123) + microseconds(500)};
    const nk::UuidBytes id = nk::uuid_v7(at);
    std::uint64_t ms = 0;
    for (int i = 0; i < 6; ++i)
        ms = (ms << 8) | id[static_cast<std::size_t>(i)];
    CHECK(ms == 1733346645123ull);
    CHECK((id[6] >> 4) == 7);
    CHECK((id[8] & 0xC0) == 0x80);
    // 0.5 ms into the millisecond: rand_a holds 2048 (RFC 9562 6.2 method 3).
    CHECK((((id[6] & 0x0F) << 8) | id[7]) == 2048);
    const std::string s = text(id);
    CHECK(s.size() == 36);
    CHECK(s.substr(0, 14) == "01939382-d483-");
    CHECK(s[14] == '7');
}

TEST_CASE("later instants give larger ids, as bytes and as text; one instant, distinct ids") {
    const system_clock::time_point t0{seconds(1733346645)};
    std::string previous;
    for (int step = 0; step < 2000; ++step) {
        const std::string s = text(nk::uuid_v7(t0 + microseconds(step)));  // 1 us > 244 ns steps
        CHECK(s > previous);
        previous = s;
    }
    std::set<std::string> same;
    for (int i = 0; i < 10000; ++i)
        same.insert(text(nk::uuid_v7(t0)));
    CHECK(same.size() == 10000);
}
