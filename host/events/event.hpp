// Event: the host-owned value that flows from producers (POST /v2/event,
// realtime sessions, plugins' nk.event) through the queue to handlers.
// Move-only in practice (cheap to move, copyable when a test needs it).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/context.hpp"
#include "core/uuid.hpp"

namespace nk::events {

enum class Kind : std::uint8_t { custom, session_start, session_end };

struct Timestamp {
    std::int64_t seconds = 0;
    std::int32_t nanos = 0;
};

struct Event {
    // Layout: the small fields first, so the Event stays 120 bytes with its id (the queue moves
    // it by value, see bench/README.md).
    Kind kind = Kind::custom;
    bool has_timestamp = false;  // Nakama leaves the timestamp nil when the client omits it
    bool external = false;
    std::string name;
    // Properties in the order they were given; keys are unique.
    std::vector<std::pair<std::string, std::string>> properties;
    Timestamp timestamp;
    // When the host received it, and its id: a UUID v7 of that instant (16 raw bytes, formatted
    // only for a handler that asks). Both set by stamp(); all zero before.
    std::chrono::system_clock::time_point received_at{};
    UuidBytes id{};
    // Who produced it. Shared and immutable: an Event stays small (a few cache lines) to move
    // through the queue, and events of one realtime session can share one context. Null means
    // no context (context() is then empty).
    std::shared_ptr<const RequestContext> shared_context;

    bool has_id() const {
        for (unsigned char c : id)
            if (c != 0)
                return true;
        return false;
    }
    const RequestContext& context() const {
        static const RequestContext empty;
        return shared_context ? *shared_context : empty;
    }
    void set_context(RequestContext ctx) {
        shared_context = std::make_shared<const RequestContext>(std::move(ctx));
    }
};

#if defined(__x86_64__) && defined(__GLIBCXX__)
static_assert(sizeof(Event) <= 120, "Event grew: the queue moves it by value (bench/README.md)");
#endif

// Marks `event` as received now (or at `at`): sets received_at and gives it a fresh UUID v7 of
// that instant. Every producer calls it where it accepts an event; EventPipeline::submit stamps
// an event that arrives without an id.
inline void stamp(Event& event,
                  std::chrono::system_clock::time_point at = std::chrono::system_clock::now()) {
    event.received_at = at;
    event.id = uuid_v7(at);
}

// Bytes an event counts against the queue's byte budget (Options::queue_max_bytes): its strings
// plus a fixed overhead for the Event itself and for each property's cell, and the context's
// strings. The context is counted in full by every event even when several share it (one
// realtime session's): an over-estimate, never an under-estimate. A pure function of the
// event, so a worker computes the same figure when it gives the bytes back.
inline std::size_t footprint(const Event& event) {
    using Property = std::pair<std::string, std::string>;
    std::size_t n = sizeof(Event) + event.name.size() + event.properties.size() * sizeof(Property);
    for (const auto& [key, value] : event.properties)
        n += key.size() + value.size();
    if (const RequestContext* c = event.shared_context.get()) {
        n += sizeof(RequestContext) + c->execution_mode.size() + c->user_id.size() +
             c->username.size() + c->session_id.size() + c->lang.size() + c->client_ip.size() +
             c->client_port.size();
        for (const auto& [key, value] : c->vars)
            n += key.size() + value.size();
    }
    return n;
}

}  // namespace nk::events
