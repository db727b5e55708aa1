// Options of the event pipeline (config keys runtime.event_*).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nk::events {

enum class FullPolicy { drop, reject };

struct Options {
    std::size_t queue_size = 65536;             // runtime.event_queue_size (>= 1)
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
