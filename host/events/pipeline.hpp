// EventPipeline: the bounded event queue plus the worker pool that feeds handlers.
//
// Producers (POST /v2/event on io threads, realtime sessions, plugins' nk.event) call submit():
// thread-safe, never blocks. An event of a kind with no registered handler is accepted and
// dropped on the spot (Nakama's no-op). The queue is full when it holds `queue_size` events or
// when the events it holds (queued, parked or being handled) count `queue_max_bytes` bytes
// (footprint(); an event that would cross the budget is refused unless nothing is held, so one
// event larger than the budget still goes through alone). Either way the policy decides: drop
// (counted, warned at most once a second with the number dropped since the last warning) or
// reject (the caller answers 503). The byte budget costs a producer one relaxed atomic add (and
// a subtract when refused); a worker gives a batch's bytes back with one subtract.
//
// Memory after a flood: the allocator keeps what the handled events freed (glibc: in the
// producers' per-thread arenas). When the queue drains to empty after holding at least
// `trim_after_bytes`, the worker that emptied it calls malloc_trim(0) (at most once a second;
// off the producers' path). It returns only whole free pages: the byte budget is what bounds
// the peak (bench/events_rss has the figures). With trim_after_bytes > 0 the first pipeline
// also turns glibc's fastbins off for the process (mallopt(M_MXFAST, 0)): small blocks freed
// into fastbins stay marked in use, keep the large ones between them from merging, and leave
// what malloc_trim consolidates in a per-thread arena's top chunk, which it does not release
// (events of ~4-60 KB stayed resident; see pipeline.cpp).
//
// `workers` threads pop events in batches and run, for each event, every handler of its kind in
// registration order, holding one HandlerSource snapshot for the batch. A handler that throws is
// contained: counted (event_handler_errors), logged at most once a second, and the other handlers
// and events run as usual. Idle workers sleep on a futex; a producer wakes one only if one sleeps.
// A worker whose pops keep finding only a few events lingers briefly (Options::worker_linger_us)
// so that it takes them in batches rather than chasing the producers.
//
// Ordering: for one session (RequestContext::session_id), session_end handlers run only after
// the session_start handlers of that session returned, whatever the number of workers. An end
// that arrives while its start is still queued or running is parked beside the start (it still
// counts against capacity) and run by the worker that finishes the start.
//
// Lifecycle: construct, start(), submit()..., drain(grace) (also called by the destructor with
// no grace). drain() stops accepting (later submits return shut_down), lets the workers finish
// every event already accepted until `grace` runs out, and returns the number of accepted
// events that were not handled in time (also logged). Handlers still running at the deadline
// finish their current call; the destructor joins the workers (running_workers() tells whether
// any is still inside a handler that never returns).
//
// Metrics (names get the registry's prefix): events_received {kind} (events offered to the
// queue, i.e. of kinds with at least one handler: once fully drained, received == processed +
// dropped + rejected), events_processed / events_dropped / events_rejected {kind},
// dropped_events (Nakama's name), event_queue_bytes_full (events refused by the byte budget,
// also counted as dropped or rejected), event_queue_depth, event_queue_capacity,
// event_queue_bytes, event_queue_max_bytes, event_queue_memory_trims,
// event_handler_latency_ms (the calls of one event in 16 are timed), event_handler_errors,
// event_drain_unhandled. With a null registry the pipeline keeps a private one (stats() still
// works).
#pragma once

#include <array>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "events/event.hpp"
#include "events/handlers.hpp"
#include "events/options.hpp"
#include "events/queue.hpp"

namespace nk::metrics {
class Registry;
class Counter;
class Gauge;
class Histogram;
}  // namespace nk::metrics

namespace nk::events {

std::string_view kind_name(Kind k);

class EventPipeline final : public EventSink {
  public:
    // Throws std::invalid_argument when queue_size or workers is 0. `handlers` and `registry`
    // must outlive the pipeline.
    EventPipeline(const Options& options, HandlerSource& handlers, metrics::Registry* registry);
    ~EventPipeline() override;
    EventPipeline(const EventPipeline&) = delete;
    EventPipeline& operator=(const EventPipeline&) = delete;

    // Starts the workers. Events submitted before start() wait in the queue.
    void start();

    SubmitResult submit(Event&& event) override;

    // Stops accepting, waits up to `grace` for every accepted event to be handled, returns the
    // number that were not. Idempotent (a second call returns 0).
    std::size_t drain(std::chrono::milliseconds grace);
    // After drain(): waits up to `wait` for the workers to exit and returns how many have not
    // (each is inside a handler call that has not returned). The destructor joins the workers,
    // so a caller that gets a non-zero answer must not destroy the pipeline (the process exits
    // instead: see main.cpp).
    unsigned running_workers(std::chrono::milliseconds wait);

