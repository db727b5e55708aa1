#include "events/pipeline.hpp"

#include <spdlog/spdlog.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>
#include <exception>
#include <functional>
#include <new>
#include <stdexcept>

#include "metrics/registry.hpp"

namespace nk::events {

namespace {

// Largest batch one worker takes at once. A worker takes at most its share of what is queued
// (depth / workers), so a slow handler never sits on a batch the idle workers could run.
constexpr std::size_t max_batch = 64;
// A worker whose pops keep catching up with the producers after fewer events than this lingers
// (BoundedQueue::linger) before its next pop, until this many per worker are queued.
constexpr std::size_t linger_below = 16;
// Handler latency is sampled: the calls of one event in this many are timed. Two clock reads
// and a histogram update per call cost more than a trivial handler (bench/queue).
constexpr std::uint64_t latency_sample_every = 16;
constexpr std::int64_t warning_interval_ns = 1'000'000'000;
// malloc_trim walks every arena under its lock: at most once per interval.
constexpr std::int64_t trim_interval_ns = 1'000'000'000;

BoundedQueue<Event>::Waiting waiting_for(const Options& options) {
    BoundedQueue<Event>::Waiting w;
    w.nap = std::chrono::microseconds(options.worker_nap_us);
    w.linger = std::chrono::microseconds(options.worker_linger_us);
    return w;
}

std::int64_t steady_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::size_t kind_index(Kind k) {
    return static_cast<std::size_t>(k);
}

// Claims the right to act now (log a warning, trim memory) when the last time is at least an
// interval old.
bool claim_warning(std::atomic<std::int64_t>& next_allowed_ns,
                   std::int64_t interval_ns = warning_interval_ns) {
    const std::int64_t now = steady_ns();
    std::int64_t next = next_allowed_ns.load(std::memory_order_relaxed);
    if (now < next)
        return false;
    return next_allowed_ns.compare_exchange_strong(next, now + interval_ns,
                                                   std::memory_order_relaxed);
}

// Makes what a drain frees returnable by trim_memory(): turns glibc's fastbins off, once per
// process. Why: an event's small allocations (its property vector, short strings) sit between
// its large strings in the producer's arena. Freed, they wait in a fastbin, still marked in use,
// so each freed large string (below the 64 KiB at which glibc consolidates) stays an island and
// never triggers the arena's trim; malloc_trim() then consolidates all of it into the arena's
// top chunk, which it releases only for the main arena. A drain of 60 KB events kept ~55 MiB
// resident that way (bench/events_rss). Without fastbins a freed chunk merges with its free
// neighbours at once, and an arena's top is trimmed as it grows; the per-thread cache (tcache)
// still serves small allocations first.
void keep_freed_memory_returnable() {
#if defined(__GLIBC__)
    static const bool done = [] { return ::mallopt(M_MXFAST, 0) == 1; }();
    (void)done;
#endif
}

// Hands memory the allocator keeps but no longer uses back to the OS. True when it ran.
bool trim_memory() {
#if defined(__GLIBC__)
    ::malloc_trim(0);
    return true;
#else
    return false;
#endif
}

// Uninitialised storage for one popped batch.
class BatchBuffer {
  public:
    explicit BatchBuffer(std::size_t n)
        : data_(static_cast<Event*>(
              ::operator new (n * sizeof(Event), std::align_val_t{alignof(Event)}))) {}
    ~BatchBuffer() { ::operator delete (data_, std::align_val_t{alignof(Event)}); }
    BatchBuffer(const BatchBuffer&) = delete;
    BatchBuffer& operator=(const BatchBuffer&) = delete;
    Event* data() { return data_; }
    void destroy(std::size_t n) { std::destroy_n(data_, n); }

