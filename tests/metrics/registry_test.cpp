#include <doctest/doctest.h>

#include <thread>
#include <vector>

#include "metrics/registry.hpp"

using nk::metrics::Registry;

TEST_CASE("registry renders Prometheus text with prefix and node_name") {
    Registry reg("nkhost", "node1");
    auto& c = reg.counter("events_received", "Events received.", {{"kind", "custom"}});
    c.inc(3);
    reg.gauge("event_queue_depth", "Events waiting.").set(7);
    auto& h = reg.histogram("handler_latency_ms", "Handler latency.", {1, 10});
    h.observe(0.5);
    h.observe(5);
    h.observe(50);
    const std::string text = reg.render();
    CHECK(text.find("# TYPE nkhost_events_received counter\n") != std::string::npos);
    CHECK(text.find("nkhost_events_received{node_name=\"node1\",kind=\"custom\"} 3\n") != std::string::npos);
    CHECK(text.find("nkhost_event_queue_depth{node_name=\"node1\"} 7\n") != std::string::npos);
    CHECK(text.find("nkhost_handler_latency_ms_bucket{node_name=\"node1\",le=\"1\"} 1\n") != std::string::npos);
    CHECK(text.find("nkhost_handler_latency_ms_bucket{node_name=\"node1\",le=\"10\"} 2\n") != std::string::npos);
    CHECK(text.find("nkhost_handler_latency_ms_bucket{node_name=\"node1\",le=\"+Inf\"} 3\n") != std::string::npos);
    CHECK(text.find("nkhost_handler_latency_ms_sum{node_name=\"node1\"} 55.5\n") != std::string::npos);
    CHECK(text.find("nkhost_handler_latency_ms_count{node_name=\"node1\"} 3\n") != std::string::npos);
}

TEST_CASE("same name and labels return the same series; label values are escaped") {
    Registry reg("nakama", "n");
    auto& a = reg.counter("x", "h", {{"route", "/a\"b"}});
    auto& b = reg.counter("x", "h", {{"route", "/a\"b"}});
    CHECK(&a == &b);
    a.inc();
    CHECK(reg.render().find("nakama_x{node_name=\"n\",route=\"/a\\\"b\"} 1") != std::string::npos);
    CHECK_THROWS(reg.gauge("x", "h"));
}

TEST_CASE("counters are exact under concurrent updates") {
    Registry reg("p", "n");
    auto& c = reg.counter("hits", "h");
    auto& h = reg.histogram("lat", "h", {1});
    std::vector<std::thread> ts;
    for (int t = 0; t < 4; ++t)
        ts.emplace_back([&] {
            for (int i = 0; i < 10000; ++i) {
                c.inc();
                h.observe(2);
                reg.counter("hits", "h");  // concurrent lookups are safe
            }
        });
    for (auto& t : ts) t.join();
    CHECK(c.value() == 40000);
    CHECK(h.count() == 40000);
}
