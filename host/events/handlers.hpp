// HandlerSet: the event handlers the workers call, as one immutable snapshot.
//
// The runtime (plugin registry) publishes a new snapshot whenever a module
// generation is loaded or retired; a worker holds the current snapshot (a
// shared_ptr) while the handlers run, so a handler's code and user data stay
// alive for the whole call, and keeps it between batches until generation()
// changes. Each handler function
// captures whatever keeps its module loaded.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <utility>
#include <vector>

#include "core/shared_slot.hpp"
#include "events/event.hpp"

namespace nk::events {

// Called on an event worker thread. May throw: the dispatcher contains it.
using HandlerFn = std::function<void(const Event&)>;

struct HandlerSet {
    std::vector<HandlerFn> custom;         // RegisterEvent, in registration order
    std::vector<HandlerFn> session_start;  // RegisterEventSessionStart
    std::vector<HandlerFn> session_end;    // RegisterEventSessionEnd

    const std::vector<HandlerFn>& for_kind(Kind k) const {
        switch (k) {
            case Kind::session_start:
                return session_start;
            case Kind::session_end:
                return session_end;
            default:
                return custom;
        }
    }
};

// Where the dispatcher reads the current snapshot. Thread-safe.
class HandlerSource {
  public:
    virtual ~HandlerSource() = default;
    virtual std::shared_ptr<const HandlerSet> handlers() const = 0;

    // Whether at least one handler of kind `k` is registered. Called on every submit, so an
    // implementation may override it with something cheaper than copying the snapshot.
    virtual bool has_handlers(Kind k) const {
        const auto set = handlers();
        return set && !set->for_kind(k).empty();
    }

    // A number that changes whenever handlers() would return a different snapshot, so a worker
    // can keep its snapshot between batches and reload it only when this changes (loading a
    // the shared snapshot takes a lock and bumps a shared reference count). 0 means
    // "not tracked": reload every time.
    virtual std::uint64_t generation() const { return 0; }
};

// A HandlerSource that holds one replaceable snapshot: for in-process C++ handlers (tests,
// tools) and as the building block of the runtime's registry. Thread-safe.
class StaticHandlerSource final : public HandlerSource {
  public:
    StaticHandlerSource() { publish({}); }
    explicit StaticHandlerSource(HandlerSet set) { publish(std::move(set)); }

    std::shared_ptr<const HandlerSet> handlers() const override { return set_.load(); }
    std::uint64_t generation() const override {
        return generation_.load(std::memory_order_acquire);
    }
    bool has_handlers(Kind k) const override {
        return present_[static_cast<std::size_t>(k)].load(std::memory_order_acquire);
    }
    // Replaces the snapshot; calls already running keep the one they hold.
    void publish(HandlerSet set) {
        auto next = std::make_shared<const HandlerSet>(std::move(set));
        for (Kind k : {Kind::custom, Kind::session_start, Kind::session_end}) {
            present_[static_cast<std::size_t>(k)].store(!next->for_kind(k).empty(),
                                                        std::memory_order_release);
        }
        set_.store(std::move(next));
        generation_.fetch_add(1, std::memory_order_acq_rel);
    }

  private:
    SharedSlot<HandlerSet> set_;
    std::atomic<bool> present_[3] = {false, false, false};
    std::atomic<std::uint64_t> generation_{1};
};

// Outcome of offering an event to the pipeline.
enum class SubmitResult {
    accepted,   // queued (or there was no handler of that kind: nothing to do, Nakama's no-op)
    dropped,    // queue full, policy drop: counted and warned, caller answers as Nakama (200)
    rejected,   // queue full, policy reject: caller answers 503 code 14 with Retry-After
    shut_down,  // the pipeline no longer accepts events
};

// Where producers put events (the pipeline implements it). Thread-safe, never blocks.
class EventSink {
  public:
    virtual ~EventSink() = default;
    virtual SubmitResult submit(Event&& event) = 0;
};

}  // namespace nk::events
