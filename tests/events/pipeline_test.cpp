#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "support/wait.hpp"

using namespace nk::events;
using namespace std::chrono_literals;

namespace {

using nk::test::Gate;
using nk::test::wait_until;

Event custom_event(int id) {
    Event e;
    e.name = std::to_string(id);
    return e;
}

Event session_event(Kind kind, const std::string& session) {
    Event e;
    e.kind = kind;
    e.name = kind == Kind::session_start ? "session_start" : "session_end";
    nk::RequestContext ctx;
    ctx.session_id = session;
    e.set_context(std::move(ctx));
    return e;
}

// Custom-event handlers that wait at `gate`, then count the event in `handled`.
HandlerSet held_at(Gate& gate, std::atomic<int>& handled) {
    HandlerSet set;
    set.custom.push_back([&](const Event&) {
        gate.wait();
        ++handled;
    });
    return set;
}

Options opts(std::size_t queue_size, unsigned workers, FullPolicy policy = FullPolicy::drop) {
    Options o;
    o.queue_size = queue_size;
    o.workers = workers;
    o.full_policy = policy;
    return o;
}

}  // namespace

TEST_CASE("no handler of the kind: accepted and nothing queued") {
    StaticHandlerSource source;
    EventPipeline p(opts(4, 1), source, nullptr);
    p.start();
    for (int i = 0; i < 100; ++i)
        CHECK(p.submit(custom_event(i)) == SubmitResult::accepted);
    const auto s = p.stats();
    CHECK(s.received == 0);
    CHECK(s.depth == 0);
    CHECK(s.dropped == 0);
}

TEST_CASE("handlers of the kind run in registration order, once per event, errors contained") {
    constexpr int events = 2000;
    std::vector<std::atomic<int>> step(events);
    std::atomic<int> order_violations{0};
    HandlerSet set;
    set.custom.push_back([&](const Event& e) {
        if (step[std::stoi(e.name)].fetch_add(1) != 0)
            ++order_violations;
        if (std::stoi(e.name) % 3 == 0)
            throw std::runtime_error("handler failure");
    });
    set.custom.push_back([&](const Event& e) {
        if (step[std::stoi(e.name)].fetch_add(1) != 1)
            ++order_violations;
        if (std::stoi(e.name) % 5 == 0)
            throw 42;  // not a std::exception
    });
    std::atomic<int> starts{0};
    set.session_start.push_back([&](const Event&) { ++starts; });
    StaticHandlerSource source(std::move(set));
    nk::metrics::Registry registry("nktest", "node1");
    EventPipeline p(opts(events, 4), source, &registry);
    p.start();
    for (int i = 0; i < events; ++i)
        REQUIRE(p.submit(custom_event(i)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return p.stats().processed == events; }));
    for (int i = 0; i < events; ++i)
        CHECK(step[i].load() == 2);
    CHECK(order_violations == 0);
    CHECK(starts == 0);
    const int expected_errors = (events + 2) / 3 + (events + 4) / 5;
    CHECK(p.stats().handler_errors == static_cast<std::uint64_t>(expected_errors));
    const std::string text = registry.render();
    CHECK(text.find("nktest_events_processed{") != std::string::npos);
    CHECK(text.find("nktest_event_handler_errors") != std::string::npos);
    CHECK(text.find("nktest_dropped_events") != std::string::npos);
    CHECK(text.find("nktest_event_queue_capacity") != std::string::npos);
    CHECK(text.find("nktest_event_handler_latency_ms") != std::string::npos);
    // Sampled: the handlers of one event in 16 are timed.
    CHECK(registry.histogram("event_handler_latency_ms", "", nk::metrics::latency_ms_buckets())
              .count() >= 2 * (events / 16));
}

