// HandlerSet: the event handlers the workers call, as one immutable snapshot.
//
// The runtime (plugin registry) publishes a new snapshot whenever a module
// generation is loaded or retired; a worker takes the current snapshot once
// per event and holds it (a shared_ptr) while the handlers run, so a handler's
// code and user data stay alive for the whole call. Each handler function
// captures whatever keeps its module loaded.
#pragma once

#include <functional>
#include <memory>
#include <vector>

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
            case Kind::session_start: return session_start;
            case Kind::session_end: return session_end;
            default: return custom;
        }
    }
};

// Where the dispatcher reads the current snapshot. Thread-safe.
class HandlerSource {
public:
    virtual ~HandlerSource() = default;
    virtual std::shared_ptr<const HandlerSet> handlers() const = 0;
};

// Outcome of offering an event to the pipeline.
enum class SubmitResult {
    accepted,    // queued (or there was no handler of that kind: nothing to do, Nakama's no-op)
    dropped,     // queue full, policy drop: counted and warned, caller answers as Nakama (200)
    rejected,    // queue full, policy reject: caller answers 503 code 14 with Retry-After
    shut_down,   // the pipeline no longer accepts events
};

// Where producers put events (the pipeline implements it). Thread-safe, never blocks.
class EventSink {
public:
    virtual ~EventSink() = default;
    virtual SubmitResult submit(Event&& event) = 0;
};

}  // namespace nk::events
