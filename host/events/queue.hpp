// BoundedQueue<T>: the event pipeline's buffer. Many producers, many consumers.
//
// - try_push() never blocks: it reserves one unit of capacity (one CAS on a counter that also
//   carries the "closed" bit) and writes the value into a ring cell.
// - Capacity bounds what the pipeline holds: values in the ring *plus* values a consumer has
//   popped but not yet release()d. Consumers call release(n) once they are done with n values,
//   so memory held by queued and in-flight events never exceeds `capacity`.
// - Consumers pop in batches (try_pop_bulk) and, when there is nothing to pop, sleep in
//   wait_for_work() on a futex after a short bounded spin. A producer pays one fence
//   and one load to learn whether anyone sleeps, and wakes one sleeper if so (and no earlier
//   wake is still on its way).
// - close(): later pushes and reservations fail with Push::closed; values already accepted
//   stay poppable, so consumers can drain them.
//
// Why our own ring: bench/queue compares it with Boost.Lockfree (fixed-size queue capped at
// 65535 cells, only trivially copyable values, so one heap node per event, and no blocking
// pop) and moodycamel::BlockingConcurrentQueue (slower with one producer, close with four, and
// unbounded: bounding it needs a counter like ours, and it has no close/wake-all, so drain
// would need poison pills or periodic wake-ups of idle workers). The ring is Vyukov's bounded
// MPMC array; since a reservation guarantees a free cell, a push is a plain fetch_add on the
// enqueue position. See bench/README.md "Event queue" for the figures and the follow-up.
//
// Threading: every member is thread-safe. T must be nothrow move-constructible.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <ctime>
#endif

namespace nk::events {

namespace detail {

// A full (StoreLoad) barrier. ThreadSanitizer does not model atomic_thread_fence, so under TSan
// the same ordering is obtained from acq_rel RMWs on one shared variable, which it does model.
inline void store_load_barrier() {
#if defined(__SANITIZE_THREAD__)
    static std::atomic<std::uint32_t> barrier{0};
    barrier.fetch_add(0, std::memory_order_acq_rel);
#else
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
}

inline constexpr std::size_t cache_line = 64;

// Sleep on / wake a 32-bit word. On Linux a raw futex: libstdc++ 12's std::atomic::wait spins
// with sched_yield before it sleeps, which costs CPU and defeats the eventcount (measured in
// bench/queue). Elsewhere std::atomic::wait/notify.
inline void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected) {
#if defined(__linux__)
    static_assert(sizeof(std::atomic<std::uint32_t>) == sizeof(std::uint32_t));
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
              nullptr, nullptr, 0);
#else
    word.wait(expected, std::memory_order_acquire);
#endif
}

// Like futex_wait, but returns after `timeout` at the latest.
inline void futex_wait_for(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                           std::chrono::microseconds timeout) {
#if defined(__linux__)
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(timeout);
    timespec ts{};
    ts.tv_sec = static_cast<time_t>(secs.count());
    ts.tv_nsec = static_cast<long>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(timeout - secs).count());
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT_PRIVATE, expected,
              &ts, nullptr, 0);
#else
    (void)word;
    (void)expected;
    std::this_thread::sleep_for(timeout);
#endif
}

inline void futex_wake(std::atomic<std::uint32_t>& word, bool all) {
#if defined(__linux__)
    ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE_PRIVATE,
              all ? INT32_MAX : 1, nullptr, nullptr, 0);
#else
    if (all)
        word.notify_all();
    else
        word.notify_one();
#endif
}

}  // namespace detail

template <class T>
class BoundedQueue {
    static_assert(std::is_nothrow_move_constructible_v<T>);

  public:
    enum class Push { ok, full, closed };

    // How a consumer that ran out of work waits before it sleeps until woken (each step is
    // taken by one consumer at a time; 0 skips it):
    // - `spin`: pause iterations watching for work;
    // - `nap`: a timed sleep during which producers do not wake anyone (unless `nap_backlog`
    //   values are held), so under a steady trickle of events one consumer collects them every
    //   `nap` instead of every push paying a futex wake and a context switch. A nap that finds
    //   nothing is followed by an ordinary sleep, so an idle queue costs no CPU.
    // - `linger`: see linger().
    struct Waiting {
        unsigned spin = 64;
        std::chrono::microseconds nap{100};
        std::size_t nap_backlog = 64;
        std::chrono::microseconds linger{3};
    };

