#include "runtime/call_watch.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <memory>
#include <mutex>

#include "metrics/registry.hpp"
#include "runtime/module.hpp"

namespace nk::runtime {
namespace {

using Clock = std::chrono::steady_clock;

struct Slot {
    std::mutex mutex;
    const ModuleGeneration* module = nullptr;  // null: no call on this thread
    const char* kind = "";
    std::string_view target;
    Clock::time_point started{};
    std::uint64_t serial = 0;
};

// Every live thread's slot. A slot leaves the list when its thread ends.
struct Slots {
    std::mutex mutex;
    std::vector<std::shared_ptr<Slot>> all;
};
Slots& slots() {
    static Slots* s = new Slots;  // never destroyed: threads may end after static destruction
    return *s;
}

struct ThreadSlot {
    std::shared_ptr<Slot> slot = std::make_shared<Slot>();
    ThreadSlot() {
        std::lock_guard lock(slots().mutex);
        slots().all.push_back(slot);
    }
    ~ThreadSlot() {
        std::lock_guard lock(slots().mutex);
        auto& all = slots().all;
        all.erase(std::remove(all.begin(), all.end(), slot), all.end());
    }
};

Slot& this_thread_slot() {
    thread_local ThreadSlot t;
    return *t.slot;
}

double seconds(Clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace

namespace call_watch {

void begin(const ModuleGeneration& module, const char* kind, std::string_view target) noexcept {
    Slot& s = this_thread_slot();
    std::lock_guard lock(s.mutex);
    s.module = &module;
    s.kind = kind;
    s.target = target;
    s.started = Clock::now();
    ++s.serial;
}

void end() noexcept {
    Slot& s = this_thread_slot();
    std::lock_guard lock(s.mutex);
    s.module = nullptr;
    s.target = {};
}

std::vector<RunningCall> running() {
    std::vector<std::shared_ptr<Slot>> all;
    {
        std::lock_guard lock(slots().mutex);
        all = slots().all;
    }
    std::vector<RunningCall> out;
    const auto now = Clock::now();
    for (const auto& s : all) {
        std::lock_guard lock(s->mutex);
        if (s->module == nullptr)
            continue;
        // The call is still running, so its module generation and target are alive.
        out.push_back({s.get(), s->serial, s->module->name(), s->kind, std::string(s->target),
                       now - s->started});
    }
    return out;
}

}  // namespace call_watch

StuckCallReporter::StuckCallReporter(std::chrono::milliseconds threshold,
                                     metrics::Registry* registry)
    : threshold_(threshold), registry_(registry) {
    if (registry_ != nullptr) {
        stuck_running_ = &registry_->gauge(
            "plugin_calls_stuck_running",
            "Plugin calls running now for longer than runtime.stuck_call_ms.");
        longest_ms_ = &registry_->gauge("plugin_call_longest_running_ms",
                                        "Running time of the longest plugin call running now, "
                                        "in milliseconds (0 when none runs).");
    }
}

std::size_t StuckCallReporter::check(const std::vector<RunningCall>& running) {
    std::size_t stuck = 0;
    Clock::duration longest{};
    std::map<std::pair<const void*, std::uint64_t>, Seen> still;
    for (const RunningCall& c : running) {
        longest = std::max(longest, c.age);
        if (c.age < threshold_)
            continue;
        ++stuck;
        const auto key = std::make_pair(c.slot, c.serial);
        auto it = reported_.find(key);
        Seen seen;
        if (it == reported_.end()) {
            seen = {c.module, c.kind, c.target, threshold_ * 2, c.age};
            if (registry_ != nullptr) {
                registry_
                    ->counter("plugin_calls_stuck",
                              "Plugin calls that ran longer than runtime.stuck_call_ms (each "
                              "counted once), by module and kind of call",
                              {{"module", c.module}, {"call", c.kind}})
                    .inc();
            }
            spdlog::warn(
                "Module {}: {} call '{}' still running after {:.1f} s (runtime.stuck_call_ms={}); "
                "it holds one of the server's threads until it returns",
                c.module, c.kind, c.target, seconds(c.age), threshold_.count());
        } else {
            seen = std::move(it->second);
            seen.age = c.age;
            if (c.age >= seen.next_report) {
                spdlog::warn("Module {}: {} call '{}' still running after {:.1f} s", c.module,
                             c.kind, c.target, seconds(c.age));
                while (seen.next_report <= c.age)
                    seen.next_report *= 2;
            }
        }
        still.emplace(key, std::move(seen));
    }
    for (const auto& [key, seen] : reported_) {
        if (!still.count(key))
            spdlog::info("Module {}: {} call '{}' returned after more than {:.1f} s", seen.module,
                         seen.kind, seen.target, seconds(seen.age));
    }
    reported_ = std::move(still);
    if (stuck_running_ != nullptr) {
        stuck_running_->set(static_cast<std::int64_t>(stuck));
        longest_ms_->set(
            std::chrono::duration_cast<std::chrono::milliseconds>(longest).count());
    }
    return stuck;
}

CallWatchdog::CallWatchdog(std::chrono::milliseconds threshold, metrics::Registry* registry)
    : reporter_(threshold, registry),
      period_(std::clamp<std::chrono::milliseconds>(threshold / 4, std::chrono::milliseconds(10),
                                                    std::chrono::milliseconds(1000))) {
    thread_ = std::thread([this] {
        std::unique_lock lock(mutex_);
        while (!cv_.wait_for(lock, period_, [this] { return stop_; })) {
            lock.unlock();
            try {
                reporter_.check(call_watch::running());
            } catch (const std::exception& e) {
                spdlog::error("Plugin call watchdog: {}", e.what());
            }
            lock.lock();
        }
    });
}

CallWatchdog::~CallWatchdog() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
}

}  // namespace nk::runtime
