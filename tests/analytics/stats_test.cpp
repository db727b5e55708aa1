// The analytics sample's data structures on their own (samples/analytics/stats.cpp compiled into
// this test): the documented error bounds, the per-minute ring, and the handoff round trip.
#include <doctest/doctest.h>

#include <cmath>
#include <string>

#include <rapidjson/document.h>

#include "stats.hpp"

using analytics::Stats;

namespace {

constexpr std::int64_t kT0 = 1796000000000;  // a fixed instant (ms since the epoch)

rapidjson::Document json_of(const Stats& s, std::int64_t at) {
    rapidjson::StringBuffer sb;
    analytics::JsonWriter w(sb);
    w.StartObject();
    s.WriteJson(w, at);
    w.EndObject();
    rapidjson::Document d;
    d.Parse(sb.GetString());
    REQUIRE(d.IsObject());
    return d;
}

std::int64_t dau_today(const Stats& s, std::int64_t at) {
    auto d = json_of(s, at);
    REQUIRE(d["daily_active_users"].Size() >= 1);
    return d["daily_active_users"][0]["users"].GetInt64();
}

}  // namespace

TEST_CASE("daily active users: exact for a few users, within 3% (about 4 standard errors) for many") {
    for (int n : {1, 2, 3, 10}) {
        Stats s;
        for (int i = 0; i < n; ++i) {
            s.RecordUser("user-" + std::to_string(i), kT0);
            s.RecordUser("user-" + std::to_string(i), kT0 + 1000);  // seen twice: counted once
        }
        CHECK(dau_today(s, kT0) == n);
    }
    for (int n : {1000, 100000}) {
        Stats s;
        for (int i = 0; i < n; ++i)
            s.RecordUser("8f4e0c1a-user-" + std::to_string(i), kT0);
        const double got = static_cast<double>(dau_today(s, kT0));
        CHECK(std::abs(got - n) / n < 0.03);
    }
}

TEST_CASE("daily active users are kept per UTC day, newest first, for 7 days") {
    Stats s;
    constexpr std::int64_t day = 86400000;
    for (int d = 0; d < 9; ++d)
        for (int i = 0; i <= d; ++i)
            s.RecordUser("u" + std::to_string(i), kT0 + d * day);
    auto j = json_of(s, kT0 + 8 * day);
    REQUIRE(j["daily_active_users"].Size() == 7);
    CHECK(j["daily_active_users"][0]["users"].GetInt64() == 9);
    CHECK(j["daily_active_users"][6]["users"].GetInt64() == 3);
}

TEST_CASE("session lengths: p50 and p95 within 9%, max exact") {
    Stats s;
    for (int i = 1; i <= 10000; ++i) {
        const std::string id = "s" + std::to_string(i);
        s.RecordSessionStart(id, kT0);
        s.RecordSessionEnd(id, kT0 + i);
    }
    auto j = json_of(s, kT0);
    const auto& len = j["sessions"]["length_ms"];
    CHECK(len["count"].GetInt64() == 10000);
    CHECK(len["max"].GetInt64() == 10000);
    CHECK(std::abs(len["p50"].GetInt64() - 5000) <= 5000 * 0.09);
    CHECK(std::abs(len["p95"].GetInt64() - 9500) <= 9500 * 0.09);
    CHECK(j["sessions"]["active"].GetInt64() == 0);
}

TEST_CASE("per-minute counts cover the last 60 minutes; totals keep everything") {
    Stats s;
    s.RecordEvent("a", kT0);                    // 61 minutes before "now": out of the hour
    s.RecordEvent("a", kT0 + 2 * 60000);        // 59 minutes before
    s.RecordEvent("a", kT0 + 61 * 60000);       // this minute
    s.RecordEvent("a", kT0 + 61 * 60000 + 5);
    auto j = json_of(s, kT0 + 61 * 60000 + 10);
    const auto& a = j["events"]["by_name"]["a"];
    CHECK(a["total"].GetInt64() == 4);
    CHECK(a["last_hour"].GetInt64() == 3);
    CHECK(a["per_minute"].Size() == 60);
    CHECK(a["per_minute"][59].GetInt64() == 2);
    CHECK(a["per_minute"][0].GetInt64() == 1);
}

TEST_CASE("handoff: a saved state merges into a generation that has counted since the swap") {
    Stats old_gen, new_gen;
    old_gen.RecordEvent("a", kT0);
    old_gen.RecordEvent("b", kT0);
    old_gen.RecordUser("alice", kT0);
    old_gen.RecordUser("bob", kT0);
    old_gen.RecordSessionStart("s1", kT0);  // still open at the swap
    new_gen.RecordEvent("a", kT0 + 1000);
    new_gen.RecordUser("bob", kT0 + 1000);
    new_gen.RecordUser("carol", kT0 + 1000);

    rapidjson::StringBuffer sb;
    analytics::JsonWriter w(sb);
    old_gen.Save(w);
    rapidjson::Document blob;
    blob.Parse(sb.GetString());
    REQUIRE(new_gen.Merge(blob));
    new_gen.RecordSessionEnd("s1", kT0 + 5000);  // ends in the new generation

    auto j = json_of(new_gen, kT0 + 6000);
    CHECK(j["events"]["total"].GetInt64() == 3);
    CHECK(j["events"]["by_name"]["a"]["total"].GetInt64() == 2);
    CHECK(j["events"]["by_name"]["a"]["last_hour"].GetInt64() == 2);
    CHECK(j["daily_active_users"][0]["users"].GetInt64() == 3);  // alice, bob, carol
    CHECK(j["sessions"]["active"].GetInt64() == 0);
    CHECK(j["sessions"]["length_ms"]["max"].GetInt64() == 5000);

    rapidjson::Document bad;
    bad.Parse("{\"names\":[]}");
    CHECK_FALSE(new_gen.Merge(bad));
}