  private:
    Event* data_;
};

}  // namespace

std::string_view kind_name(Kind k) {
    switch (k) {
        case Kind::session_start:
            return "session_start";
        case Kind::session_end:
            return "session_end";
        default:
            return "custom";
    }
}

EventPipeline::EventPipeline(const Options& options, HandlerSource& handlers,
                             metrics::Registry* registry)
    : options_(options),
      handlers_(handlers),
      own_registry_(registry ? nullptr : std::make_unique<metrics::Registry>("nkhost", "")),
      registry_(registry ? registry : own_registry_.get()),
      queue_(options.queue_size, waiting_for(options)) {
    if (options.workers == 0)
        throw std::invalid_argument("runtime.event_queue_workers must be >= 1");
    if (options.queue_max_bytes == 0)
        throw std::invalid_argument("runtime.event_queue_max_bytes must be >= 1");
    if (options.trim_after_bytes != 0)
        keep_freed_memory_returnable();
    for (Kind k : {Kind::custom, Kind::session_start, Kind::session_end}) {
        const metrics::Labels labels{{"kind", std::string(kind_name(k))}};
        kind_metrics_[kind_index(k)] = KindMetrics{
            &registry_->counter("events_received", "Events offered to the event queue.", labels),
            &registry_->counter("events_processed", "Events whose handlers have run.", labels),
            &registry_->counter("events_dropped", "Events dropped because the queue was full.",
                                labels),
            &registry_->counter("events_rejected",
                                "Events refused because the queue was full (policy reject).",
                                labels),
        };
    }
    dropped_events_ = &registry_->counter(
        "dropped_events", "Events dropped because the queue was full (Nakama's name).");
    handler_errors_ =
        &registry_->counter("event_handler_errors", "Event handler calls that threw.");
    drain_unhandled_ = &registry_->counter(
        "event_drain_unhandled", "Accepted events not handled before the shutdown grace ran out.");
    depth_gauge_ = &registry_->gauge("event_queue_depth", "Events queued or being handled.");
    capacity_gauge_ = &registry_->gauge("event_queue_capacity", "Capacity of the event queue.");
    capacity_gauge_->set(static_cast<std::int64_t>(options.queue_size));
    bytes_full_ = &registry_->counter(
        "event_queue_bytes_full",
        "Events refused because the queued events held runtime.event_queue_max_bytes (also "
        "counted in events_dropped or events_rejected).");
    memory_trims_ = &registry_->counter(
        "event_queue_memory_trims",
        "Times the event queue drained after a burst and freed memory was returned to the OS.");
    bytes_gauge_ =
        &registry_->gauge("event_queue_bytes", "Bytes held by queued or in-flight events.");
    max_bytes_gauge_ =
        &registry_->gauge("event_queue_max_bytes", "Byte budget of the event queue.");
    max_bytes_gauge_->set(static_cast<std::int64_t>(options.queue_max_bytes));
    latency_ = &registry_->histogram("event_handler_latency_ms",
                                     "Time one event handler call took, in milliseconds.",
                                     metrics::latency_ms_buckets());
}

EventPipeline::~EventPipeline() {
    drain(std::chrono::milliseconds(0));
    for (auto& t : workers_) {
        if (t.joinable())
            t.join();
    }
}

void EventPipeline::start() {
    std::lock_guard lock(lifecycle_mutex_);
    if (started_)
        return;
    started_ = true;
    live_workers_ = options_.workers;
    workers_.reserve(options_.workers);
    for (unsigned i = 0; i < options_.workers; ++i)
        workers_.emplace_back([this] { run_worker(); });
    spdlog::info(
        "Runtime event queue processor started (queue_size={}, queue_max_bytes={}, workers={}, "
        "policy={})",
        options_.queue_size, options_.queue_max_bytes, options_.workers,
        options_.full_policy == FullPolicy::drop ? "drop" : "reject");
}

EventPipeline::SessionShard& EventPipeline::shard_for(const std::string& session_id) {
    return shards_[std::hash<std::string>{}(session_id) % session_shards];
}

bool EventPipeline::take_bytes(std::size_t bytes) {
    const std::size_t before = bytes_.fetch_add(bytes, std::memory_order_relaxed);
    if (before == 0 || before + bytes <= options_.queue_max_bytes)
        return true;
    bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    return false;
}

void EventPipeline::give_bytes(std::size_t bytes) {
    const std::size_t before = bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    const std::size_t after = before - bytes;
    bytes_gauge_->set(static_cast<std::int64_t>(after));
    const std::size_t trim_after = options_.trim_after_bytes;
    if (trim_after == 0)
        return;
    if (before >= trim_after && !trim_due_.load(std::memory_order_relaxed))
        trim_due_.store(true, std::memory_order_relaxed);
    // Only the worker that empties the queue trims, and not more than once per interval: under
    // a steady flow the freed memory is reused at once and trimming would only cost page faults.
    if (after != 0 || !trim_due_.load(std::memory_order_relaxed) ||
        !claim_warning(next_trim_ns_, trim_interval_ns)) {
        return;
    }
    trim_due_.store(false, std::memory_order_relaxed);
    if (trim_memory())
        memory_trims_->inc();
}

template <class Enqueue>
EventPipeline::Admit EventPipeline::admit(std::size_t bytes, Enqueue&& enqueue) {
    if (!take_bytes(bytes))
        return queue_.closed() ? Admit::closed : Admit::bytes_full;
    const auto r = enqueue();
    if (r == BoundedQueue<Event>::Push::ok)
        return Admit::ok;
    bytes_.fetch_sub(bytes, std::memory_order_relaxed);
    return r == BoundedQueue<Event>::Push::closed ? Admit::closed : Admit::full;
}

EventPipeline::Admit EventPipeline::push(Event&& event, std::size_t bytes) {
    return admit(bytes, [&] { return queue_.try_push(std::move(event)); });
}

EventPipeline::Admit EventPipeline::reserve(std::size_t bytes) {
    return admit(bytes, [&] { return queue_.try_reserve(); });
}

SubmitResult EventPipeline::submit(Event&& event) {
    const Kind kind = event.kind;
    if (!handlers_.has_handlers(kind)) {
        return queue_.closed() ? SubmitResult::shut_down : SubmitResult::accepted;
    }
    if (!event.has_id())
        stamp(event);  // a producer that did not stamp it: received now
    KindMetrics& m = kind_metrics_[kind_index(kind)];
    const std::size_t bytes = footprint(event);

    if (kind == Kind::session_start && !event.context().session_id.empty()) {
        // Register the start before it becomes visible to workers, so an end submitted from now
        // on parks behind it.
        std::string session_id = event.context().session_id;
        SessionShard& shard = shard_for(session_id);
        {
            std::lock_guard lock(shard.mutex);
            ++shard.sessions[session_id].starts;
        }
        const Admit r = push(std::move(event), bytes);
        if (r == Admit::ok) {
            m.received->inc();
            return SubmitResult::accepted;
        }
        session_start_finished(session_id, nullptr);
        if (r == Admit::closed)
            return SubmitResult::shut_down;
        m.received->inc();
        return on_full(kind, r);
    }

    if (kind == Kind::session_end && !event.context().session_id.empty() &&
        handlers_.has_handlers(Kind::session_start)) {
        SessionShard& shard = shard_for(event.context().session_id);
        std::unique_lock lock(shard.mutex);
        auto it = shard.sessions.find(event.context().session_id);
        if (it != shard.sessions.end()) {
            const Admit r = reserve(bytes);
            if (r == Admit::closed)
                return SubmitResult::shut_down;
            m.received->inc();
            if (r != Admit::ok) {
                lock.unlock();
                return on_full(kind, r);
            }
            it->second.parked_ends.push_back(std::move(event));
            return SubmitResult::accepted;
        }
        // No start pending: queue it now (still under the lock, so no start can sneak ahead).
        const Admit r = push(std::move(event), bytes);
        if (r == Admit::closed)
            return SubmitResult::shut_down;
        m.received->inc();
        if (r == Admit::ok)
            return SubmitResult::accepted;
        lock.unlock();
        return on_full(kind, r);
    }

    const Admit r = push(std::move(event), bytes);
    if (r == Admit::closed)
        return SubmitResult::shut_down;
    m.received->inc();
    if (r == Admit::ok)
        return SubmitResult::accepted;
    return on_full(kind, r);
}

SubmitResult EventPipeline::on_full(Kind kind, Admit why) {
    KindMetrics& m = kind_metrics_[kind_index(kind)];
    depth_gauge_->set(static_cast<std::int64_t>(queue_.held()));
    bytes_gauge_->set(static_cast<std::int64_t>(bytes_.load(std::memory_order_relaxed)));
    if (why == Admit::bytes_full)
        bytes_full_->inc();
    if (options_.full_policy == FullPolicy::reject) {
        m.rejected->inc();
        return SubmitResult::rejected;
    }
    m.dropped->inc();
    dropped_events_->inc();
    warn_dropped();
    return SubmitResult::dropped;
}

void EventPipeline::warn_dropped() {
    dropped_since_warning_.fetch_add(1, std::memory_order_relaxed);
    if (!claim_warning(next_drop_warning_ns_))
        return;
    const std::uint64_t n = dropped_since_warning_.exchange(0, std::memory_order_relaxed);
    if (n == 0)
        return;
    spdlog::warn(
        "Runtime event queue full, events may be lost (dropped={}, queue_size={}, "
        "queue_max_bytes={})",
        n, options_.queue_size, options_.queue_max_bytes);
}

void EventPipeline::warn_handler_error(const char* what) {
    errors_since_warning_.fetch_add(1, std::memory_order_relaxed);
    if (!claim_warning(next_error_warning_ns_))
        return;
    const std::uint64_t n = errors_since_warning_.exchange(0, std::memory_order_relaxed);
    if (n == 0)
        return;
    spdlog::error("Event handler failed: {} (failures since last report={})", what, n);
}

void EventPipeline::dispatch(const HandlerSet& set, const Event& event, bool timed) {
    for (const HandlerFn& handler : set.for_kind(event.kind)) {
        const auto t0 =
            timed ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point{};
        try {
            handler(event);
        } catch (const std::exception& e) {
            handler_errors_->inc();
            warn_handler_error(e.what());
        } catch (...) {
            handler_errors_->inc();
            warn_handler_error("unknown exception");
        }
        if (timed) {
            const auto dt = std::chrono::steady_clock::now() - t0;
            latency_->observe(std::chrono::duration<double, std::milli>(dt).count());
        }
    }
}

void EventPipeline::session_start_finished(const std::string& session_id, const HandlerSet* set) {
    std::vector<Event> ends;
    {
        SessionShard& shard = shard_for(session_id);
        std::lock_guard lock(shard.mutex);
        auto it = shard.sessions.find(session_id);
        if (it == shard.sessions.end())
            return;
        if (--it->second.starts > 0)
            return;
        ends = std::move(it->second.parked_ends);
        shard.sessions.erase(it);
    }
    if (ends.empty())
        return;
    const std::size_t n = ends.size();
    if (set == nullptr) {
        // The start never reached a worker (queue full): the ends keep their reservations (and
        // bytes) and go through the queue like any other event.
        for (Event& e : ends)
            queue_.push_reserved(std::move(e));
        return;
    }
    std::size_t bytes = 0;
    for (const Event& e : ends) {
        bytes += footprint(e);
        if (abandon_.load(std::memory_order_relaxed)) {
            abandoned_.fetch_add(1, std::memory_order_relaxed);
            continue;
        }
        dispatch(*set, e, true);
        kind_metrics_[kind_index(Kind::session_end)].processed->inc();
    }
    ends.clear();
    give_bytes(bytes);
    queue_.release(n);
}

void EventPipeline::handlers_changed() {
    queue_.wake_all();
}

void EventPipeline::run_worker() {
    BatchBuffer batch(max_batch);
    const std::size_t workers = options_.workers;
    std::array<std::uint64_t, 3> processed{};
    std::uint64_t timing_tick = 0;
    const auto done = [this] {
        return abandon_.load(std::memory_order_relaxed) || (queue_.closed() && queue_.held() == 0);
    };
    // The snapshot is kept between batches and reloaded only when the source publishes a new
    // one. A worker about to sleep drops a stale one, so after handlers_changed() (which wakes
    // every worker) no idle worker keeps a retired module loaded.
    std::shared_ptr<const HandlerSet> set;
    std::uint64_t set_generation = 0;
    const auto stale = [&] { return set && handlers_.generation() != set_generation; };
    // Lingering pays only while the producers keep pace with this worker: its previous pop found
    // events, and producers queued more since then. At ordinary rates (a pop cut short by its
    // share, events left from a nap) nothing new arrives between two pops, and waiting would
    // only delay the events.
    bool streaming = false;             // the previous pop found events
    std::size_t enqueued_at_pop = 0;    // queue_.enqueued() at the previous pop
    for (;;) {
        const std::size_t share = std::clamp<std::size_t>(queue_.held() / workers, 1, max_batch);
        const std::size_t n = queue_.try_pop_bulk(batch.data(), share);
        bool keep_up = false;
        if (n > 0) {
            const std::size_t enqueued = queue_.enqueued();
            keep_up = streaming && n < linger_below && enqueued != enqueued_at_pop;
            enqueued_at_pop = enqueued;
        }
        streaming = n > 0;
        if (n == 0) {
            if (done())
                break;
            if (stale())
                set.reset();
            // Also stop waiting when the snapshot went stale meanwhile (checked after the worker
            // registers as a sleeper, so a handlers_changed() wake cannot be missed).
            queue_.wait_for_work([&] { return done() || stale(); });
            continue;
        }
        // Took its whole share and more is ready: wake a sleeping worker for it. Also for a share
        // of one: a producer may have skipped its wake because this worker was napping, and this
        // worker may now run a long handler (the rest would wait for the next push otherwise).
        if (n == share)
            queue_.wake_helper_if_ready();
        if (const std::uint64_t g = handlers_.generation(); !set || g == 0 || g != set_generation) {
            set = handlers_.handlers();
            set_generation = g;
        }
        processed.fill(0);
        std::size_t bytes = 0;
        for (std::size_t i = 0; i < n; ++i) {
            const Event& e = batch.data()[i];
            bytes += footprint(e);
            if (abandon_.load(std::memory_order_relaxed)) {
                abandoned_.fetch_add(1, std::memory_order_relaxed);
                continue;
            }
            if (set)
                dispatch(*set, e, (timing_tick++ % latency_sample_every) == 0);
            ++processed[kind_index(e.kind)];
            if (e.kind == Kind::session_start && !e.context().session_id.empty()) {
                session_start_finished(e.context().session_id, set.get());
            }
        }
        batch.destroy(n);
        for (std::size_t k = 0; k < processed.size(); ++k) {
            if (processed[k])
                kind_metrics_[k].processed->inc(processed[k]);
        }
        give_bytes(bytes);  // after destroy: the budget never runs ahead of the memory
        const std::size_t left = queue_.release(n);
        depth_gauge_->set(static_cast<std::int64_t>(left));
        if (keep_up)
            queue_.linger(std::min(linger_below * workers, options_.queue_size));
    }
    mark_worker_exit();
}

void EventPipeline::mark_worker_exit() {
    std::lock_guard lock(lifecycle_mutex_);
    --live_workers_;
    workers_exited_cv_.notify_all();
}

std::size_t EventPipeline::drain(std::chrono::milliseconds grace) {
    std::unique_lock lock(lifecycle_mutex_);
    if (drained_)
        return 0;
    drained_ = true;
    queue_.close();
    if (!started_) {
        lock.unlock();
        start();  // nobody started the workers: they still get the grace to handle what is queued
        lock.lock();
    }
    const auto deadline = std::chrono::steady_clock::now() + grace;
    const bool finished =
        workers_exited_cv_.wait_until(lock, deadline, [this] { return live_workers_ == 0; });
    if (finished)
        return 0;

    // Out of time: what is still held (queued, parked or in a running batch) is not handled.
    const std::size_t unhandled = queue_.held();
    abandon_.store(true, std::memory_order_relaxed);
    queue_.wake_all();
    if (unhandled > 0) {
        drain_unhandled_->inc(unhandled);
        spdlog::error(
            "Event queue drain: {} accepted events not handled within the shutdown grace "
            "({} ms)",
            unhandled, grace.count());
    }
    return unhandled;
}

unsigned EventPipeline::running_workers(std::chrono::milliseconds wait) {
    std::unique_lock lock(lifecycle_mutex_);
    if (!started_)
        return 0;
    workers_exited_cv_.wait_for(lock, wait, [this] { return live_workers_ == 0; });
    return live_workers_;
}

EventPipeline::Stats EventPipeline::stats() const {
    Stats s;
    for (const KindMetrics& m : kind_metrics_) {
        s.received += m.received->value();
        s.processed += m.processed->value();
        s.dropped += m.dropped->value();
        s.rejected += m.rejected->value();
    }
    s.handler_errors = handler_errors_->value();
    s.depth = queue_.held();
    s.bytes = bytes_.load(std::memory_order_relaxed);
    s.bytes_full = bytes_full_->value();
    s.memory_trims = memory_trims_->value();
    s.sleeping_workers = queue_.sleepers();
    s.worker_sleeps = queue_.sleeps();
    s.worker_wakes = queue_.wakes();
    return s;
}

}  // namespace nk::events
