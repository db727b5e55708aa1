// Event queue + dispatch throughput, in process: producers push Events, consumer threads pop
// them in batches and run a trivial handler from a HandlerSet snapshot. Compares our ring
// (events/queue.hpp) with Boost.Lockfree and moodycamel::BlockingConcurrentQueue under the same
// contract (bounded, push never blocks, idle consumers sleep), then runs the real EventPipeline.
// Producers retry on "full" so every event is handled; the figure is handled events per second.
// Every candidate's consumers follow the pipeline's policy: after a small batch taken while
// events keep coming, linger up to 3 us for a batch to build (BoundedQueue::linger); one row
// runs our ring without it, to show what it is worth.
// Prints medians of `runs` runs and ratios against the ring measured in the same invocation.
//
// usage: bench_event_queue [events_per_run=2000000] [runs=3] [consumers=2]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/lockfree/queue.hpp>
#include <spdlog/spdlog.h>

#if NK_HAVE_CONCURRENTQUEUE
#include <concurrentqueue/blockingconcurrentqueue.h>
#endif

#include "events/pipeline.hpp"
#include "events/queue.hpp"

using namespace nk::events;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t batch = 64;
constexpr std::size_t linger_below = 16;

// The consumers' linger for candidates other than our ring, with the ring's own spin and the
// pipeline's default time: spin until `ready()` or the time is up.
template <class Ready>
void linger(Ready ready) {
    BoundedQueue<Event>::spin_until(std::chrono::microseconds(Options{}.worker_linger_us), ready);
}

// Whether a consumer lingers after this pop: it found a few values, and so did the previous one.
struct Streaming {
    bool previous = false;
    bool after(std::size_t n) {
        const bool keep_up = previous && n > 0 && n < linger_below;
        previous = n > 0;
        return keep_up;
    }
};

std::atomic<std::uint64_t> handled_total{0};

HandlerSet trivial_handlers() {
    HandlerSet set;
    set.custom.push_back([](const Event& e) {
        if (!e.name.empty())
            handled_total.fetch_add(0, std::memory_order_relaxed);
    });
    return set;
}

Event make_event() {
    Event e;
    e.name = "bench";
    return e;
}

// Sleep/wake for queues without a blocking pop (Boost.Lockfree): an eventcount like ours, on a
// mutex + condition variable, so the comparison is about the queue, not about spinning.
class Sleepers {
  public:
    void notify() {
        std::atomic_thread_fence(std::memory_order_seq_cst);
        if (waiters_.load(std::memory_order_relaxed) == 0)
            return;
        std::lock_guard lock(m_);
        ++epoch_;
        cv_.notify_one();
    }
    template <class Ready>
    void wait(Ready ready) {
        std::unique_lock lock(m_);
        waiters_.fetch_add(1, std::memory_order_relaxed);
        std::atomic_thread_fence(std::memory_order_seq_cst);
        const std::uint64_t e = epoch_;
        if (!ready())
            cv_.wait(lock, [&] { return epoch_ != e; });
        waiters_.fetch_sub(1, std::memory_order_relaxed);
    }
    void notify_all() {
        std::lock_guard lock(m_);
        ++epoch_;
        cv_.notify_all();
    }

  private:
    std::atomic<std::uint32_t> waiters_{0};
    std::mutex m_;
    std::condition_variable cv_;
    std::uint64_t epoch_ = 0;
};

// --- candidates: try_push (never blocks) and a consumer loop -------------------------------

template <bool Linger>
struct RingCandidate {
    static constexpr const char* name = Linger ? "own ring (Vyukov + futex eventcount)"
                                               : "own ring, consumers chase (no linger)";
    BoundedQueue<Event> q{65536};
    bool try_push(Event&& e) { return q.try_push(std::move(e)) == BoundedQueue<Event>::Push::ok; }
    template <class Fn>
    void consume(std::atomic<bool>& stop, Fn&& fn) {
        auto* buf = static_cast<Event*>(::operator new(batch * sizeof(Event)));
        Streaming streaming;
        for (;;) {
            const std::size_t n = q.try_pop_bulk(buf, batch);
            const bool keep_up = streaming.after(n);
            if (n == 0) {
                if (stop.load())
                    break;
                q.wait_for_work([&] { return stop.load(); });
                continue;
            }
            fn(buf, n);
            std::destroy_n(buf, n);
            q.release(n);
            if (Linger && keep_up)
                q.linger(linger_below);
        }
        ::operator delete(buf);
    }
    void finish() { q.wake_all(); }
};

