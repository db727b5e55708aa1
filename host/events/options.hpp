// Options of the event pipeline (config keys runtime.event_*).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nk::events {

enum class FullPolicy { drop, reject };

struct Options {
    std::size_t queue_size = 65536;             // runtime.event_queue_size (>= 1)
    // runtime.event_queue_max_bytes (>= 1): bytes queued and in-flight events may hold (see
    // footprint() in event.hpp). 64 MiB: 65,536 events of a typical few hundred bytes hold
    // 20-40 MiB, so the count bound trips first for ordinary traffic, while a flood of events
    // near the per-event limits (65,536 x 256 KB = 16 GB) is held to 64 MiB.
    std::size_t queue_max_bytes = std::size_t{64} << 20;
    // After the queue drains from holding at least this many bytes, freed memory is handed back
    // to the OS (malloc_trim, at most once a second). No config key (bench and tests); 0: never.
    std::size_t trim_after_bytes = std::size_t{8} << 20;
    unsigned workers = 8;                       // runtime.event_queue_workers (>= 1)
    FullPolicy full_policy = FullPolicy::drop;  // runtime.event_queue_full_policy (drop|reject)
    std::uint32_t worker_nap_us = 100;  // runtime.event_worker_nap_us (0: no nap)
    std::uint32_t worker_linger_us = 3;  // runtime.event_worker_linger_us (0: never linger)
    std::uint32_t reject_retry_after_sec =
        1;                              // runtime.event_reject_retry_after_sec (Retry-After on 503)
    std::size_t max_properties = 1024;  // runtime.event_max_properties
    std::size_t max_name_bytes = 1024;  // runtime.event_max_name_bytes
    std::size_t max_key_bytes = 1024;   // runtime.event_max_key_bytes
    std::size_t max_value_bytes = 65536;  // runtime.event_max_value_bytes
};

}  // namespace nk::events
