// CallWatch: the plugin calls running right now, and since when.
//
// A plugin's code runs on the host's threads: event workers, io threads (hooks, HTTP routes),
// the blocking pool (RPCs). A call that does not return (a handler blocked on a socket that
// never answers, a deadlock, an endless loop) takes one of those threads for good, and nothing
// else would say so. Every outermost CallScope registers its call here (module, kind of call,
// target, start time) in a slot of its own thread; Runtime's watchdog reads the slots (see
// StuckCallReporter) and reports calls that run longer than runtime.stuck_call_ms.
//
// Cost on the call path: one uncontended mutex lock at the start and one at the end of a call,
// on a slot only this thread and the watchdog touch.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace nk::metrics {
class Registry;
class Gauge;
}  // namespace nk::metrics

namespace nk::runtime {

class ModuleGeneration;

struct RunningCall {
    const void* slot = nullptr;  // the thread's slot: with `serial`, identifies one call
    std::uint64_t serial = 0;
    std::string module;
    std::string kind;    // "event", "rpc", "before", "after", "http", "shutdown", "handoff"
    std::string target;  // event name, RPC id, hook id, route
    std::chrono::steady_clock::duration age{};
};

namespace call_watch {
// Called by CallScope for the outermost scope on a thread. `target` must outlive end().
void begin(const ModuleGeneration& module, const char* kind, std::string_view target) noexcept;
void end() noexcept;
// Every call running now, on every thread.
std::vector<RunningCall> running();
}  // namespace call_watch

// Turns periodic looks at call_watch::running() into reports: a warning when a call passes
// `threshold` (and again each time its running time doubles), an info line when a reported
// call returns, counter plugin_calls_stuck{module,call} once per stuck call, gauges
// plugin_calls_stuck_running (stuck calls running now) and plugin_call_longest_running_ms.
class StuckCallReporter {
  public:
    StuckCallReporter(std::chrono::milliseconds threshold, metrics::Registry* registry);
    // One look. Returns the calls past the threshold now.
    std::size_t check(const std::vector<RunningCall>& running);

  private:
    struct Seen {
        std::string module, kind, target;
        std::chrono::steady_clock::duration next_report{};
        std::chrono::steady_clock::duration age{};
    };
    std::chrono::milliseconds threshold_;
    metrics::Registry* registry_;
    metrics::Gauge* stuck_running_ = nullptr;
    metrics::Gauge* longest_ms_ = nullptr;
    std::map<std::pair<const void*, std::uint64_t>, Seen> reported_;
};

// A thread that looks at the running calls every threshold/4 (at most every second) and
// reports through a StuckCallReporter. Stops (and joins) on destruction.
class CallWatchdog {
  public:
    CallWatchdog(std::chrono::milliseconds threshold, metrics::Registry* registry);
    ~CallWatchdog();
    CallWatchdog(const CallWatchdog&) = delete;
    CallWatchdog& operator=(const CallWatchdog&) = delete;

  private:
    StuckCallReporter reporter_;
    std::chrono::milliseconds period_;
    std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::thread thread_;
};

}  // namespace nk::runtime
