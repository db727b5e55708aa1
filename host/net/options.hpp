// Options of the HTTP layer (config keys socket.*).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nk::net {

struct Options {
    std::string address;                          // socket.address ("" = all interfaces)
    std::uint16_t port = 7350;                    // socket.port
    std::size_t max_request_size_bytes = 262144;  // socket.max_request_size_bytes (body, compressed and decompressed)
    std::size_t max_header_size_bytes = 5120;     // socket.max_header_size_bytes (431 over it)
    std::uint32_t read_timeout_ms = 10000;        // socket.read_timeout_ms
    std::uint32_t write_timeout_ms = 10000;       // socket.write_timeout_ms
    std::uint32_t idle_timeout_ms = 60000;        // socket.idle_timeout_ms (keep-alive idle)
    std::string ssl_certificate;                  // socket.ssl_certificate (PEM path)
    std::string ssl_private_key;                  // socket.ssl_private_key (PEM path)
    unsigned proxy_count = 0;                     // socket.proxy_count (Nakama's default is 1)
    unsigned io_threads = 0;                      // socket.io_threads (0 = number of cores)
    unsigned blocking_threads = 0;                // socket.blocking_threads (0 = max(4, 2 x cores))
    std::size_t blocking_queue_size = 4096;       // socket.blocking_queue_size (0 = unbounded)
    std::size_t blocking_queue_max_bytes = 67108864;  // socket.blocking_queue_max_bytes (0 = unbounded)
    unsigned password_threads = 0;                // socket.password_threads (0 = blocking / 4, at least 1)
    std::size_t max_connections = 0;              // socket.max_connections (0 = unlimited)
    std::size_t response_compression_min_bytes = 1024;  // socket.response_compression_min_bytes (0 = never)
};

}  // namespace nk::net
