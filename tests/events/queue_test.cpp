#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "events/queue.hpp"
#include "support/wait.hpp"

using nk::events::BoundedQueue;
using Push = BoundedQueue<std::string>::Push;

TEST_CASE("queue of capacity 1 holds one value until the consumer releases it") {
    BoundedQueue<std::string> q(1);
    CHECK(q.capacity() == 1);
    CHECK(q.try_push("a") == Push::ok);
    CHECK(q.try_push("b") == Push::full);
    std::string out[2];
    CHECK(q.try_pop_bulk(out, 2) == 1);
    CHECK(out[0] == "a");
    // Popped but not released: still counts against capacity.
    CHECK(q.try_push("c") == Push::full);
    CHECK(q.release(1) == 0);
    CHECK(q.try_push("d") == Push::ok);
    CHECK(q.try_pop_bulk(out + 1, 1) == 1);
    CHECK(out[1] == "d");
    q.release(1);
    CHECK(q.try_pop_bulk(out, 2) == 0);
}

TEST_CASE("queue of large capacity is FIFO for one producer and refuses exactly at capacity") {
    constexpr std::size_t cap = 5000;  // not a power of two on purpose
    BoundedQueue<std::string> q(cap);
    for (std::size_t i = 0; i < cap; ++i)
        REQUIRE(q.try_push(std::to_string(i)) == Push::ok);
    CHECK(q.try_push("x") == Push::full);
    CHECK(q.held() == cap);
    std::vector<std::string> out(64);
    std::size_t next = 0;
    while (std::size_t n = q.try_pop_bulk(out.data(), out.size())) {
        for (std::size_t i = 0; i < n; ++i)
            CHECK(out[i] == std::to_string(next++));
        q.release(n);
    }
    CHECK(next == cap);
    CHECK(q.held() == 0);
}

TEST_CASE("closed queue refuses pushes and keeps what it accepted") {
    BoundedQueue<std::string> q(4);
    CHECK(q.try_push("a") == Push::ok);
    q.close();
    CHECK(q.closed());
    CHECK(q.try_push("b") == Push::closed);
    CHECK(q.try_reserve() == Push::closed);
    std::string out;
    CHECK(q.try_pop_bulk(&out, 1) == 1);
    CHECK(out == "a");
    CHECK(q.release(1) == 0);
}

TEST_CASE("queue destroys values never popped") {
    auto probe = std::make_shared<int>(1);
    {
        BoundedQueue<std::shared_ptr<int>> q(8);
        for (int i = 0; i < 5; ++i)
            REQUIRE(q.try_push(std::shared_ptr<int>(probe)) ==
                    BoundedQueue<std::shared_ptr<int>>::Push::ok);
        CHECK(probe.use_count() == 6);
    }
    CHECK(probe.use_count() == 1);
}

TEST_CASE("many producers and consumers: every accepted value is popped exactly once") {
    constexpr int producers = 4, consumers = 3, per_producer = 20000;
    BoundedQueue<int> q(256);
    std::vector<std::atomic<int>> seen(producers * per_producer);
    std::vector<std::atomic<bool>> accepted(producers * per_producer);
    std::atomic<int> producers_done{0};
    std::vector<std::thread> threads;
    for (int p = 0; p < producers; ++p) {
        threads.emplace_back([&, p] {
            for (int i = 0; i < per_producer; ++i) {
                const int id = p * per_producer + i;
                if (q.try_push(int(id)) == BoundedQueue<int>::Push::ok)
                    accepted[id] = true;
            }
            if (++producers_done == producers)
                q.close();
        });
    }
    for (int c = 0; c < consumers; ++c) {
        threads.emplace_back([&] {
            int buf[16];
            const auto done = [&] { return q.closed() && q.held() == 0; };
            for (;;) {
                const std::size_t n = q.try_pop_bulk(buf, 16);
                if (n == 0) {
                    if (done())
                        break;
                    q.wait_for_work(done);
                    continue;
                }
                for (std::size_t i = 0; i < n; ++i)
                    seen[buf[i]].fetch_add(1);
                q.release(n);
            }
        });
    }
    for (auto& t : threads)
        t.join();
    int accepted_count = 0;
    for (std::size_t id = 0; id < seen.size(); ++id) {
        REQUIRE(seen[id].load() == (accepted[id].load() ? 1 : 0));
        accepted_count += accepted[id].load();
    }
    CHECK(accepted_count > 0);
}

namespace {

// Two consumers that pop one value at a time until `stop`; counts what they took.
struct Consumers {
    BoundedQueue<std::string>& q;
    std::atomic<bool> stop{false};
    std::atomic<int> taken{0};
    std::vector<std::thread> threads;

    explicit Consumers(BoundedQueue<std::string>& queue) : q(queue) {
        for (int i = 0; i < 2; ++i) {
            threads.emplace_back([this] {
                std::string v;
                for (;;) {
                    if (q.try_pop_bulk(&v, 1) == 1) {
                        q.release(1);
                        ++taken;
                        continue;
                    }
                    if (stop)
                        return;
                    q.wait_for_work([this] { return stop.load(); });
                }
            });
        }
    }
    ~Consumers() {
        stop = true;
        q.wake_all();
        for (auto& t : threads)
            t.join();
    }
};

}  // namespace