TEST_CASE("many producers and workers: every accepted event handled exactly once") {
    constexpr int producers = 4, per_producer = 10000;
    std::vector<std::atomic<int>> handled(producers * per_producer);
    HandlerSet set;
    set.custom.push_back([&](const Event& e) { handled[std::stoi(e.name)].fetch_add(1); });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(512, 4), source, nullptr);
    p.start();
    std::vector<std::vector<char>> accepted(producers, std::vector<char>(per_producer));
    std::vector<std::thread> threads;
    for (int t = 0; t < producers; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_producer; ++i) {
                accepted[t][i] =
                    p.submit(custom_event(t * per_producer + i)) == SubmitResult::accepted;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(p.drain(30s) == 0);
    std::uint64_t accepted_count = 0;
    for (int t = 0; t < producers; ++t) {
        for (int i = 0; i < per_producer; ++i) {
            REQUIRE(handled[t * per_producer + i].load() == (accepted[t][i] ? 1 : 0));
            accepted_count += accepted[t][i];
        }
    }
    const auto s = p.stats();
    CHECK(s.processed == accepted_count);
    CHECK(s.processed + s.dropped == static_cast<std::uint64_t>(producers * per_producer));
}

TEST_CASE("capacity 1, policy drop: one in flight, every other event dropped and counted") {
    Gate gate;
    std::atomic<int> handled{0};
    StaticHandlerSource source(held_at(gate, handled));
    nk::metrics::Registry registry("nktest", "node1");
    EventPipeline p(opts(1, 2), source, &registry);
    p.start();
    CHECK(p.submit(custom_event(0)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return gate.waiting() == 1; }));
    for (int i = 1; i < 100; ++i)
        CHECK(p.submit(custom_event(i)) == SubmitResult::dropped);
    gate.open();
    CHECK(p.drain(30s) == 0);
    CHECK(handled == 1);
    CHECK(p.stats().dropped == 99);
    CHECK(registry.counter("dropped_events", "").value() == 99);
    CHECK(registry.counter("events_dropped", "", {{"kind", "custom"}}).value() == 99);
}

TEST_CASE("policy drop under overload with a slow handler: handled + dropped == submitted") {
    constexpr int producers = 4, per_producer = 3000;
    std::atomic<std::uint64_t> handled{0};
    HandlerSet set;
    set.custom.push_back([&](const Event&) {
        std::this_thread::sleep_for(20us);  // the slow handler under test, not synchronisation
        ++handled;
    });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(16, 2), source, nullptr);
    p.start();
    std::atomic<std::uint64_t> dropped{0}, accepted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < producers; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_producer; ++i) {
                const auto r = p.submit(custom_event(t * per_producer + i));
                if (r == SubmitResult::dropped)
                    ++dropped;
                else if (r == SubmitResult::accepted)
                    ++accepted;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(p.drain(30s) == 0);
    CHECK(dropped > 0);
    CHECK(handled == accepted);
    CHECK(handled + p.stats().dropped == static_cast<std::uint64_t>(producers * per_producer));
    CHECK(p.stats().dropped == dropped);
}

TEST_CASE("policy reject under overload: every event handled or rejected, none vanish") {
    constexpr int producers = 4, per_producer = 3000;
    std::atomic<std::uint64_t> handled{0};
    HandlerSet set;
    set.custom.push_back([&](const Event&) {
        std::this_thread::sleep_for(20us);
        ++handled;
    });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(16, 2, FullPolicy::reject), source, nullptr);
    p.start();
    std::atomic<std::uint64_t> rejected{0}, accepted{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < producers; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_producer; ++i) {
                const auto r = p.submit(custom_event(t * per_producer + i));
                if (r == SubmitResult::rejected)
                    ++rejected;
                else if (r == SubmitResult::accepted)
                    ++accepted;
                else
                    ++other;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(p.drain(30s) == 0);
    CHECK(other == 0);
    CHECK(rejected > 0);
    CHECK(handled == accepted);
    CHECK(handled + rejected == static_cast<std::uint64_t>(producers * per_producer));
    CHECK(p.stats().rejected == rejected);
    CHECK(p.stats().dropped == 0);
}

TEST_CASE("drain handles every accepted event, then refuses new ones") {
    std::atomic<int> handled{0};
    HandlerSet set;
    set.custom.push_back([&](const Event&) { ++handled; });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(10000, 3), source, nullptr);
    // Not started yet: the events wait in the queue and drain() still gets them handled.
    for (int i = 0; i < 5000; ++i)
        REQUIRE(p.submit(custom_event(i)) == SubmitResult::accepted);
    CHECK(p.drain(30s) == 0);
    CHECK(handled == 5000);
    CHECK(p.submit(custom_event(1)) == SubmitResult::shut_down);
    CHECK(p.drain(30s) == 0);  // idempotent
}

