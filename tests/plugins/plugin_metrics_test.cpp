// Plugin metrics (nk.MetricsCounterAdd / MetricsGaugeSet / MetricsTimerRecord, ABI 1.1) through
// a real plugin and the real runtime, read back as the Prometheus text the metrics port serves.
#include <doctest/doctest.h>

#include <regex>
#include <sstream>
#include <thread>

#include "metrics/registry.hpp"
#include "nk/sdk.h"
#include "runtime/runtime.hpp"
#include "runtime/runtime_support.hpp"

using namespace nk;
using namespace nk::test;

namespace {

struct Probe {
    Probe() {
        install(tmp / "modules", {fixture("metrics_probe")});
        runtime::Options o;
        o.path = (tmp / "modules").string();
        o.data_dir = tmp.path().string();
        o.node = "node-a";
        runtime::Dependencies deps;
        deps.metrics = &metrics;
        rt = std::make_unique<runtime::Runtime>(o, deps);
        status = rt->load_all();
    }
    // Calls the probe's RPC: op, name, value, then tag key/value pairs.
    Status call(const std::string& op, const std::string& name, const std::string& value,
                const std::vector<std::pair<std::string, std::string>>& tags = {}) {
        std::string payload = op + "\n" + name + "\n" + value;
        for (const auto& [k, v] : tags)
            payload += "\n" + k + "\n" + v;
        std::string out;
        return rt->rpc("metric", RequestContext{}, payload, out);
    }
    std::string text() const { return metrics.render(); }
    bool has_line(const std::string& line) const {
        return ("\n" + text()).find("\n" + line + "\n") != std::string::npos;
    }

    TempDir tmp;
    metrics::Registry metrics{"nakama", "node-a"};
    std::unique_ptr<runtime::Runtime> rt;
    Status status;
};

// Every sample line of a Prometheus text exposition is `name{labels} value`.
bool well_formed(const std::string& text) {
    static const std::regex sample(
        R"re(^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\.)*",?)*\})? [-+0-9.eEInfa]+$)re");
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#')
            continue;
        if (!std::regex_match(line, sample)) {
            MESSAGE("malformed line: " << line);
            return false;
        }
    }
    return true;
}

}  // namespace

TEST_CASE("counters, gauges and timers appear with the prefix, custom_ and the tags") {
    Probe p;
    REQUIRE(p.status.is_ok());
    CHECK(p.call("counter", "matches", "3", {{"mode", "pvp"}}).is_ok());
    CHECK(p.call("counter", "matches", "4", {{"mode", "pvp"}}).is_ok());
    CHECK(p.call("counter", "matches", "1", {{"mode", "coop"}}).is_ok());
    CHECK(p.call("gauge", "players", "2.5", {{"region", "eu"}, {"map", "dust \"2\""}}).is_ok());
    CHECK(p.call("timer_ns", "match_time", "1500000").is_ok());  // 1.5 ms

    CHECK(p.has_line("nakama_custom_matches{node_name=\"node-a\",mode=\"pvp\"} 7"));
    CHECK(p.has_line("nakama_custom_matches{node_name=\"node-a\",mode=\"coop\"} 1"));
    CHECK(p.has_line("# TYPE nakama_custom_matches counter"));
    // Tags are sorted by key; values are escaped.
    CHECK(p.has_line(
        "nakama_custom_players{node_name=\"node-a\",map=\"dust \\\"2\\\"\",region=\"eu\"} 2.5"));
    CHECK(p.has_line("# TYPE nakama_custom_players gauge"));
    // Timers are histograms in seconds.
    CHECK(p.has_line("# TYPE nakama_custom_match_time histogram"));
    CHECK(p.has_line("nakama_custom_match_time_bucket{node_name=\"node-a\",le=\"0.001\"} 0"));
    CHECK(p.has_line("nakama_custom_match_time_bucket{node_name=\"node-a\",le=\"0.0025\"} 1"));
    CHECK(p.has_line("nakama_custom_match_time_count{node_name=\"node-a\"} 1"));
    CHECK(p.has_line("nakama_custom_match_time_sum{node_name=\"node-a\"} 0.0015"));

    // The same tags in another order are the same series.
    CHECK(p.call("gauge", "players", "4", {{"map", "dust \"2\""}, {"region", "eu"}}).is_ok());
    CHECK(p.has_line(
        "nakama_custom_players{node_name=\"node-a\",map=\"dust \\\"2\\\"\",region=\"eu\"} 4"));
    CHECK(well_formed(p.text()));
}