TEST_CASE("a push while a consumer naps wakes nobody; the napper takes it") {
    BoundedQueue<std::string>::Waiting w;
    w.spin = 0;
    w.nap = std::chrono::seconds(2);  // long enough to push inside it on a loaded machine
    w.nap_backlog = 64;
    BoundedQueue<std::string> q(16, w);
    Consumers c(q);
    // One consumer naps, the other sleeps (only one naps at a time).
    REQUIRE(nk::test::wait_until([&] { return q.naps() == 1 && q.sleeps() == 1; }));
    REQUIRE(q.try_push("a") == Push::ok);
    REQUIRE(nk::test::wait_until([&] { return c.taken == 1; }));
    CHECK(q.wakes() == 0);  // the sleeper was left alone
}

TEST_CASE("a backlog during a nap wakes a sleeper") {
    BoundedQueue<std::string>::Waiting w;
    w.spin = 0;
    w.nap = std::chrono::seconds(30);  // the napper would not look before the test's deadline
    w.nap_backlog = 2;
    BoundedQueue<std::string> q(16, w);
    Consumers c(q);
    REQUIRE(nk::test::wait_until([&] { return q.naps() == 1 && q.sleeps() == 1; }));
    REQUIRE(q.try_push("a") == Push::ok);  // below the backlog: the sleeper stays asleep
    CHECK(q.wakes() == 0);
    REQUIRE(q.try_push("b") == Push::ok);  // backlog reached: wake the sleeper
    CHECK(q.wakes() == 1);
    REQUIRE(nk::test::wait_until([&] { return c.taken == 2; }));
}

TEST_CASE("an idle queue with napping enabled ends up with every consumer asleep") {
    BoundedQueue<std::string>::Waiting w;
    w.nap = std::chrono::milliseconds(1);
    BoundedQueue<std::string> q(16, w);
    Consumers c(q);
    REQUIRE(q.try_push("a") == Push::ok);
    REQUIRE(nk::test::wait_until([&] { return c.taken == 1; }));
    // The nap that finds nothing is followed by an ordinary sleep: no periodic wake-ups.
    REQUIRE(nk::test::wait_until([&] { return q.sleepers() == 2 && q.sleeps() >= 2; }));
    // A consumer counts as a sleeper a moment before it counts its sleep: let that settle.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const auto naps = q.naps();
    const auto sleeps = q.sleeps();
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(q.naps() == naps);
    CHECK(q.sleeps() == sleeps);
}

TEST_CASE("no lost wake-up: a consumer that sleeps as soon as it runs dry never misses a push") {
    // One producer pushing flat out and one consumer that neither spins nor naps: every time
    // the consumer runs dry it sleeps, so the producer's wake decisions are exercised on nearly
    // every push. A lost wake-up leaves the consumer asleep on a full queue and the producer
    // unable to push: the test then fails at its deadline instead of completing.
    BoundedQueue<std::string>::Waiting w;
    w.spin = 0;
    w.nap = std::chrono::microseconds(0);
    BoundedQueue<std::string> q(64, w);
    constexpr int total = 500000;
    std::atomic<int> taken{0};
    std::atomic<bool> stop{false};
    std::thread consumer([&] {
        std::string buf[16];
        for (;;) {
            const std::size_t n = q.try_pop_bulk(buf, 16);
            if (n > 0) {
                q.release(n);
                taken += static_cast<int>(n);
                continue;
            }
            if (stop)
                return;
            q.wait_for_work([&] { return stop.load(); });
        }
    });
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    bool stuck = false;
    for (int i = 0; i < total && !stuck; ++i) {
        while (q.try_push("x") != Push::ok) {
            if (std::chrono::steady_clock::now() > deadline) {
                stuck = true;
                break;
            }
            std::this_thread::yield();
        }
    }
    CHECK_FALSE(stuck);
    CHECK(nk::test::wait_until([&] { return taken == total || stuck; }));
    CHECK(taken == (stuck ? taken.load() : total));
    CHECK(q.sleeps() > 0);  // the consumer did go to sleep, so wake-ups were needed
    stop = true;
    q.wake_all();
    consumer.join();
}

TEST_CASE("linger returns once the wanted backlog is queued, before its time is up") {
    BoundedQueue<std::string>::Waiting w;
    w.linger = std::chrono::seconds(60);  // far beyond the check below
    BoundedQueue<std::string> q(64, w);
    std::atomic<bool> returned{false};
    std::thread consumer([&] {
        q.linger(8);
        returned = true;
    });
    for (int i = 0; i < 7; ++i)
        REQUIRE(q.try_push(std::to_string(i)) == Push::ok);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK_FALSE(returned);  // 7 of 8: still lingering
    REQUIRE(q.try_push("7") == Push::ok);
    CHECK(nk::test::wait_until([&] { return returned.load(); }));
    consumer.join();
    CHECK(q.backlog() == 8);
    std::string out[8];
    CHECK(q.try_pop_bulk(out, 8) == 8);
    CHECK(q.backlog() == 0);
}

TEST_CASE("linger with nothing coming returns when its time is up") {
    BoundedQueue<std::string>::Waiting w;
    w.linger = std::chrono::milliseconds(30);
    BoundedQueue<std::string> q(64, w);
    const auto t0 = std::chrono::steady_clock::now();
    q.linger(1);
    CHECK(std::chrono::steady_clock::now() - t0 >= std::chrono::milliseconds(30));
    CHECK(q.backlog() == 0);
}