TEST_CASE("drain with too short a grace reports the events it could not handle") {
    Gate gate;
    std::atomic<int> handled{0};
    StaticHandlerSource source(held_at(gate, handled));
    nk::metrics::Registry registry("nktest", "node1");
    EventPipeline p(opts(100, 1), source, &registry);
    p.start();
    for (int i = 0; i < 10; ++i)
        REQUIRE(p.submit(custom_event(i)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return gate.waiting() == 1; }));
    // One event is stuck in its handler, nine are queued: none can finish within the grace.
    CHECK(p.drain(50ms) == 10);
    CHECK(registry.counter("event_drain_unhandled", "").value() == 10);
    CHECK(p.submit(custom_event(99)) == SubmitResult::shut_down);
    gate.open();  // the running call completes; the queued ones are discarded
}

TEST_CASE("session_start handlers finish before session_end handlers of the same session") {
    constexpr int producers = 4, sessions_per_producer = 1500;
    constexpr int sessions = producers * sessions_per_producer;
    // 0 = nothing yet, 1 = start running, 2 = start done, 3 = end done
    std::vector<std::atomic<int>> state(sessions);
    std::atomic<int> violations{0}, ends{0};
    HandlerSet set;
    set.session_start.push_back([&](const Event& e) {
        const int s = std::stoi(e.context().session_id);
        if (state[s].exchange(1) != 0)
            ++violations;
        if (s % 7 == 0)
            std::this_thread::yield();  // let other workers race ahead
    });
    set.session_start.push_back([&](const Event& e) {
        const int s = std::stoi(e.context().session_id);
        if (state[s].exchange(2) != 1)
            ++violations;
    });
    set.session_end.push_back([&](const Event& e) {
        const int s = std::stoi(e.context().session_id);
        if (state[s].exchange(3) != 2)
            ++violations;
        ++ends;
    });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(2 * sessions, 8), source, nullptr);
    p.start();
    std::vector<std::thread> threads;
    for (int t = 0; t < producers; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < sessions_per_producer; ++i) {
                const std::string id = std::to_string(t * sessions_per_producer + i);
                REQUIRE(p.submit(session_event(Kind::session_start, id)) == SubmitResult::accepted);
                REQUIRE(p.submit(session_event(Kind::session_end, id)) == SubmitResult::accepted);
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(p.drain(30s) == 0);
    CHECK(violations == 0);
    CHECK(ends == sessions);
    for (int s = 0; s < sessions; ++s)
        REQUIRE(state[s].load() == 3);
}

TEST_CASE("session_end of a session whose start was dropped is still handled") {
    Gate gate;
    std::atomic<int> ends{0};
    HandlerSet set;
    set.custom.push_back([&](const Event&) { gate.wait(); });
    set.session_start.push_back([&](const Event&) {});
    set.session_end.push_back([&](const Event&) { ++ends; });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(2, 1), source, nullptr);
    p.start();
    REQUIRE(p.submit(custom_event(0)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return gate.waiting() == 1; }));
    REQUIRE(p.submit(custom_event(1)) == SubmitResult::accepted);  // queue now full
    CHECK(p.submit(session_event(Kind::session_start, "s1")) == SubmitResult::dropped);
    gate.open();
    REQUIRE(wait_until([&] { return p.stats().depth == 0; }));
    CHECK(p.submit(session_event(Kind::session_end, "s1")) == SubmitResult::accepted);
    CHECK(p.drain(30s) == 0);
    CHECK(ends == 1);
}

TEST_CASE("idle workers sleep: no polling while idle, one wake per event") {
    std::atomic<int> handled{0};
    HandlerSet set;
    set.custom.push_back([&](const Event&) { ++handled; });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(64, 4), source, nullptr);
    p.start();
    // A worker counts as sleeping (sleeping_workers) a moment before it counts its sleep
    // (worker_sleeps), right before the futex wait: wait for both, each worker slept once.
    const auto all_asleep = [&](std::uint64_t sleeps) {
        const auto s = p.stats();
        return s.sleeping_workers == 4 && s.worker_sleeps == sleeps;
    };
    REQUIRE(wait_until([&] { return all_asleep(4); }));
    const auto before = p.stats();
    // Observe a quiet period: a spinning or polling worker would go back to sleep repeatedly.
    std::this_thread::sleep_for(200ms);
    const auto idle = p.stats();
    CHECK(idle.worker_sleeps == before.worker_sleeps);
    CHECK(idle.worker_wakes == before.worker_wakes);
    CHECK(idle.sleeping_workers == 4);

    REQUIRE(p.submit(custom_event(1)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return handled == 1; }));
    REQUIRE(wait_until([&] { return all_asleep(idle.worker_sleeps + 1); }));
    const auto after = p.stats();
    CHECK(after.worker_wakes - idle.worker_wakes == 1);  // only one sleeper was woken
    CHECK(after.worker_sleeps - idle.worker_sleeps == 1);
}

