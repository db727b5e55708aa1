// bench_event_rss [events=2000] [value_bytes=196000] [max_bytes=0] [trim_after_bytes=8388608]
//                 [producers=4] [workers=8] [fastbins=0]
//
// Resident memory of the event pipeline through a flood of large events, as one client posting
// ~196 KB events did to nkhost: `producers` threads (the io threads) submit `events` events of
// one `value_bytes` property while every worker's handler waits on a gate, so they pile up;
// then the gate opens and the workers drain the queue. Prints RSS at start, at the peak (all
// accepted events queued) and after the drain, and what the byte budget refused.
//
// max_bytes=0 sets no byte budget (the count bound only, as before runtime.event_queue_max_bytes);
// trim_after_bytes=0 disables the malloc_trim after a drain (and leaves glibc's fastbins on, see
// pipeline.cpp); fastbins=1 turns them back on after the pipeline turned them off, to show what
// they cost. Run each case in its own process: the allocator's state carries over otherwise
// (run.sh does).
#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "events/pipeline.hpp"

using namespace nk::events;

namespace {

double rss_mib() {
    std::ifstream statm("/proc/self/statm");
    long size = 0, resident = 0;
    statm >> size >> resident;
    return static_cast<double>(resident) * static_cast<double>(::sysconf(_SC_PAGESIZE)) /
           (1024.0 * 1024.0);
}

std::size_t arg(int argc, char** argv, int i, std::size_t fallback) {
    return argc > i ? std::strtoull(argv[i], nullptr, 10) : fallback;
}

class Gate {
  public:
    void wait() {
        std::unique_lock lock(m_);
        cv_.wait(lock, [&] { return open_; });
    }
    void open() {
        std::lock_guard lock(m_);
        open_ = true;
        cv_.notify_all();
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    bool open_ = false;
};

}  // namespace

int main(int argc, char** argv) {
    const std::size_t events = arg(argc, argv, 1, 2000);
    const std::size_t value_bytes = arg(argc, argv, 2, 196000);
    const std::size_t max_bytes = arg(argc, argv, 3, 0);
    const std::size_t trim_after = arg(argc, argv, 4, std::size_t{8} << 20);
    const std::size_t producers = arg(argc, argv, 5, 4);
    const unsigned workers = static_cast<unsigned>(arg(argc, argv, 6, 8));
    const bool fastbins = arg(argc, argv, 7, 0) != 0;
    spdlog::set_level(spdlog::level::err);

    Gate gate;
    std::atomic<std::size_t> handled{0};
    HandlerSet set;
    set.custom.push_back([&](const Event&) {
        gate.wait();
        handled.fetch_add(1, std::memory_order_relaxed);
    });
    StaticHandlerSource source(std::move(set));
    Options o;
    o.workers = workers;
    o.queue_max_bytes = max_bytes == 0 ? ~std::size_t{0} / 2 : max_bytes;
    o.trim_after_bytes = trim_after;
    EventPipeline pipeline(o, source, nullptr);
    pipeline.start();
#if defined(__GLIBC__)
    if (fastbins)
        ::mallopt(M_MXFAST, 64 * sizeof(std::size_t) / 4);  // glibc's default
#endif

    const double baseline = rss_mib();
    std::atomic<std::size_t> accepted{0};
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < producers; ++t) {
        threads.emplace_back([&, t] {
            for (std::size_t i = t; i < events; i += producers) {
                Event e;
                e.name = "big";
                e.properties.emplace_back("v", std::string(value_bytes, 'x'));
                if (pipeline.submit(std::move(e)) == SubmitResult::accepted)
                    accepted.fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    for (auto& t : threads)
        t.join();
    const double peak = rss_mib();
    const auto held = pipeline.stats();

    gate.open();
    while (pipeline.stats().depth > 0)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    // The worker that empties the queue trims right after it gives the bytes back.
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const double after = rss_mib();
    const auto done = pipeline.stats();
    pipeline.drain(std::chrono::seconds(10));

    std::printf(
        "events=%zu value_bytes=%zu max_bytes=%s trim_after_bytes=%zu producers=%zu workers=%u%s\n"
        "  accepted=%zu refused_by_bytes=%llu held_at_peak=%.1f MiB\n"
        "  rss_mib baseline=%.1f peak=%.1f after_drain=%.1f trims=%llu\n",
        events, value_bytes, max_bytes == 0 ? "none" : std::to_string(max_bytes).c_str(),
        trim_after, producers, workers, fastbins ? " fastbins=on" : "", accepted.load(),
        static_cast<unsigned long long>(held.bytes_full),
        static_cast<double>(held.bytes) / (1024.0 * 1024.0), baseline, peak, after,
        static_cast<unsigned long long>(done.memory_trims));
    return 0;
}