    explicit BoundedQueue(std::size_t capacity) : BoundedQueue(capacity, Waiting{}) {}
    BoundedQueue(std::size_t capacity, Waiting waiting)
        : waiting_(waiting), capacity_(capacity), mask_(ring_size(capacity) - 1), cells_(new Cell[mask_ + 1]) {
        if (capacity == 0)
            throw std::invalid_argument("queue capacity must be >= 1");
        if (capacity >= closed_bit)
            throw std::invalid_argument("queue capacity too large");
        for (std::size_t i = 0; i <= mask_; ++i)
            cells_[i].seq.store(i, std::memory_order_relaxed);
    }
    ~BoundedQueue() {
        // Destroy whatever was never popped.
        std::size_t pos = dequeue_pos_.load(std::memory_order_relaxed);
        const std::size_t end = enqueue_pos_.load(std::memory_order_relaxed);
        for (; pos != end; ++pos) {
            Cell& c = cells_[pos & mask_];
            if (c.seq.load(std::memory_order_relaxed) == pos + 1)
                c.value()->~T();
        }
    }
    BoundedQueue(const BoundedQueue&) = delete;
    BoundedQueue& operator=(const BoundedQueue&) = delete;

    // Reserves one unit of capacity for a later push_reserved() (or a value kept elsewhere that
    // still counts against capacity until release()). Never blocks.
    Push try_reserve() {
        std::uint64_t cur = held_.load(std::memory_order_relaxed);
        for (;;) {
            if (cur & closed_bit)
                return Push::closed;
            if (cur >= capacity_)
                return Push::full;
            if (held_.compare_exchange_weak(cur, cur + 1, std::memory_order_acquire,
                                            std::memory_order_relaxed)) {
                return Push::ok;
            }
        }
    }

    // Pushes a value whose capacity try_reserve() already granted. Never fails.
    void push_reserved(T&& value) {
        const std::size_t pos = enqueue_pos_.fetch_add(1, std::memory_order_relaxed);
        Cell& c = cells_[pos & mask_];
        // The reservation guarantees the consumer of (pos - ring size) has left this cell: its
        // release() happened before our try_reserve(). Spin only as a defence.
        while (c.seq.load(std::memory_order_acquire) != pos)
            std::this_thread::yield();
        ::new (c.storage) T(std::move(value));
        c.seq.store(pos + 1, std::memory_order_release);
        wake_one_sleeper();
    }

    Push try_push(T&& value) {
        const Push r = try_reserve();
        if (r == Push::ok)
            push_reserved(std::move(value));
        return r;
    }

    // Moves up to `max` values into out[0..n). Returns n (0 when nothing is ready). The caller
    // must release(n) once done with them.
    std::size_t try_pop_bulk(T* out, std::size_t max) {
        std::size_t n = 0;
        std::size_t pos = dequeue_pos_.load(std::memory_order_relaxed);
        while (n < max) {
            Cell& c = cells_[pos & mask_];
            const std::size_t seq = c.seq.load(std::memory_order_acquire);
            const auto diff = static_cast<std::ptrdiff_t>(seq - (pos + 1));
            if (diff == 0) {
                if (dequeue_pos_.compare_exchange_weak(pos, pos + 1, std::memory_order_relaxed)) {
                    T* v = c.value();
                    ::new (static_cast<void*>(out + n)) T(std::move(*v));
                    v->~T();
                    c.seq.store(pos + mask_ + 1, std::memory_order_release);
                    ++n;
                    ++pos;
                }
                // On CAS failure `pos` was reloaded: retry there.
            } else if (diff < 0) {
                break;  // empty (or the producer of this cell has not finished writing)
            } else {
                pos = dequeue_pos_.load(std::memory_order_relaxed);
            }
        }
        return n;
    }

    // Gives back capacity for n values a consumer popped (or reserved) and is done with.
    // Returns the number still held afterwards.
    std::size_t release(std::size_t n) {
        const std::uint64_t after = held_.fetch_sub(n, std::memory_order_release) - n;
        if (after == closed_bit)
            wake_all();  // closed and fully drained: let every sleeper out
        return static_cast<std::size_t>(after & ~closed_bit);
    }

    // True when a value is ready to pop (a snapshot).
    bool has_ready() const {
        const std::size_t pos = dequeue_pos_.load(std::memory_order_relaxed);
        return cells_[pos & mask_].seq.load(std::memory_order_acquire) == pos + 1;
    }