TEST_CASE("handlers_changed: idle workers let go of a retired handler snapshot") {
    auto module = std::make_shared<int>(1);  // stands for a loaded module's code and data
    std::weak_ptr<int> alive = module;
    std::atomic<int> old_calls{0}, new_calls{0};
    HandlerSet first;
    first.custom.push_back([&old_calls, module](const Event&) { ++old_calls; });
    module.reset();
    StaticHandlerSource source(std::move(first));
    EventPipeline p(opts(64, 2), source, nullptr);
    p.start();
    REQUIRE(p.submit(custom_event(1)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return old_calls == 1; }));

    HandlerSet second;
    second.custom.push_back([&new_calls](const Event&) { ++new_calls; });
    source.publish(std::move(second));
    p.handlers_changed();
    // No event arrives, yet the workers drop the retired snapshot.
    REQUIRE(wait_until([&] { return alive.expired(); }));
    REQUIRE(p.submit(custom_event(2)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return new_calls == 1; }));
    CHECK(old_calls == 1);
    CHECK(p.drain(30s) == 0);
}

namespace {

Event sized_event(int id, std::size_t value_bytes) {
    Event e = custom_event(id);
    e.properties.emplace_back("payload", std::string(value_bytes, 'x'));
    return e;
}

}  // namespace

TEST_CASE("footprint counts name, properties, context and a fixed overhead") {
    Event e;
    const std::size_t empty = footprint(e);
    CHECK(empty == sizeof(Event));
    e.name = "abc";
    e.properties.emplace_back("k", std::string(100, 'v'));
    CHECK(footprint(e) == empty + 3 + sizeof(std::pair<std::string, std::string>) + 1 + 100);
    const std::size_t without_context = footprint(e);
    nk::RequestContext ctx;
    ctx.user_id = "user";
    ctx.vars["a"] = "bb";
    e.set_context(ctx);
    CHECK(footprint(e) == without_context + sizeof(nk::RequestContext) + 4 + 1 + 2);
}

TEST_CASE("byte budget, policy drop: events over max_bytes are dropped and counted while the "
          "count bound is far") {
    Gate gate;
    std::atomic<int> handled{0};
    StaticHandlerSource source(held_at(gate, handled));
    nk::metrics::Registry registry("nktest", "node1");
    constexpr std::size_t value = 10000;
    const std::size_t one = footprint(sized_event(0, value));
    Options o = opts(1000, 1);
    o.queue_max_bytes = 5 * one;  // room for exactly five
    EventPipeline p(o, source, &registry);
    p.start();
    for (int i = 0; i < 5; ++i)
        CHECK(p.submit(sized_event(i, value)) == SubmitResult::accepted);
    CHECK(p.stats().bytes == 5 * one);
    for (int i = 5; i < 20; ++i)
        CHECK(p.submit(sized_event(i, value)) == SubmitResult::dropped);
    CHECK(p.stats().depth == 5);
    CHECK(p.stats().bytes_full == 15);
    CHECK(p.stats().dropped == 15);
    CHECK(registry.counter("event_queue_bytes_full", "").value() == 15);
    CHECK(registry.counter("dropped_events", "").value() == 15);
    gate.open();
    REQUIRE(wait_until([&] { return p.stats().depth == 0; }));
    CHECK(p.stats().bytes == 0);  // handled events gave their bytes back
    CHECK(registry.gauge("event_queue_bytes", "").value() == 0);
    CHECK(registry.gauge("event_queue_max_bytes", "").value() ==
          static_cast<std::int64_t>(5 * one));
    CHECK(p.submit(sized_event(99, value)) == SubmitResult::accepted);
    CHECK(p.drain(30s) == 0);
    CHECK(handled == 6);
}

