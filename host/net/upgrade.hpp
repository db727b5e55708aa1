// WebSocket upgrade seam: how a subsystem (realtime) takes an HTTP connection
// over once the client asks for `Upgrade: websocket`.
//
// Contract:
// - Register with Router::add_upgrade(path, handler) before Server::start().
// - When a GET request carrying `Upgrade: websocket` arrives on that exact
//   path, net reads the complete request, builds a Request (query, headers,
//   client_ip/client_port as for any request) and calls the handler on the
//   connection's io thread. The handler must not block.
// - Before that, net answers 400 (code 3) and closes itself, without calling
//   the handler, when the handshake could not complete: a Sec-WebSocket-Key
//   that is not the base64 encoding of 16 bytes (RFC 6455 4.2.1), a
//   Sec-WebSocket-Version other than 13 (the answer carries
//   `Sec-WebSocket-Version: 13`), or bytes sent after the request before the
//   101 answer (4.1). Refusals are counted in the http_requests metric with
//   their own status.
// - A taken connection is counted when its handshake has ended, as the
//   handler reports through UpgradedConnection::outcome: 101 once the 101
//   answer was written, else the status of the answer the client got (e.g.
//   400 from websocket::stream::async_accept for a request it refuses), or 0
//   when the connection ended without one.
// - Before it returns, the handler either
//     (a) calls upgrade.reject(response): net writes that HTTP response and
//         closes the connection, or
//     (b) calls upgrade.take(): it receives the stream, the original Beast
//         request (for websocket::stream::async_accept(req)) and any bytes
//         already read past the request. From then on net never touches the
//         connection again and it no longer counts as an in-flight HTTP
//         request (Server::shutdown does not wait for it).
//   A handler that does neither (or throws) gets a 500 answer written for it.
// - The stream's executor is the connection's io thread (one io_context per
//   io thread, see server.hpp): completion handlers of the taken stream run
//   on that thread, so no strand is needed as long as only that thread
//   touches the stream. Its timeouts (tcp_stream::expires_after) are cleared
//   by take(); websocket::stream sets its own.
// - With TLS configured the stream is the TLS variant (the handshake is done).
#pragma once

#include <functional>
#include <utility>
#include <variant>

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "net/http.hpp"

namespace nk::net {

using PlainStream = boost::beast::tcp_stream;
using TlsStream = boost::beast::ssl_stream<boost::beast::tcp_stream>;
using BeastRequest = boost::beast::http::request<boost::beast::http::string_body>;

// One place among socket.max_connections, held by an upgraded connection.
// release() (or destruction) gives it back, once; any thread may do so.
// Move-only. Must not outlive the Server that handed it out.
class ConnectionSlot {
public:
    ConnectionSlot() = default;
    explicit ConnectionSlot(std::function<void()> release) : release_(std::move(release)) {}
    ConnectionSlot(ConnectionSlot&& other) noexcept : release_(std::exchange(other.release_, nullptr)) {}
    ConnectionSlot& operator=(ConnectionSlot&& other) noexcept {
        if (this != &other) {
            release();
            release_ = std::exchange(other.release_, nullptr);
        }
        return *this;
    }
    ConnectionSlot(const ConnectionSlot&) = delete;
    ConnectionSlot& operator=(const ConnectionSlot&) = delete;
    ~ConnectionSlot() { release(); }

    void release() {
        if (auto release = std::exchange(release_, nullptr)) release();
    }

private:
    std::function<void()> release_;
};

// How the handshake of a taken connection ended, counted once in http_requests{status}:
// completed() once the 101 answer was written; failed(status) with the status of the answer
// the client got instead, 0 when none. Destroyed unreported, it counts as failed(0). A
// default-constructed one counts nothing. Move-only; any thread may report. Must not outlive
// the Server that handed it out.
class UpgradeOutcome {
public:
    UpgradeOutcome() = default;
    explicit UpgradeOutcome(std::function<void(int status)> record) : record_(std::move(record)) {}
    UpgradeOutcome(UpgradeOutcome&& other) noexcept : record_(std::exchange(other.record_, nullptr)) {}
    UpgradeOutcome& operator=(UpgradeOutcome&& other) noexcept {
        if (this != &other) {
            failed(0);
            record_ = std::exchange(other.record_, nullptr);
        }
        return *this;
    }
    UpgradeOutcome(const UpgradeOutcome&) = delete;
    UpgradeOutcome& operator=(const UpgradeOutcome&) = delete;
    ~UpgradeOutcome() { failed(0); }

    void completed() { failed(101); }
    void failed(int status) {
        if (auto record = std::exchange(record_, nullptr)) record(status);
    }

private:
    std::function<void(int status)> record_;
};

// What take() hands over. Movable; owns the connection.
struct UpgradedConnection {
    std::variant<PlainStream, TlsStream> stream;
    BeastRequest request;               // pass to websocket::stream::async_accept(request)
    boost::beast::flat_buffer buffered;  // bytes read after the request (empty: see above)
    ConnectionSlot slot;                 // release when the socket closes
    UpgradeOutcome outcome;              // report how the handshake ended
};

// Passed by reference to the UpgradeHandler; valid only during the call.
class Upgrade {
public:
    virtual ~Upgrade() = default;
    // (a) Answer with an HTTP response (e.g. 401 text/plain) and close.
    virtual void reject(Response&& response) = 0;
    // (b) Take the connection. Call at most once, and not after reject().
    virtual UpgradedConnection take() = 0;
};

using UpgradeHandler = std::function<void(Request&& request, Upgrade& upgrade)>;

}  // namespace nk::net
