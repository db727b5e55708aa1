#include <doctest/doctest.h>

#include <atomic>
#include <functional>
#include <thread>
#include <vector>

#include "core/blocking_pool.hpp"
#include "support/wait.hpp"

TEST_CASE("blocking pool runs every posted task before stop returns") {
    std::atomic<int> ran{0};
    nk::BlockingPool pool(4);
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p)
        producers.emplace_back([&] {
            for (int i = 0; i < 1000; ++i) CHECK(pool.post([&] { ran.fetch_add(1); }));
        });
    for (auto& t : producers) t.join();
    pool.stop();
    CHECK(ran.load() == 4000);
    CHECK_FALSE(pool.post([] {}));
}

namespace {

nk::BlockingPool::Job job(std::function<void()> run, std::size_t bytes = 0,
                          nk::BlockingPool::Lane lane = nk::BlockingPool::Lane::general) {
    nk::BlockingPool::Job j;
    j.run = std::move(run);
    j.bytes = bytes;
    j.lane = lane;
    return j;
}

using Posted = nk::BlockingPool::Posted;
using nk::test::Gate;
using nk::test::wait_until;

// Occupies `n` workers until `gate` opens, so what is posted next stays queued.
void hold_workers(nk::BlockingPool& pool, Gate& gate, int n) {
    for (int i = 0; i < n; ++i) REQUIRE(pool.post(job([&gate] { gate.wait(); })) == Posted::accepted);
    REQUIRE(wait_until([&] { return gate.waiting() >= n; }));
}

}  // namespace

TEST_CASE("blocking pool refuses jobs over the queue count") {
    Gate gate;
    nk::BlockingPool::Options o;
    o.threads = 2;
    o.max_queued = 3;
    nk::BlockingPool pool(o);
    std::atomic<int> ran{0};
    hold_workers(pool, gate, 2);
    for (int i = 0; i < 3; ++i) CHECK(pool.post(job([&] { ran++; })) == Posted::accepted);
    CHECK(pool.post(job([&] { ran++; })) == Posted::queue_full);
    CHECK_FALSE(pool.post([&] { ran++; }));
    CHECK(pool.queued(nk::BlockingPool::Lane::general) == 3);
    gate.open();
    pool.stop();
    CHECK(ran.load() == 3);
}

TEST_CASE("blocking pool refuses jobs over the queued bytes, but never starves a lone big job") {
    nk::BlockingPool::Options o;
    o.threads = 1;
    o.max_queued_bytes = 100;
    // Posts jobs of `sizes` bytes behind a busy worker; how many ran once it is released.
    auto run_sizes = [&](std::vector<std::size_t> sizes, std::vector<Posted> expected) {
        Gate gate;
        nk::BlockingPool pool(o);
        std::atomic<int> ran{0};
        hold_workers(pool, gate, 1);
        for (std::size_t i = 0; i < sizes.size(); ++i)
            CHECK(pool.post(job([&] { ran++; }, sizes[i])) == expected[i]);
        gate.open();
        pool.stop();
        return ran.load();
    };
    // Alone in the queue a job over the budget is taken; nothing joins it.
    CHECK(run_sizes({500, 1}, {Posted::accepted, Posted::queue_bytes_full}) == 1);
    // Exactly the budget fits; one byte more does not.
    CHECK(run_sizes({60, 40, 1}, {Posted::accepted, Posted::accepted, Posted::queue_bytes_full}) == 2);
}

TEST_CASE("blocking pool drops abandoned jobs unrun, and makes room with them when full") {
    Gate gate;
    nk::BlockingPool::Options o;
    o.threads = 1;
    o.max_queued = 2;
    nk::BlockingPool pool(o);
    std::atomic<bool> gone{false};
    std::atomic<int> ran{0};
    std::atomic<int> dropped{0};
    auto abandonable = [&] {
        auto j = job([&] { ran++; }, 10);
        j.abandoned = [&] { return gone.load(); };
        j.on_drop = [&] { dropped++; };
        return j;
    };
    hold_workers(pool, gate, 1);
    CHECK(pool.post(abandonable()) == Posted::accepted);
    CHECK(pool.post(abandonable()) == Posted::accepted);
    CHECK(pool.post(job([&] { ran++; })) == Posted::queue_full);
    gone = true;
    // Full again, but of abandoned work: it is dropped to make room for live work.
    CHECK(pool.post(job([&] { ran++; })) == Posted::accepted);
    CHECK(dropped.load() == 2);
    CHECK(pool.post(abandonable()) == Posted::accepted);  // dropped when a worker reaches it
    gate.open();
    pool.stop();
    CHECK(ran.load() == 1);
    CHECK(dropped.load() == 3);
}

TEST_CASE("password jobs run on at most password_threads workers; the others keep serving") {
    Gate gate;
    nk::BlockingPool::Options o;
    o.threads = 3;
    o.password_threads = 1;
    nk::BlockingPool pool(o);
    CHECK(pool.password_threads() == 1);
    std::atomic<int> password_running{0};
    std::atomic<int> password_max{0};
    std::atomic<int> general_ran{0};
    auto password = [&] {
        return job(
            [&] {
                int now = ++password_running;
                int seen = password_max.load();
                while (now > seen && !password_max.compare_exchange_weak(seen, now)) {
                }
                gate.wait();
                --password_running;
            },
            0, nk::BlockingPool::Lane::password);
    };
    for (int i = 0; i < 4; ++i) CHECK(pool.post(password()) == Posted::accepted);
    REQUIRE(wait_until([&] { return gate.waiting() >= 1; }));
    // Three password jobs wait for the one slot; general work still runs on the other workers.
    for (int i = 0; i < 50; ++i) CHECK(pool.post(job([&] { general_ran++; })) == Posted::accepted);
    REQUIRE(wait_until([&] { return general_ran.load() == 50; }));
    CHECK(gate.waiting() == 1);
    CHECK(pool.queued(nk::BlockingPool::Lane::password) == 3);
    gate.open();
    pool.stop();
    CHECK(password_max.load() == 1);
    CHECK(pool.queued(nk::BlockingPool::Lane::password) == 0);
}

TEST_CASE("stop_within: queued jobs still run; a job that does not return in time is reported") {
    nk::BlockingPool pool(2);
    std::atomic<int> ran{0};
    std::atomic<bool> release{false};
    std::atomic<bool> blocked{false};
    REQUIRE(pool.post([&] {
        blocked = true;
        while (!release.load())
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }));
    REQUIRE(wait_until([&] { return blocked.load(); }));
    for (int i = 0; i < 5; ++i)
        REQUIRE(pool.post([&] { ran.fetch_add(1); }));
    CHECK(pool.stop_within(std::chrono::milliseconds(200)) == 1);  // the blocked one
    CHECK(ran == 5);                                                // the other worker ran them
    CHECK_FALSE(pool.post([] {}));                                  // stopping: refused
    release = true;
    CHECK(pool.stop_within(std::chrono::seconds(30)) == 0);
}