TEST_CASE("byte budget, policy reject: over max_bytes is rejected; a lone event larger than the "
          "budget still goes through") {
    Gate gate;
    HandlerSet set;
    set.custom.push_back([&](const Event&) { gate.wait(); });
    set.session_start.push_back([&](const Event&) {});
    set.session_end.push_back([&](const Event&) {});
    StaticHandlerSource source(std::move(set));
    Options o = opts(1000, 1, FullPolicy::reject);
    o.queue_max_bytes = 1000;
    EventPipeline p(o, source, nullptr);
    p.start();
    // Nothing held: accepted although over the budget on its own.
    CHECK(p.submit(sized_event(0, 5000)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return gate.waiting() == 1; }));
    CHECK(p.submit(sized_event(1, 10)) == SubmitResult::rejected);
    CHECK(p.submit(session_event(Kind::session_start, "s1")) == SubmitResult::rejected);
    CHECK(p.submit(session_event(Kind::session_end, "s1")) == SubmitResult::rejected);
    const auto s = p.stats();
    CHECK(s.rejected == 3);
    CHECK(s.bytes_full == 3);
    CHECK(s.dropped == 0);
    gate.open();
    CHECK(p.drain(30s) == 0);
    CHECK(p.stats().bytes == 0);
}

TEST_CASE("byte budget: a session_end parked behind its start holds bytes until it ran") {
    Gate gate;
    std::atomic<int> ends{0};
    HandlerSet set;
    set.session_start.push_back([&](const Event&) { gate.wait(); });
    set.session_end.push_back([&](const Event&) { ++ends; });
    StaticHandlerSource source(std::move(set));
    EventPipeline p(opts(100, 2), source, nullptr);
    p.start();
    const Event start = session_event(Kind::session_start, "s1");
    const Event end = session_event(Kind::session_end, "s1");
    REQUIRE(p.submit(Event(start)) == SubmitResult::accepted);
    REQUIRE(wait_until([&] { return gate.waiting() == 1; }));
    REQUIRE(p.submit(Event(end)) == SubmitResult::accepted);  // parked
    CHECK(p.stats().bytes == footprint(start) + footprint(end));
    gate.open();
    REQUIRE(wait_until([&] { return ends == 1 && p.stats().depth == 0; }));
    CHECK(p.stats().bytes == 0);
    CHECK(p.drain(30s) == 0);
}

TEST_CASE("many producers against a small byte budget: bytes return to zero, none vanish") {
    constexpr int producers = 4, per_producer = 2000;
    std::atomic<std::uint64_t> handled{0};
    HandlerSet set;
    set.custom.push_back([&](const Event&) { ++handled; });
    StaticHandlerSource source(std::move(set));
    Options o = opts(65536, 2);
    o.queue_max_bytes = 20 * footprint(sized_event(0, 1000));
    EventPipeline p(o, source, nullptr);
    p.start();
    std::atomic<std::uint64_t> accepted{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < producers; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < per_producer; ++i) {
                if (p.submit(sized_event(t * per_producer + i, 1000)) == SubmitResult::accepted)
                    ++accepted;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(p.drain(30s) == 0);
    CHECK(handled == accepted);
    CHECK(handled + p.stats().dropped == static_cast<std::uint64_t>(producers * per_producer));
    CHECK(p.stats().bytes == 0);
}

TEST_CASE("a drain after holding trim_after_bytes returns freed memory once") {
    Gate gate;
    HandlerSet set;
    set.custom.push_back([&](const Event&) { gate.wait(); });
    StaticHandlerSource source(std::move(set));
    Options o = opts(1000, 1);
    o.trim_after_bytes = 50000;
    EventPipeline p(o, source, nullptr);
    p.start();
    for (int i = 0; i < 10; ++i)
        REQUIRE(p.submit(sized_event(i, 10000)) == SubmitResult::accepted);
    gate.open();
    REQUIRE(wait_until([&] { return p.stats().depth == 0; }));
#if defined(__GLIBC__)
    CHECK(p.stats().memory_trims == 1);
#endif
    // Small traffic afterwards does not trim again.
    REQUIRE(p.submit(sized_event(10, 10)) == SubmitResult::accepted);
    CHECK(p.drain(30s) == 0);
#if defined(__GLIBC__)
    CHECK(p.stats().memory_trims == 1);
#endif
}
