// WsSession's member definitions, instantiated once per stream type in its own translation
// unit (ws_session.cpp: plain TCP, ws_session_tls.cpp: TLS) so the two compile in parallel.
#pragma once

#include "realtime/ws_session.hpp"

#include <boost/asio/post.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include "realtime/envelope.hpp"

namespace nk::realtime {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using std::chrono::milliseconds;

template <class Stream>
WsSession<Stream>::WsSession(std::shared_ptr<SessionHub> hub, SessionInfo info, Stream&& stream)
    : Session(std::move(info)),
      hub_(std::move(hub)),
      ws_(std::move(stream)),
      timer_(ws_.get_executor()) {}

template <class Stream>
void WsSession<Stream>::run(UpgradeRequest request, net::UpgradeOutcome outcome) {
    request_ = std::make_unique<UpgradeRequest>(std::move(request));
    outcome_ = std::move(outcome);
    asio::post(ws_.get_executor(), [self = self()] {
        const Options& opts = self->hub_->options();
        auto& ws = self->ws_;
        // The HTTP layer's per-request deadlines no longer apply: liveness is ours now.
        beast::get_lowest_layer(ws).expires_never();
        websocket::stream_base::timeout timeouts{};
        timeouts.handshake_timeout = milliseconds(opts.close_ack_wait_ms);
        timeouts.idle_timeout = websocket::stream_base::none();
        timeouts.keep_alive_pings = false;
        ws.set_option(timeouts);
        // The decorator sees every answer async_accept builds, the 101 or a refusal.
        ws.set_option(websocket::stream_base::decorator(
            [raw = self.get()](websocket::response_type& res) {
                res.set(beast::http::field::server, "nkhost");
                raw->handshake_status_ = res.result_int();
            }));
        ws.read_message_max(opts.max_message_size_bytes);
        ws.auto_fragment(false);
        // Pongs, pings and close frames from the peer all count as traffic.
        ws.control_callback([raw = self.get()](websocket::frame_type, beast::string_view) {
            raw->last_activity_ = clock::now();
        });
        ws.async_accept(*self->request_,
                        [self](beast::error_code ec) { self->on_accept(ec); });
    });
}

template <class Stream>
void WsSession<Stream>::on_accept(beast::error_code ec) {
    request_.reset();
    if (ec) {
        // A refusal websocket::stream answered, or none (the 101 was not written).
        outcome_.failed(handshake_status_ == 101 ? 0 : handshake_status_);
        // No session_start was emitted, so there is nothing to end.
        state_ = State::closed;
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().close(ignored);
        return;
    }
    outcome_.completed();
    auto now = clock::now();
    last_activity_ = now;
    next_ping_ = now + milliseconds(hub_->options().ping_period_ms);
    state_ = State::open;
    if (!hub_->start(self())) {
        state_ = State::closed;
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().close(ignored);
        return;
    }
    read_next();
    arm_timer();
}

template <class Stream>
void WsSession<Stream>::read_next() {
    ws_.async_read(read_buf_, [self = self()](beast::error_code ec, std::size_t) {
        self->on_read(ec);
    });
}

template <class Stream>
void WsSession<Stream>::on_read(beast::error_code ec) {
    if (ec) {
        if (ec == websocket::error::closed) {
            auto code = static_cast<std::uint16_t>(ws_.reason().code);
            bool normal = code == websocket::close_code::normal ||
                          code == websocket::close_code::going_away ||
                          code == websocket::close_code::no_status ||
                          code == websocket::close_code::none;
            if (normal) {
                ending().record(EndReason::normal);
            } else {
                ending().record(EndReason::client_close, code);
            }
        } else if (ec == websocket::error::message_too_big) {
            // Beast has already sent close 1009 (too big), for a single frame or for the
            // fragments of one message adding up past read_message_max.
            ending().record(EndReason::message_too_big);
        } else if (ec == websocket::error::bad_frame_payload) {
            // A text frame that is not UTF-8 (Beast sent close 1007): it cannot hold an envelope.
            ending().record(EndReason::malformed_payload);
        } else if (ec == websocket::condition::protocol_violation) {
            // A frame RFC 6455 forbids: unmasked, reserved bits, unknown opcode, a control frame
            // over 125 bytes or fragmented, a stray continuation, a bad close frame. Beast has
            // sent close 1002.
            ending().record(EndReason::protocol_error);
        } else {
            ending().record(EndReason::connection_lost);
        }
        finish();
        return;
    }

    last_activity_ = clock::now();
    ++messages_in_period_;
    if (state_ == State::open) {
        if (!ws_.got_text()) {
            // Like Nakama: a frame type other than the socket's format disconnects (close 1000
            // with the reason as its text).
            begin_close(EndReason::unexpected_message_type);
        } else {
            auto data = read_buf_.cdata();
            handle_text(std::string_view(static_cast<const char*>(data.data()), data.size()));
        }
    }
    // While closing, frames are read and discarded until the peer's close arrives.
    read_buf_.consume(read_buf_.size());
    if (read_buf_.capacity() > 1024) read_buf_.shrink_to_fit();  // keep idle sockets small
    read_next();
}

template <class Stream>
void WsSession<Stream>::handle_text(std::string_view text) {
    auto envelope = parse_envelope(text, hub_->json_limits());
    if (!envelope) {
        begin_close(EndReason::malformed_payload);
        return;
    }
    switch (envelope->type) {
        case Envelope::Type::ping: send(encode_pong(envelope->cid)); break;
        case Envelope::Type::pong: break;
        case Envelope::Type::empty:
            // Nakama answers and then disconnects.
            send(encode_error(envelope->cid, EnvelopeError::missing_payload, "Missing message."));
            begin_close(EndReason::error_processing);
            break;
        case Envelope::Type::other:
            // Deliberate difference from Nakama (which disconnects): optional
            // features of a game fail softly and the socket stays open.
            send(encode_error(envelope->cid, EnvelopeError::unrecognized_payload,
                              "Unsupported message kind: " + envelope->kind));
            break;
    }
}

template <class Stream>
void WsSession<Stream>::send(std::string text) {
    if (state_ != State::open) return;
    if (queued_text_ >= hub_->options().outgoing_queue_size) {
        drop_connection(EndReason::queue_full);
        return;
    }
    queue_.push_back(Outgoing{Outgoing::Type::text, std::move(text)});
    ++queued_text_;
    write_next();
}

template <class Stream>
void WsSession<Stream>::write_next() {
    if (writing_ || queue_.empty() || state_ == State::closed || dropped_) return;
    current_ = std::move(queue_.front());
    queue_.erase(queue_.begin());
    if (queue_.empty()) queue_.shrink_to_fit();
    writing_ = true;
    write_started_ = clock::now();
    wake_timer_by(write_started_ + milliseconds(hub_->options().write_wait_ms));
    auto done = [self = self()](beast::error_code ec, auto&&...) { self->on_write(ec); };
    switch (current_.type) {
        case Outgoing::Type::text:
            --queued_text_;
            ws_.text(true);
            ws_.async_write(asio::buffer(current_.payload), std::move(done));
            break;
        case Outgoing::Type::ping:
            ping_queued_ = false;
            ws_.async_ping({}, std::move(done));
            break;
        case Outgoing::Type::close: {
            auto code = ending().reason() == EndReason::server_shutdown
                            ? websocket::close_code::going_away
                            : websocket::close_code::normal;
            ws_.async_close(websocket::close_reason(code, current_.payload), std::move(done));
            break;
        }
    }
}

template <class Stream>
void WsSession<Stream>::on_write(beast::error_code ec) {
    writing_ = false;
    if (state_ == State::closed) return;
    if (ec) {
        drop_connection(EndReason::connection_lost);
        return;
    }
    if (current_.type == Outgoing::Type::close) return;  // nothing may follow a close frame
    current_.payload = std::string();
    write_next();
}

template <class Stream>
void WsSession<Stream>::close(EndReason reason) {
    asio::post(ws_.get_executor(), [self = self(), reason] { self->begin_close(reason); });
}

template <class Stream>
void WsSession<Stream>::abort(EndReason reason) {
    asio::post(ws_.get_executor(), [self = self(), reason] { self->drop_connection(reason); });
}

template <class Stream>
void WsSession<Stream>::begin_close(EndReason reason) {
    if (state_ != State::open) return;
    ending().record(reason);
    state_ = State::closing;
    const Options& opts = hub_->options();
    // Queued frames are flushed first (e.g. the error before a disconnect),
    // then the close frame; the peer has close_ack_wait_ms to answer it.
    close_deadline_ = clock::now() + milliseconds(opts.write_wait_ms + opts.close_ack_wait_ms);
    queue_.push_back(Outgoing{Outgoing::Type::close, ending().reason_text()});
    wake_timer_by(close_deadline_);
    write_next();
}

template <class Stream>
void WsSession<Stream>::drop_connection(EndReason reason) {
    if (state_ == State::closed || state_ == State::accepting || dropped_) return;
    ending().record(reason);
    state_ = State::closing;
    dropped_ = true;
    queue_.clear();
    // Closing the socket completes the pending read with an error: finish() follows.
    beast::error_code ignored;
    beast::get_lowest_layer(ws_).socket().close(ignored);
}

template <class Stream>
void WsSession<Stream>::finish() {
    if (state_ == State::closed) return;
    state_ = State::closed;
    beast::error_code ignored;
    timer_.cancel();
    beast::get_lowest_layer(ws_).socket().close(ignored);
    queue_.clear();
    queue_.shrink_to_fit();
    hub_->end(*this);
}

template <class Stream>
typename WsSession<Stream>::clock::time_point WsSession<Stream>::next_deadline() const {
    const Options& opts = hub_->options();
    if (dropped_) return clock::time_point::max();  // waiting for the read to fail
    if (state_ == State::closing) return close_deadline_;
    auto t = std::min(next_ping_, last_activity_ + milliseconds(opts.pong_wait_ms));
    if (writing_) t = std::min(t, write_started_ + milliseconds(opts.write_wait_ms));
    return t;
}

template <class Stream>
void WsSession<Stream>::arm_timer() {
    timer_.expires_at(next_deadline());
    // Exactly one wait is pending at any time: on_timer re-arms it, and
    // wake_timer_by() cancels it so that on_timer recomputes the deadline.
    timer_.async_wait([self = self()](beast::error_code) { self->on_timer(); });
}

template <class Stream>
void WsSession<Stream>::wake_timer_by(clock::time_point t) {
    if (state_ != State::accepting && t < timer_.expiry()) timer_.cancel();
}

template <class Stream>
void WsSession<Stream>::on_timer() {
    if (state_ == State::closed) return;
    const Options& opts = hub_->options();
    auto now = clock::now();
    if (state_ == State::closing) {
        if (!dropped_ && now >= close_deadline_) drop_connection(ending().reason());
    } else if (writing_ && now >= write_started_ + milliseconds(opts.write_wait_ms)) {
        drop_connection(EndReason::write_timeout);
    } else if (now >= last_activity_ + milliseconds(opts.pong_wait_ms)) {
        begin_close(EndReason::pong_timeout);
    } else if (now >= next_ping_) {
        // Like Nakama, skip the ping when the peer is busy talking anyway.
        if (messages_in_period_ < opts.ping_backoff_threshold && !ping_queued_) {
            ping_queued_ = true;
            queue_.push_back(Outgoing{Outgoing::Type::ping, {}});
            write_next();
        }
        messages_in_period_ = 0;
        next_ping_ = now + milliseconds(opts.ping_period_ms);
    }
    arm_timer();
}

}  // namespace nk::realtime
