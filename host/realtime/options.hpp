// Options of realtime sockets (config keys socket.* that Nakama uses for /ws, and session.single_socket).
#pragma once

#include <cstddef>
#include <cstdint>

#include "nk/json_read.hpp"

namespace nk::realtime {

struct Options {
    std::size_t max_message_size_bytes = 4096;  // socket.max_message_size_bytes
    std::uint32_t ping_period_ms = 15000;       // socket.ping_period_ms (< pong_wait_ms)
    std::uint32_t pong_wait_ms = 25000;         // socket.pong_wait_ms
    std::uint32_t write_wait_ms = 5000;         // socket.write_wait_ms
    std::uint32_t close_ack_wait_ms = 2000;     // socket.close_ack_wait_ms
    std::uint32_t ping_backoff_threshold = 20;  // socket.ping_backoff_threshold
    std::size_t outgoing_queue_size = 64;       // socket.outgoing_queue_size
    bool single_socket = false;                 // session.single_socket
    unsigned max_json_depth = json_read::kDefaultMaxDepth;  // socket.max_json_depth
};

}  // namespace nk::realtime
