// Event: the host-owned value that flows from producers (POST /v2/event,
// realtime sessions, plugins' nk.event) through the queue to handlers.
// Move-only in practice (cheap to move, copyable when a test needs it).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/context.hpp"

namespace nk::events {

enum class Kind : std::uint8_t { custom, session_start, session_end };

struct Timestamp {
    std::int64_t seconds = 0;
    std::int32_t nanos = 0;
};

struct Event {
    Kind kind = Kind::custom;
    std::string name;
    // Properties in the order they were given; keys are unique.
    std::vector<std::pair<std::string, std::string>> properties;
    bool has_timestamp = false;  // Nakama leaves the timestamp nil when the client omits it
    Timestamp timestamp;
    bool external = false;
    std::chrono::system_clock::time_point received_at{};
    // Who produced it. Shared and immutable: an Event stays small (a few cache lines) to move
    // through the queue, and events of one realtime session can share one context. Null means
    // no context (context() is then empty).
    std::shared_ptr<const RequestContext> shared_context;

    const RequestContext& context() const {
        static const RequestContext empty;
        return shared_context ? *shared_context : empty;
    }
    void set_context(RequestContext ctx) {
        shared_context = std::make_shared<const RequestContext>(std::move(ctx));
    }
};

}  // namespace nk::events