TEST_CASE("bad names, tags and values are refused with a message and never reach the text") {
    Probe p;
    REQUIRE(p.status.is_ok());
    struct Bad {
        std::string op, name, value;
        std::vector<std::pair<std::string, std::string>> tags;
        std::string says;
    };
    const std::vector<Bad> cases = {
        {"counter", "bad-name", "1", {}, "invalid metric name"},
        {"counter", "", "1", {}, "invalid metric name"},
        {"counter", "9lives", "1", {}, "invalid metric name"},
        {"counter", "a{b=\"c\"}", "1", {}, "invalid metric name"},
        {"counter", std::string(65, 'a'), "1", {}, "invalid metric name"},
        {"counter", "ok_name", "1", {{"bad key", "v"}}, "invalid tag key"},
        {"counter", "ok_name", "1", {{"node_name", "x"}}, "invalid tag key"},
        {"counter", "ok_name", "1", {{"__reserved", "x"}}, "invalid tag key"},
        {"timer_ns", "ok_timer", "1", {{"le", "x"}}, "invalid tag key"},
        {"counter", "ok_name", "1", {{"k", "\xff\xfe"}}, "valid UTF-8"},
        {"counter", "ok_name", "1", {{"k", std::string(257, 'v')}}, "valid UTF-8"},
        {"counter", "ok_name", "-1", {}, "negative"},
        {"gauge", "ok_gauge", "nan", {}, "finite"},
        {"timer_ns", "ok_timer", "-5", {}, "negative"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const Status st = p.call(c.op, c.name, c.value, c.tags);
        CHECK(st.code_number() == NK_INVALID_ARGUMENT);
        CHECK(st.message().find(c.says) != std::string::npos);
    }
    // Nine tags are one too many.
    std::vector<std::pair<std::string, std::string>> nine;
    for (int i = 0; i < 9; ++i)
        nine.emplace_back("k" + std::to_string(i), "v");
    CHECK(p.call("counter", "ok_name", "1", nine).code_number() == NK_INVALID_ARGUMENT);

    // A name keeps its first type.
    CHECK(p.call("counter", "kills", "1").is_ok());
    const Status conflict = p.call("gauge", "kills", "1");
    CHECK(conflict.code_number() == NK_INVALID_ARGUMENT);
    CHECK(conflict.message().find("is a counter") != std::string::npos);

    const std::string text = p.text();
    CHECK(text.find("bad-name") == std::string::npos);
    CHECK(text.find("ok_name") == std::string::npos);
    CHECK(text.find("ok_timer") == std::string::npos);
    CHECK(text.find("nakama_custom_kills{node_name=\"node-a\"} 1") != std::string::npos);
    CHECK(well_formed(text));
}

TEST_CASE("each metric holds at most 256 tag sets; updates beyond are dropped and counted") {
    Probe p;
    REQUIRE(p.status.is_ok());
    for (int i = 0; i < 256; ++i)
        REQUIRE(p.call("counter", "per_user", "1", {{"user", "u" + std::to_string(i)}}).is_ok());
    CHECK(p.has_line("nakama_plugin_metric_series_overflow{node_name=\"node-a\",metric=\"\"} 0"));

    const Status over = p.call("counter", "per_user", "1", {{"user", "u256"}});
    CHECK(over.code_number() == NK_RESOURCE_EXHAUSTED);
    CHECK(over.message().find("too many tag sets") != std::string::npos);
    CHECK(p.call("counter", "per_user", "1", {{"user", "u257"}}).code_number() ==
          NK_RESOURCE_EXHAUSTED);
    CHECK(p.call("counter", "per_user", "1", {{"user", "u256"}}).code_number() ==  // remembered
          NK_RESOURCE_EXHAUSTED);
    CHECK(p.has_line(
        "nakama_plugin_metric_series_overflow{node_name=\"node-a\",metric=\"per_user\"} 3"));
    CHECK(p.text().find("user=\"u256\"") == std::string::npos);

    // Existing tag sets keep counting, and other metrics are not affected.
    CHECK(p.call("counter", "per_user", "5", {{"user", "u7"}}).is_ok());
    CHECK(p.has_line("nakama_custom_per_user{node_name=\"node-a\",user=\"u7\"} 6"));
    CHECK(p.call("counter", "other", "1", {{"user", "u256"}}).is_ok());
    CHECK(well_formed(p.text()));
}

TEST_CASE("concurrent updates from many threads all count") {
    Probe p;
    REQUIRE(p.status.is_ok());
    constexpr int kThreads = 4, kEach = 2000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&p, t] {
            for (int i = 0; i < kEach; ++i) {
                // One series shared by all, one per thread, created concurrently.
                p.call("counter", "hits", "1", {{"kind", "shared"}});
                p.call("counter", "hits", "1", {{"kind", "t" + std::to_string(t)}});
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(p.has_line("nakama_custom_hits{node_name=\"node-a\",kind=\"shared\"} " +
                     std::to_string(kThreads * kEach)));
    for (int t = 0; t < kThreads; ++t)
        CHECK(p.has_line("nakama_custom_hits{node_name=\"node-a\",kind=\"t" + std::to_string(t) +
                         "\"} " + std::to_string(kEach)));
}