    // Call after the HandlerSource published a new snapshot: wakes every idle worker so it
    // drops the snapshot it kept (and with it the last reference to retired handlers).
    void handlers_changed();

    FullPolicy full_policy() const { return options_.full_policy; }
    std::uint32_t retry_after_sec() const { return options_.reject_retry_after_sec; }

    // Counters for tests, tools and the bench (sums over kinds).
    struct Stats {
        std::uint64_t received = 0;
        std::uint64_t processed = 0;
        std::uint64_t dropped = 0;
        std::uint64_t rejected = 0;
        std::uint64_t handler_errors = 0;
        std::size_t depth = 0;  // queued + in flight
        std::size_t bytes = 0;  // footprint() of the events held (queued + in flight)
        std::uint64_t bytes_full = 0;  // events refused by the byte budget
        std::uint64_t memory_trims = 0;
        std::uint32_t sleeping_workers = 0;
        std::uint64_t worker_sleeps = 0;  // times a worker went to sleep
        std::uint64_t worker_wakes = 0;   // times a producer woke a sleeping worker
    };
    Stats stats() const;

  private:
    struct KindMetrics {
        metrics::Counter* received;
        metrics::Counter* processed;
        metrics::Counter* dropped;
        metrics::Counter* rejected;
    };
    // Sessions whose session_start is queued or running, and the session_end parked behind it.
    struct PendingSession {
        std::uint32_t starts = 0;
        std::vector<Event> parked_ends;
    };
    struct SessionShard {
        std::mutex mutex;
        std::unordered_map<std::string, PendingSession> sessions;
    };
    static constexpr std::size_t session_shards = 16;

    enum class Admit { ok, full, bytes_full, closed };
    // Takes `bytes` of the byte budget, then pushes (or only reserves a place, push_reserved()
    // later); gives the bytes back when the queue refuses.
    Admit push(Event&& event, std::size_t bytes);
    Admit reserve(std::size_t bytes);
    template <class Enqueue>
    Admit admit(std::size_t bytes, Enqueue&& enqueue);
    bool take_bytes(std::size_t bytes);
    // Gives back the bytes of events that were handled and destroyed.
    void give_bytes(std::size_t bytes);

    void run_worker();
    // Runs the handlers of one event with `set`; returns after all of them (errors contained).
    // `timed`: observe each handler call in event_handler_latency_ms (sampled, see .cpp).
    void dispatch(const HandlerSet& set, const Event& event, bool timed);
    void session_start_finished(const std::string& session_id, const HandlerSet* set);
    SessionShard& shard_for(const std::string& session_id);
    SubmitResult on_full(Kind kind, Admit why);
    void warn_dropped();
    void warn_handler_error(const char* what);
    void mark_worker_exit();

    const Options options_;
    HandlerSource& handlers_;
    std::unique_ptr<metrics::Registry> own_registry_;
    metrics::Registry* registry_;
    BoundedQueue<Event> queue_;

    std::array<KindMetrics, 3> kind_metrics_{};
    metrics::Counter* dropped_events_ = nullptr;  // Nakama's name, all kinds
    metrics::Counter* handler_errors_ = nullptr;
    metrics::Counter* drain_unhandled_ = nullptr;
    metrics::Gauge* depth_gauge_ = nullptr;
    metrics::Gauge* capacity_gauge_ = nullptr;
    metrics::Counter* bytes_full_ = nullptr;
    metrics::Counter* memory_trims_ = nullptr;
    metrics::Gauge* bytes_gauge_ = nullptr;
    metrics::Gauge* max_bytes_gauge_ = nullptr;
    metrics::Histogram* latency_ = nullptr;

    std::array<SessionShard, session_shards> shards_;

    // footprint() of the events held. Its own line: every producer and worker updates it.
    alignas(detail::cache_line) std::atomic<std::size_t> bytes_{0};
    // The queue held at least trim_after_bytes since the last trim; next trim allowed (steady ns).
    alignas(detail::cache_line) std::atomic<bool> trim_due_{false};
    std::atomic<std::int64_t> next_trim_ns_{0};

    // Rate limits of the two warnings: next allowed time (steady ns) and events since the last.
    std::atomic<std::int64_t> next_drop_warning_ns_{0};
    std::atomic<std::uint64_t> dropped_since_warning_{0};
    std::atomic<std::int64_t> next_error_warning_ns_{0};
    std::atomic<std::uint64_t> errors_since_warning_{0};

    std::atomic<bool> abandon_{false};  // drain's grace ran out: discard instead of handling
    std::atomic<std::uint64_t> abandoned_{0};
    std::mutex lifecycle_mutex_;
    std::condition_variable workers_exited_cv_;
    unsigned live_workers_ = 0;  // guarded by lifecycle_mutex_
    bool started_ = false;
    bool drained_ = false;
    std::vector<std::thread> workers_;
};

}  // namespace nk::events