struct BoostCandidate {
    static constexpr const char* name = "Boost.Lockfree queue (65534, Event* nodes)";
    boost::lockfree::queue<Event*, boost::lockfree::fixed_sized<true>,
                           boost::lockfree::capacity<65534>>
        q;
    Sleepers sleepers;
    bool try_push(Event&& e) {
        auto* p = new Event(std::move(e));
        if (!q.bounded_push(p)) {
            e = std::move(*p);
            delete p;
            return false;
        }
        sleepers.notify();
        return true;
    }
    template <class Fn>
    void consume(std::atomic<bool>& stop, Fn&& fn) {
        Event* ptrs[batch];
        auto* buf = static_cast<Event*>(::operator new(batch * sizeof(Event)));
        Streaming streaming;
        for (;;) {
            std::size_t n = 0;
            while (n < batch && q.pop(ptrs[n]))
                ++n;
            const bool keep_up = streaming.after(n);
            if (n == 0) {
                if (stop.load())
                    break;
                sleepers.wait([&] { return stop.load() || !q.empty(); });
                continue;
            }
            for (std::size_t i = 0; i < n; ++i) {
                new (buf + i) Event(std::move(*ptrs[i]));
                delete ptrs[i];
            }
            fn(buf, n);
            std::destroy_n(buf, n);
            if (keep_up)  // no size query: waits out the time
                linger([] { return false; });
        }
        ::operator delete(buf);
    }
    void finish() { sleepers.notify_all(); }
};

#if NK_HAVE_CONCURRENTQUEUE
struct MoodycamelCandidate {
    static constexpr const char* name = "moodycamel BlockingConcurrentQueue + counter";
    moodycamel::BlockingConcurrentQueue<Event> q{65536};
    std::atomic<std::size_t> held{0};  // the bound it lacks
    bool try_push(Event&& e) {
        std::size_t cur = held.load(std::memory_order_relaxed);
        do {
            if (cur >= 65536)
                return false;
        } while (!held.compare_exchange_weak(cur, cur + 1, std::memory_order_acquire));
        q.enqueue(std::move(e));
        return true;
    }
    template <class Fn>
    void consume(std::atomic<bool>& stop, Fn&& fn) {
        std::vector<Event> buf(batch);
        Streaming streaming;
        for (;;) {
            const std::size_t n =
                q.wait_dequeue_bulk_timed(buf.begin(), batch, std::chrono::milliseconds(10));
            const bool keep_up = streaming.after(n);
            if (n == 0) {
                if (stop.load() && q.size_approx() == 0)
                    break;
                continue;
            }
            fn(buf.data(), n);
            held.fetch_sub(n, std::memory_order_release);
            if (keep_up)
                linger([&] { return q.size_approx() >= linger_below; });
        }
    }
    void finish() {}
};
#endif