    // Sleeps until a value may be ready, or wake_all() is called. Returns at once when a value
    // is ready, or when `done()` (checked after registering as a sleeper) says so. No spinning.
    template <class Done>
    void wait_for_work(Done&& done) {
        // A short, bounded spin first: when producers are just a little slower than consumers,
        // it saves a futex sleep + wake (two syscalls and a context switch) per event. It only
        // runs right after a consumer ran out of work, so an idle queue still costs no CPU.
        // The spin watches the positions, not the cell: reading the cell line while the producer
        // writes the value into it would bounce that line on every store.
        // Only one consumer spins at a time: more spinners would only take CPU from producers.
        const auto ready = [&] { return (maybe_ready() && has_ready()) || done(); };
        if (waiting_.spin > 0 && !spinning_.exchange(true, std::memory_order_acquire)) {
            bool found = false;
            for (unsigned i = 0; i < waiting_.spin && !found; ++i) {
                found = ready();
                if (!found)
                    cpu_relax();
            }
            spinning_.store(false, std::memory_order_release);
            if (found)
                return;
        }
        // One napper at a time. Producers that see it skip their wake (below a backlog), so the
        // exit clears the flag, then a full barrier, then a look at the ring: a push whose
        // producer saw the flag set (its cell write, barrier, flag read) is visible here
        // (Dekker, as for waiters_).
        if (waiting_.nap.count() > 0 && !napping_.exchange(true, std::memory_order_acq_rel)) {
            naps_.fetch_add(1, std::memory_order_relaxed);
            const std::uint32_t key = epoch_.load(std::memory_order_acquire);
            if (!ready())
                detail::futex_wait_for(epoch_, key, waiting_.nap);
            napping_.exchange(false, std::memory_order_acq_rel);
            detail::store_load_barrier();  // the clear before the look at the ring (Dekker)
            if (ready())
                return;
        }
        waiters_.fetch_add(1, std::memory_order_relaxed);
        detail::store_load_barrier();
        // The key is read before wake_pending_ is cleared. A producer may set the flag late (it
        // read waiters_ while we were still registered from an earlier wait) and bump the epoch
        // before our key read: that wake cannot reach us. Clearing after the key read means
        // such a stale flag never makes later producers skip the wake we need; a set that lands
        // after our clear is followed by a bump after our key read, which ends our wait.
        const std::uint32_t key = epoch_.load(std::memory_order_acquire);
        // Every registration and every exit clears wake_pending_ with an RMW. A producer that
        // skipped its wake because a wake was pending did an RMW on the flag after its push; our
        // clear reads that write (or a later one), so its value is visible to has_ready() below or
        // to our next pop.
        wake_pending_.exchange(false, std::memory_order_acq_rel);
        if (!has_ready() && !done()) {
            sleeps_.fetch_add(1, std::memory_order_relaxed);
            while (epoch_.load(std::memory_order_acquire) == key)
                detail::futex_wait(epoch_, key);
        }
        waiters_.fetch_sub(1, std::memory_order_relaxed);
        // The wake in flight has reached a consumer: later pushes may wake another. acq_rel, so
        // the pushes of producers that skipped their wake because of it are visible to our pop.
        wake_pending_.exchange(false, std::memory_order_acq_rel);
    }

    // For a consumer whose pops keep finding a few values: spins until `want` values are
    // queued, or for at most `Waiting::linger`, so that its next pop takes a batch.
    //
    // Without it, a consumer that is faster than the producers chases them one or two values at
    // a time. Each pop then pulls cell lines the producer has just written and returns
    // capacity on a counter every push updates, so both sides pay a cross-core cache miss per
    // value. bench/queue measured one producer at about 4 M values/s that way, and at 12 to 20 M
    // with a linger of a few microseconds. Call it only while values keep coming (the previous
    // pop found some too, and producers claimed more since, see enqueued()): at lower rates
    // nothing arrives between two pops, and lingering would only delay the values by spinning.
    void linger(std::size_t want) {
        spin_until(waiting_.linger, [&] { return backlog() >= want; });
    }

    // Spins until `ready()` or `limit` has passed (at once when `limit` is not positive). A few
    // pauses go between looks: a look usually reads a line other threads write all the time.
    // Also serves consumers of other queues that want the same linger (bench/queue).
    template <class Ready>
    static void spin_until(std::chrono::microseconds limit, Ready&& ready) {
        if (limit.count() <= 0)
            return;
        const auto deadline = std::chrono::steady_clock::now() + limit;
        for (;;) {
            for (unsigned i = 0; i < 16; ++i)
                cpu_relax();
            if (ready() || std::chrono::steady_clock::now() >= deadline)
                return;
        }
    }

    // For a consumer that just took a batch: when more is ready and someone sleeps, wake one
    // more consumer, so a burst fans out over the workers without waiting for producers.
    void wake_helper_if_ready() {
        if (has_ready())
            wake_one_sleeper();
    }

