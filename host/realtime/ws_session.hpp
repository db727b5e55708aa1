// WsSession<Stream>: a realtime session over a Beast WebSocket, plain
// (beast::tcp_stream) or TLS (beast::ssl_stream<beast::tcp_stream>).
//
// Threading: every operation runs on the stream's executor, which must be a
// strand (or an io_context run by one thread) — the HTTP layer creates each
// connection on its own strand. close()/abort() post onto it, so any thread
// may call them.
//
// Lifecycle: run() accepts the upgrade; on success the hub emits
// session_start and the session serves envelopes, pings the peer every
// ping_period_ms and watches pong_wait_ms / write_wait_ms with one timer.
// Whatever ends it (peer close, TCP drop, timeout, protocol error, queue
// overflow, kick, shutdown), the first cause is recorded and the hub emits
// exactly one session_end when the read loop stops.
#pragma once

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/upgrade.hpp"
#include "realtime/session.hpp"
#include "realtime/session_hub.hpp"

namespace nk::realtime {

using UpgradeRequest = boost::beast::http::request<boost::beast::http::string_body>;

template <class Stream>
class WsSession final : public Session {
public:
    WsSession(std::shared_ptr<SessionHub> hub, SessionInfo info, Stream&& stream);

    // Performs the WebSocket handshake answering `request`, then serves. Call once. `outcome`
    // is told how the handshake ended: completed() once the 101 was written, else failed() with
    // the status of the refusal websocket::stream wrote (e.g. 400), 0 when none.
    void run(UpgradeRequest request, net::UpgradeOutcome outcome = {});

    void close(EndReason reason) override;
    void abort(EndReason reason) override;

private:
    using clock = std::chrono::steady_clock;
    enum class State : std::uint8_t { accepting, open, closing, closed };
    struct Outgoing {
        enum class Type : std::uint8_t { text, ping, close };
        Type type = Type::text;
        std::string payload;
    };

    std::shared_ptr<WsSession> self() {
        return std::static_pointer_cast<WsSession>(shared_from_this());
    }
    void on_accept(boost::beast::error_code ec);
    void read_next();
    void on_read(boost::beast::error_code ec);
    void handle_text(std::string_view text);
    void send(std::string text);
    void write_next();
    void on_write(boost::beast::error_code ec);
    void begin_close(EndReason reason);
    void drop_connection(EndReason reason);
    void finish();
    void arm_timer();
    void on_timer();
    void wake_timer_by(clock::time_point t);
    clock::time_point next_deadline() const;

    std::shared_ptr<SessionHub> hub_;
    boost::beast::websocket::stream<Stream> ws_;
    boost::asio::steady_timer timer_;
    boost::beast::flat_buffer read_buf_;
    std::unique_ptr<UpgradeRequest> request_;  // only during the handshake
    net::UpgradeOutcome outcome_;              // reported when the handshake ends
    int handshake_status_ = 0;                 // of the answer async_accept built
    std::vector<Outgoing> queue_;              // FIFO, small: bounded by outgoing_queue_size
    Outgoing current_;                         // the frame being written
    std::size_t queued_text_ = 0;
    clock::time_point last_activity_{};
    clock::time_point next_ping_{};
    clock::time_point write_started_{};
    clock::time_point close_deadline_{};
    std::uint32_t messages_in_period_ = 0;
    State state_ = State::accepting;
    bool writing_ = false;
    bool ping_queued_ = false;
    bool dropped_ = false;
};

using PlainWsSession = WsSession<boost::beast::tcp_stream>;
using TlsWsSession = WsSession<boost::beast::ssl_stream<boost::beast::tcp_stream>>;

extern template class WsSession<boost::beast::tcp_stream>;
extern template class WsSession<boost::beast::ssl_stream<boost::beast::tcp_stream>>;

}  // namespace nk::realtime
