// Server: the HTTP/1.1 listener (plain or TLS) in front of a Router.
//
// Threading model: one io_context per io thread, each run by exactly one
// thread. The acceptor lives on the first context; every accepted connection
// is pinned (round robin) to one context for its whole life, so all of its
// handlers run on one thread and need no strand. Handlers run on that thread
// and must not block; a Responder called from another thread posts the
// response back to the connection's context. Measured against one shared
// io_context with a strand per connection (bench/http), the pinned layout
// avoids the strand dispatch and cross-core wake-ups on every completion,
// which is the bulk of the per-request overhead on small machines.
//
// TLS: when both ssl_certificate and ssl_private_key are set, the port
// serves TLS only (as Nakama does); plain HTTP on it fails the handshake.
//
// Client address: client_ip/client_port come from the socket. When
// proxy_count N > 0 and the request has X-Forwarded-For (several header
// lines are joined with ','), the entries are read right to left and the
// N-th one from the right is used (N = 1: the last entry, i.e. the address
// the nearest proxy saw). The entry must parse as an IP address (an optional
// ":port", or "[v6]:port", is accepted; its port becomes client_port,
// otherwise client_port is empty). With fewer than N entries or an invalid
// entry, the socket address is used.
//
// Lifetime: Router and Registry must outlive the Server. Responders must not
// outlive the Server (stop the BlockingPool first, or shut the server down
// after the pool has drained).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>

#include "net/options.hpp"
#include "net/router.hpp"

namespace nk::metrics {
class Registry;
}

namespace nk::net {

class Server {
public:
    Server(const Options& options, Router& router, metrics::Registry* metrics = nullptr);
    ~Server();  // shutdown(0) if still running, then join()
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Binds, listens and starts the io threads. Throws std::runtime_error with
    // a clear message (address in use, bad certificate, ...). Call once.
    void start();
    // The bound port (useful with Options::port == 0). Valid after start().
    std::uint16_t port() const;

    // Number of io threads (and io_contexts).
    std::size_t io_thread_count() const;
    // The first io thread's context (timers etc. for other subsystems).
    boost::asio::io_context& io_context();
    // Executors of the io threads, round robin: spread work over them.
    boost::asio::any_io_executor next_executor();

    // Closes the listening socket; later connection attempts are refused.
    void stop_accepting();
    // Stops accepting, closes idle keep-alive connections, lets in-flight
    // requests finish and their responses be written (each such connection
    // is closed after its response), waiting at most `grace`; then closes
    // whatever is left and stops the io threads. Upgraded (taken) connections
    // are not waited for. Returns when the io threads have stopped. Call it
    // from a thread of your own, never from an io thread (it waits for them).
    void shutdown(std::chrono::milliseconds grace);
    // Stops the io threads (without grace) and joins them. Idempotent.
    void join();

    // Requests being handled right now (read, not yet written).
    std::size_t in_flight() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace nk::net