    // Refuses every later push; values already accepted stay poppable.
    void close() {
        held_.fetch_or(closed_bit, std::memory_order_acq_rel);
        wake_all();
    }
    bool closed() const { return (held_.load(std::memory_order_acquire) & closed_bit) != 0; }

    void wake_all() {
        epoch_.fetch_add(1, std::memory_order_release);
        detail::futex_wake(epoch_, true);
    }

    std::size_t capacity() const { return capacity_; }
    // Values queued plus popped-but-not-released (plus reservations).
    std::size_t held() const {
        return static_cast<std::size_t>(held_.load(std::memory_order_acquire) & ~closed_bit);
    }
    // Consumers currently inside wait_for_work().
    std::uint32_t sleepers() const { return waiters_.load(std::memory_order_relaxed); }
    // How many times a consumer went to sleep, and how many times a producer woke one.
    std::uint64_t sleeps() const { return sleeps_.load(std::memory_order_relaxed); }
    std::uint64_t wakes() const { return wakes_.load(std::memory_order_relaxed); }
    std::uint64_t naps() const { return naps_.load(std::memory_order_relaxed); }

    // Positions producers have claimed so far (a running count of pushes, wrapping).
    std::size_t enqueued() const { return enqueue_pos_.load(std::memory_order_relaxed); }

    // Values claimed by producers (perhaps not yet written) and not yet taken by consumers.
    std::size_t backlog() const {
        const std::size_t deq = dequeue_pos_.load(std::memory_order_relaxed);
        const std::size_t enq = enqueue_pos_.load(std::memory_order_relaxed);
        return enq >= deq ? enq - deq : 0;
    }

    // A value was claimed (perhaps not yet written) beyond the consumers' position.
    bool maybe_ready() const { return backlog() > 0; }


  private:
    static void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }

    static constexpr std::uint64_t closed_bit = std::uint64_t{1} << 62;

    struct alignas(detail::cache_line) Cell {
        std::atomic<std::size_t> seq;
        alignas(T) unsigned char storage[sizeof(T)];
        T* value() { return std::launder(reinterpret_cast<T*>(storage)); }
    };

    // Vyukov's ring needs at least 2 cells to tell full from empty; capacity is enforced by
    // held_, so the ring may be larger than the capacity.
    static std::size_t ring_size(std::size_t capacity) {
        std::size_t n = 2;
        while (n < capacity)
            n <<= 1;
        return n;
    }

    // Wakes one sleeping consumer unless a wake is already in flight: a woken consumer that the
    // scheduler has not run yet still counts as a waiter, and waking again for every push
    // until it runs would turn each push into a futex syscall on a busy machine.
    void wake_one_sleeper() {
        detail::store_load_barrier();  // our cell write before the waiters_ read (Dekker)
        if (waiters_.load(std::memory_order_relaxed) == 0)
            return;
        // A napping consumer will look soon: leave the sleepers alone unless a backlog builds.
        if (napping_.load(std::memory_order_relaxed) &&
            (held_.load(std::memory_order_relaxed) & ~closed_bit) < waiting_.nap_backlog) {
            return;
        }
        // An RMW, not a load: a consumer's later clear must read it (see wait_for_work).
        if (wake_pending_.exchange(true, std::memory_order_acq_rel))
            return;
        wakes_.fetch_add(1, std::memory_order_relaxed);
        epoch_.fetch_add(1, std::memory_order_release);
        detail::futex_wake(epoch_, false);
    }

    const Waiting waiting_;
    const std::size_t capacity_;
    const std::size_t mask_;
    std::unique_ptr<Cell[]> cells_;

    alignas(detail::cache_line) std::atomic<std::uint64_t> held_{0};
    alignas(detail::cache_line) std::atomic<std::size_t> enqueue_pos_{0};
    alignas(detail::cache_line) std::atomic<std::size_t> dequeue_pos_{0};
    alignas(detail::cache_line) std::atomic<std::uint32_t> waiters_{0};
    std::atomic<std::uint32_t> epoch_{0};
    std::atomic<bool> wake_pending_{false};
    // Consumers flip these each time they run dry: kept off the line producers read per push.
    alignas(detail::cache_line) std::atomic<bool> spinning_{false};
    std::atomic<bool> napping_{false};
    alignas(detail::cache_line) std::atomic<std::uint64_t> sleeps_{0};
    std::atomic<std::uint64_t> wakes_{0};
    std::atomic<std::uint64_t> naps_{0};
};

}  // namespace nk::events