// Runs `events` through a candidate with `producers` and `consumers`; returns events/s.
template <class Candidate>
double run_candidate(std::size_t events, unsigned producers, unsigned consumers) {
    auto c = std::make_unique<Candidate>();
    StaticHandlerSource source(trivial_handlers());
    std::atomic<std::uint64_t> done{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> threads;
    for (unsigned i = 0; i < consumers; ++i) {
        threads.emplace_back([&] {
            // The snapshot is loaded once per consumer, as the pipeline's workers keep theirs
            // between batches.
            const auto set = source.handlers();
            c->consume(stop, [&](Event* evs, std::size_t n) {
                for (std::size_t k = 0; k < n; ++k) {
                    for (const auto& h : set->for_kind(evs[k].kind))
                        h(evs[k]);
                }
                done.fetch_add(n, std::memory_order_relaxed);
            });
        });
    }
    const auto t0 = Clock::now();
    std::vector<std::thread> prod;
    for (unsigned p = 0; p < producers; ++p) {
        prod.emplace_back([&, p] {
            const std::size_t mine = events / producers + (p < events % producers ? 1 : 0);
            for (std::size_t i = 0; i < mine; ++i) {
                Event e = make_event();
                while (!c->try_push(std::move(e)))
                    std::this_thread::yield();
            }
        });
    }
    for (auto& t : prod)
        t.join();
    while (done.load(std::memory_order_relaxed) < events)
        std::this_thread::yield();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    stop = true;
    c->finish();
    for (auto& t : threads)
        t.join();
    return static_cast<double>(events) / secs;
}

// The real EventPipeline (submit + metrics + dispatch), policy reject so producers can retry.
double run_pipeline(std::size_t events, unsigned producers, unsigned workers,
                    std::uint32_t linger_us = Options{}.worker_linger_us) {
    StaticHandlerSource source(trivial_handlers());
    Options o;
    o.workers = workers;
    o.worker_linger_us = linger_us;
    o.full_policy = FullPolicy::reject;
    EventPipeline p(o, source, nullptr);
    p.start();
    const auto t0 = Clock::now();
    std::vector<std::thread> prod;
    for (unsigned i = 0; i < producers; ++i) {
        prod.emplace_back([&, i] {
            const std::size_t mine = events / producers + (i < events % producers ? 1 : 0);
            for (std::size_t k = 0; k < mine; ++k) {
                while (p.submit(make_event()) != SubmitResult::accepted)
                    std::this_thread::yield();
            }
        });
    }
    for (auto& t : prod)
        t.join();
    while (p.stats().processed < events)
        std::this_thread::yield();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    p.drain(std::chrono::seconds(10));
    return static_cast<double>(events) / secs;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

template <class F>
double measure(unsigned runs, F f) {
    std::vector<double> r;
    for (unsigned i = 0; i < runs; ++i)
        r.push_back(f());
    return median(r);
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t events = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 2'000'000;
    const unsigned runs = argc > 2 ? static_cast<unsigned>(std::atoi(argv[2])) : 3;
    const unsigned consumers = argc > 3 ? static_cast<unsigned>(std::atoi(argv[3])) : 2;
    const unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    spdlog::set_level(spdlog::level::warn);  // one "started" line per pipeline run otherwise
    std::printf(
        "event queue + dispatch, %zu events/run, median of %u runs, %u consumers, %u cpus\n",
        events, runs, consumers, hw);
    for (unsigned producers : {1u, 4u}) {
        std::printf("\n%u producer(s)\n", producers);
        const double ring = measure(
            runs, [&] { return run_candidate<RingCandidate<true>>(events, producers, consumers); });
        std::printf("  %-50s %8.2f M events/s  1.00x\n", RingCandidate<true>::name, ring / 1e6);
        const double chase = measure(
            runs, [&] { return run_candidate<RingCandidate<false>>(events, producers, consumers); });
        std::printf("  %-50s %8.2f M events/s  %.2fx\n", RingCandidate<false>::name, chase / 1e6,
                    chase / ring);
        const double boost = measure(
            runs, [&] { return run_candidate<BoostCandidate>(events, producers, consumers); });
        std::printf("  %-50s %8.2f M events/s  %.2fx\n", BoostCandidate::name, boost / 1e6,
                    boost / ring);
#if NK_HAVE_CONCURRENTQUEUE
        const double mc = measure(
            runs, [&] { return run_candidate<MoodycamelCandidate>(events, producers, consumers); });
        std::printf("  %-50s %8.2f M events/s  %.2fx\n", MoodycamelCandidate::name, mc / 1e6,
                    mc / ring);
#endif
        const double pipe =
            measure(runs, [&] { return run_pipeline(events, producers, consumers); });
        std::printf("  %-50s %8.2f M events/s  %.2fx\n", "EventPipeline (ring + metrics + submit)",
                    pipe / 1e6, pipe / ring);
        const double pipe8 = measure(runs, [&] { return run_pipeline(events, producers, 8); });
        std::printf("  %-50s %8.2f M events/s  %.2fx\n", "EventPipeline, 8 workers (default)",
                    pipe8 / 1e6, pipe8 / ring);
        const double pipe0 =
            measure(runs, [&] { return run_pipeline(events, producers, consumers, 0); });
        std::printf("  %-50s %8.2f M events/s  %.2fx\n", "EventPipeline, worker_linger_us=0",
                    pipe0 / 1e6, pipe0 / ring);
    }
    return 0;
}
