#include "net/server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <condition_variable>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <unordered_map>
#include <vector>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "metrics/registry.hpp"
#include "net/content_coding.hpp"
#include "net/http_parse.hpp"
#include "net/text.hpp"

namespace nk::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::string_view kCacheControl = "no-store, no-cache, must-revalidate";
constexpr std::string_view kAllowHeaders = "Authorization, Content-Type, User-Agent";
constexpr std::string_view kAllowMethods = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";

constexpr std::array<std::string_view, 8> kMethodNames = {"GET",   "HEAD",   "POST",    "PUT",
                                                          "PATCH", "DELETE", "OPTIONS", "OTHER"};

// Statuses whose request counters are cached per (route, method); others are
// looked up in the registry each time (rare).
constexpr std::array<int, 16> kCachedStatuses = {200, 201, 204, 400, 401, 403, 404, 409,
                                                 413, 415, 429, 431, 500, 501, 503, 101};

int status_slot(int status) {
    for (std::size_t i = 0; i < kCachedStatuses.size(); ++i) {
        if (kCachedStatuses[i] == status) return static_cast<int>(i);
    }
    return -1;
}

// Why an HTTP connection ended: the label `reason` of http_connections_closed. Every accepted
// connection ends with exactly one of these (those refused at accept by socket.max_connections
// are counted in http_connections_rejected instead).
enum class CloseReason {
    client_closed,   // the peer closed or reset the connection (EOF, RST, write error)
    read_timeout,    // a request (or the TLS handshake, or a first request) not read within socket.read_timeout_ms
    idle_timeout,    // no next request on a keep-alive connection within socket.idle_timeout_ms
    write_timeout,   // a response not taken by the peer within socket.write_timeout_ms
    bad_request,     // malformed HTTP or ambiguous framing: 400 and close
    limit,           // header or body over its limit: 431 / 413 and close
    tls_error,       // the TLS layer failed (handshake or record), other than a peer's close
    not_keep_alive,  // closed after a response sent with Connection: close
    shutdown,        // closed by the server's shutdown
    upgraded,        // handed over to a WebSocket handler (no longer an HTTP connection)
};
constexpr std::array<std::string_view, 10> kCloseReasonNames = {
    "client_closed", "read_timeout", "idle_timeout",   "write_timeout", "bad_request",
    "limit",         "tls_error",    "not_keep_alive", "shutdown",      "upgraded"};
static_assert(static_cast<std::size_t>(CloseReason::upgraded) + 1 == kCloseReasonNames.size());

// The reason for a connection ended by the error `ec` of a read or write; `timeout` when the
// operation ran out of time (which of the socket.*_timeout_ms it was depends on the operation).
CloseReason close_reason_of(const boost::system::error_code& ec, CloseReason timeout) {
    if (ec == beast::error::timeout) return timeout;
    if (ec.category() == asio::error::get_ssl_category() && ec != asio::ssl::error::stream_truncated) {
        return CloseReason::tls_error;
    }
    return CloseReason::client_closed;
}

void append_number(std::string& out, std::uint64_t n) {
    char buf[24];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
    (void)ec;
    out.append(buf, end);
}

// RFC 6455 4.2.1: the base64 encoding of 16 bytes, i.e. 22 base64 characters and "==". As Go's
// decoder (and so Nakama) does, the unused low bits of the last character are not checked.
bool valid_websocket_key(std::string_view key) {
    if (key.size() != 24 || key.substr(22) != "==") return false;
    return std::all_of(key.begin(), key.begin() + 22, [](char c) {
        return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
               c == '+' || c == '/';
    });
}

// Header values must not carry CR/LF (response splitting).
void append_header_value(std::string& out, std::string_view v) {
    for (char c : v) out.push_back(c == '\r' || c == '\n' ? ' ' : c);
}

}  // namespace

// ---------------------------------------------------------------------------

struct RouteMetrics {
    std::atomic<metrics::Histogram*> latency{nullptr};
    std::array<std::atomic<metrics::Counter*>, kMethodNames.size() * kCachedStatuses.size()>
        requests{};
};

class ConnectionBase {
public:
    virtual ~ConnectionBase() = default;
    // Both run on the connection's own executor.
    virtual void begin_shutdown() = 0;
    virtual void force_close() = 0;
    virtual asio::any_io_executor executor() = 0;
};

struct ServerCore {
    Options options;
    Router& router;
    metrics::Registry* registry;

    std::vector<std::unique_ptr<asio::io_context>> contexts;
    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    std::vector<std::thread> threads;
    std::optional<tcp::acceptor> acceptor;
    std::optional<ssl::context> tls;
    std::uint16_t bound_port = 0;
    std::atomic<std::size_t> next_context{0};
    bool started = false;
    bool joined = false;

    std::atomic<bool> shutting_down{false};
    std::atomic<std::size_t> open_connections{0};
    std::atomic<std::size_t> in_flight{0};

    // Connections that are not idle (reading a request, handling, writing).
    std::mutex busy_mutex;
    std::condition_variable busy_cv;
    std::size_t busy = 0;

    std::mutex connections_mutex;
    std::uint64_t next_connection_id = 0;
    std::unordered_map<std::uint64_t, std::weak_ptr<ConnectionBase>> connections;

    std::unique_ptr<RouteMetrics[]> route_metrics;
    metrics::Gauge* connections_open = nullptr;
    metrics::Counter* connections_rejected = nullptr;
    std::array<metrics::Counter*, kCloseReasonNames.size()> connections_closed{};

    ServerCore(const Options& o, Router& r, metrics::Registry* m) : options(o), router(r), registry(m) {}

    std::size_t body_limit() const { return options.max_request_size_bytes; }
    // Maximum of a connection's read buffer (see net::read_buffer_limit).
    std::size_t read_buffer_limit() const { return net::read_buffer_limit(options); }
    // How much of an unwanted body is read and dropped before closing, so
    // the peer sees our response instead of a reset.
    std::size_t discard_cap() const {
        return std::max<std::size_t>(4 * options.max_request_size_bytes, 1 << 20);
    }

    void set_busy(bool b) {
        std::lock_guard lock(busy_mutex);
        if (b) {
            ++busy;
        } else if (--busy == 0) {
            busy_cv.notify_all();
        }
    }

    std::uint64_t register_connection(std::weak_ptr<ConnectionBase> c) {
        std::lock_guard lock(connections_mutex);
        std::uint64_t id = ++next_connection_id;
        connections.emplace(id, std::move(c));
        return id;
    }
    void unregister_connection(std::uint64_t id) {
        std::lock_guard lock(connections_mutex);
        connections.erase(id);
    }
    std::vector<std::shared_ptr<ConnectionBase>> live_connections() {
        std::vector<std::shared_ptr<ConnectionBase>> out;
        std::lock_guard lock(connections_mutex);
        out.reserve(connections.size());
        for (auto& [id, w] : connections) {
            if (auto c = w.lock()) out.push_back(std::move(c));
        }
        return out;
    }

    // Gives back the place in max_connections an accepted connection took.
    void release_connection() {
        open_connections.fetch_sub(1, std::memory_order_relaxed);
        if (connections_open) connections_open->add(-1);
    }

    void count_close(CloseReason reason) {
        if (auto* c = connections_closed[static_cast<std::size_t>(reason)]) c->inc();
    }

    void record_request(std::size_t route_id, Method method, int status, Clock::time_point start) {
        if (!registry) return;
        RouteMetrics& rm = route_metrics[std::min(route_id, router.route_count() - 1)];
        std::string_view route = router.route_name(route_id);
        metrics::Histogram* h = rm.latency.load(std::memory_order_acquire);
        if (!h) {
            h = &registry->histogram("http_request_latency_ms", "HTTP request latency in ms",
                                     metrics::latency_ms_buckets(), {{"route", std::string(route)}});
            rm.latency.store(h, std::memory_order_release);
        }
        double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
        h->observe(ms);
        std::size_t m = static_cast<std::size_t>(method);
        int slot = status_slot(status);
        metrics::Counter* c = nullptr;
        if (slot >= 0) c = rm.requests[m * kCachedStatuses.size() + slot].load(std::memory_order_acquire);
        if (!c) {
            c = &registry->counter(
                "http_requests", "HTTP requests by route, method and status",
                {{"route", std::string(route)}, {"method", std::string(kMethodNames[m])}, {"status", std::to_string(status)}});
            if (slot >= 0) {
                rm.requests[m * kCachedStatuses.size() + slot].store(c, std::memory_order_release);
            }
        }
        c->inc();
    }

    void accept_next();
    void on_accept(std::size_t ctx_index, tcp::socket socket);
    void close_acceptor();
    void stop_threads();
};

struct Server::Impl : ServerCore {
    using ServerCore::ServerCore;
};

// ---------------------------------------------------------------------------
// One HTTP connection, pinned to one io_context: every member is touched only
// on that context's thread (Responders hop here with dispatch()).

template <typename Stream>
class Connection final : public ConnectionBase,
                         public std::enable_shared_from_this<Connection<Stream>> {
public:
    Connection(ServerCore& server, Stream stream)
        : server_(server),
          stream_(std::move(stream)),
          executor_(stream_.get_executor()),
          buffer_(server.read_buffer_limit()) {
        boost::system::error_code ec;
        auto ep = lowest().socket().remote_endpoint(ec);
        if (!ec) {
            auto address = ep.address();
            if (address.is_v6() && address.to_v6().is_v4_mapped()) {
                address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
            }
            socket_ip_ = address.to_string();
            socket_port_ = std::to_string(ep.port());
        }
        header_out_.reserve(256);
    }

    ~Connection() override {
        if (id_) server_.unregister_connection(id_);
        if (busy_) server_.set_busy(false);
        if (in_flight_) server_.in_flight.fetch_sub(1, std::memory_order_relaxed);
        if (!detached_) server_.release_connection();
    }

    void start() {
        id_ = server_.register_connection(this->weak_from_this());
        if (server_.shutting_down.load()) return close_now(CloseReason::shutdown);
        if constexpr (std::is_same_v<Stream, TlsStream>) {
            set_busy(true);
            lowest().expires_after(std::chrono::milliseconds(server_.options.read_timeout_ms));
            stream_.async_handshake(ssl::stream_base::server,
                                    [self = this->shared_from_this()](beast::error_code ec) {
                                        if (self->state_ == State::closed) return;
                                        if (ec) {
                                            return self->close_now(
                                                close_reason_of(ec, CloseReason::read_timeout));
                                        }
                                        self->set_busy(false);
                                        self->wait_for_request();
                                    });
        } else {
            wait_for_request();
        }
    }

    void begin_shutdown() override {
        shutdown_requested_ = true;
        if (state_ == State::idle) close_now(CloseReason::shutdown);
    }

    void force_close() override {
        if (state_ != State::closed && !detached_) close_now(CloseReason::shutdown);
    }

    asio::any_io_executor executor() override { return executor_; }

private:
    enum class State { idle, reading, handling, writing, lingering, closed };

    beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

    void set_busy(bool b) {
        if (busy_ == b) return;
        busy_ = b;
        server_.set_busy(b);
    }

    // Waits for the first byte of the next request under the idle timeout
    // (the read timeout for a connection's first request), so an idle
    // keep-alive connection is told apart from one mid-request.
    void wait_for_request() {
        if (shutdown_requested_) return close_now(CloseReason::shutdown);
        parser_.emplace();
        limit_request_parser(*parser_, server_.options);
        if (buffer_.size() > 0) return read_header();
        state_ = State::idle;
        set_busy(false);
        auto timeout = first_request_ ? server_.options.read_timeout_ms : server_.options.idle_timeout_ms;
        lowest().expires_after(std::chrono::milliseconds(timeout));
        stream_.async_read_some(
            buffer_.prepare(4096),
            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                if (self->state_ == State::closed) return;
                if (ec) {
                    // The first request of a connection is waited for under the read timeout.
                    return self->close_now(close_reason_of(
                        ec, self->first_request_ ? CloseReason::read_timeout : CloseReason::idle_timeout));
                }
                self->buffer_.commit(n);
                self->read_header();
            });
    }

    void read_header() {
        state_ = State::reading;
        set_busy(true);
        first_request_ = false;
        lowest().expires_after(std::chrono::milliseconds(server_.options.read_timeout_ms));
        http::async_read_header(stream_, buffer_, *parser_,
                                [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                                    if (self->state_ == State::closed) return;
                                    if (ec) return self->on_read_error(ec);
                                    self->on_header();
                                });
    }

    void on_header() {
        auto& req = parser_->get();
        if (auto error = framing_error(req)) {
            return reject(400, Status::invalid_argument(std::string(*error)), CloseReason::bad_request);
        }
        if (!parser_->is_done() && req.version() >= 11) {
            auto expect = req[http::field::expect];
            if (iequals(expect, "100-continue")) {
                static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
                asio::async_write(stream_, asio::buffer(kContinue.data(), kContinue.size()),
                                  [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                                      if (self->state_ == State::closed) return;
                                      if (ec) {
                                          return self->close_now(
                                              close_reason_of(ec, CloseReason::write_timeout));
                                      }
                                      self->read_body();
                                  });
                return;
            }
        }
        read_body();
    }

    void read_body() {
        if (parser_->is_done()) return on_request();
        http::async_read(stream_, buffer_, *parser_,
                         [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                             if (self->state_ == State::closed) return;
                             if (ec) return self->on_read_error(ec);
                             self->on_request();
                         });
    }

    void on_read_error(beast::error_code ec) {
        if (ec == http::error::header_limit) {
            return reject(431, Status::invalid_argument("Request header fields too large"),
                          CloseReason::limit);
        }
        if (ec == http::error::body_limit) {
            return reject(413, Status::invalid_argument("Request body too large"), CloseReason::limit);
        }
        if (ec == http::error::buffer_overflow) {
            // The read buffer is full (read_buffer_limit): a header section that does not end,
            // or, after it, a chunk-size line or trailer section that does not end.
            if (!parser_->is_header_done()) {
                return reject(431, Status::invalid_argument("Request header fields too large"),
                              CloseReason::limit);
            }
            return reject(400, Status::invalid_argument("Chunk extension or trailer too large"),
                          CloseReason::limit);
        }
        if (ec == beast::error::timeout || ec == http::error::end_of_stream ||
            ec == asio::error::eof || ec == asio::error::operation_aborted ||
            ec == asio::error::connection_reset || ec.category() == asio::error::get_ssl_category() ||
            ec == asio::ssl::error::stream_truncated) {
            return close_now(close_reason_of(ec, CloseReason::read_timeout));
        }
        if (ec == http::error::partial_message) {
            // The peer ended its side half-way through a request. It may still read (a
            // half-close): answer as Go's net/http does, but count the end as the peer's.
            return reject(400, Status::invalid_argument("Incomplete HTTP request"),
                          CloseReason::client_closed);
        }
        // Any other parser error is malformed HTTP.
        reject(400, Status::invalid_argument("Malformed HTTP request"), CloseReason::bad_request);
    }

    // Answers an unreadable request and closes (after draining what the peer
    // is still sending, so it receives the answer).
    void reject(int http_status, const Status& status, CloseReason reason) {
        rejected_ = true;
        close_reason_ = reason;
        Response r = Response::error(status);
        r.status = http_status;
        method_ = parser_ && parser_->is_header_done() ? method_from_verb(parser_->get().method())
                                                       : Method::other;
        route_id_ = 0;
        start_ = Clock::now();
        begin_request();
        send(std::move(r), /*keep_alive=*/false, /*head=*/false);
    }

    void begin_request() {
        accept_gzip_ = false;  // set by on_request() from this request's Accept-Encoding
        state_ = State::handling;
        set_busy(true);
        in_flight_ = true;
        server_.in_flight.fetch_add(1, std::memory_order_relaxed);
    }

    void on_request() {
        start_ = Clock::now();
        begin_request();
        auto& breq = parser_->get();

        Request req = request_from_message(breq, socket_ip_, socket_port_, server_.options.proxy_count);
        method_ = req.method;
        keep_alive_ = req.keep_alive;
        accept_gzip_ = server_.options.response_compression_min_bytes > 0 &&
                       accepts_gzip(breq[http::field::accept_encoding]);
        http10_ = breq.version() < 11;

        if (auto error = invalid_utf8(req)) {
            route_id_ = 0;
            return send(Response::error(Status::invalid_argument(*error)), keep_alive_, head());
        }

        if (req.method == Method::get && server_.router.find_upgrade(req.path) &&
            beast::websocket::is_upgrade(breq)) {
            return handle_upgrade(std::move(req));
        }

        req.body = std::move(breq.body());
        auto encoding = breq[http::field::content_encoding];
        if (!encoding.empty()) {
            switch (decode_body(encoding, req.body, server_.body_limit())) {
                case DecodeResult::ok: break;
                case DecodeResult::too_large:
                    route_id_ = 0;
                    return send(Response::error(Status::invalid_argument("Request body too large")),
                                keep_alive_, false, 413);
                case DecodeResult::corrupt:
                    route_id_ = 0;
                    return send(Response::error(Status::invalid_argument("Invalid compressed request body")),
                                keep_alive_, false);
                case DecodeResult::unsupported:
                    route_id_ = 0;
                    return send(Response::error(Status::invalid_argument("Unsupported Content-Encoding")),
                                keep_alive_, false);
            }
        }

        if (req.method == Method::options) {
            KeyValues ignored;
            route_id_ = server_.router.match(Method::get, req.path, ignored).route_id;
            Response r;
            r.status = 200;
            r.content_type.clear();
            r.headers.emplace_back("Access-Control-Allow-Headers", kAllowHeaders);
            r.headers.emplace_back("Access-Control-Allow-Methods", kAllowMethods);
            return send(std::move(r), keep_alive_, false);
        }

        auto match = server_.router.match(req.method, req.path, req.path_params);
        route_id_ = match.route_id;
        switch (match.kind) {
            case Router::Match::Kind::not_found:
                return send(Response::error(Status::not_found("Not Found")), keep_alive_, head());
            case Router::Match::Kind::method_not_allowed:
                return send(Response::error(Status::unimplemented("Method Not Allowed")), keep_alive_,
                            head());
            case Router::Match::Kind::handler: break;
        }
        Responder responder(
            [self = this->shared_from_this()](Response&& r) {
                // Inline when already on this connection's thread, else posted there.
                asio::dispatch(self->executor_, [self, r = std::move(r)]() mutable {
                    self->send(std::move(r), self->keep_alive_, self->head());
                });
            },
            client_gone_);
        try {
            (*match.handler)(std::move(req), responder);
        } catch (const std::exception& e) {
            responder(Response::error(Status::internal(e.what())));
        } catch (...) {
            responder(Response::error(Status::internal("Internal Server Error")));
        }
        if (state_ == State::handling) watch_client();
    }

    // While a handler's work is pending nothing reads the socket, so a client that closed or
    // reset would go unnoticed until the answer is written, and queued work for it would still
    // run. Wait for readability: EOF or an error marks the client gone (Responder::abandoned);
    // bytes (a pipelined request) end the watch, they are read after the answer.
    void watch_client() {
        if (watching_) return;
        watching_ = true;
        lowest().socket().async_wait(
            tcp::socket::wait_read, [self = this->shared_from_this()](beast::error_code ec) {
                self->watching_ = false;
                if (ec || self->state_ != State::handling) return;
                char byte = 0;
                const auto n = ::recv(self->lowest().socket().native_handle(), &byte, 1,
                                      MSG_PEEK | MSG_DONTWAIT);
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
                    return self->watch_client();
                if (n <= 0) self->client_gone_->store(true, std::memory_order_release);
            });
    }

    bool head() const { return method_ == Method::head; }

    // Writes the response; the status of the wire message is `http_status`
    // when given (413 with a code-3 body), else response.status.
    void send(Response&& r, bool keep_alive, bool head_only, int http_status = 0) {
        if (state_ != State::handling) return;  // closed meanwhile (shutdown grace ran out)
        state_ = State::writing;
        int status = http_status ? http_status : r.status;
        status_ = status;
        const bool shutting_down = shutdown_requested_ || server_.shutting_down.load();
        if (!rejected_) close_reason_ = keep_alive ? CloseReason::shutdown : CloseReason::not_keep_alive;
        keep_alive = keep_alive && !shutting_down;
        close_after_write_ = !keep_alive;
        // gzip when the client accepts it and the body is large enough to gain from it (a
        // HEAD answer keeps the identity length; a handler that encoded its body itself is
        // left alone).
        const bool compress = accept_gzip_ && !head_only &&
                              r.body.size() >= server_.options.response_compression_min_bytes &&
                              !has_header(r.headers, "Content-Encoding");
        if (compress) r.body = gzip_encode(r.body);

        std::string& h = header_out_;
        h.clear();
        h += "HTTP/1.1 ";
        append_number(h, static_cast<std::uint64_t>(status));
        h += ' ';
        h += http::obsolete_reason(static_cast<http::status>(status));
        h += "\r\n";
        if (!r.content_type.empty()) {
            h += "Content-Type: ";
            append_header_value(h, r.content_type);
            h += "\r\n";
        }
        h += "Content-Length: ";
        append_number(h, r.body.size());
        h += "\r\nCache-Control: ";
        h += kCacheControl;
        h += "\r\nAccess-Control-Allow-Origin: *\r\n";
        for (const auto& [k, v] : r.headers) {
            append_header_value(h, k);
            h += ": ";
            append_header_value(h, v);
            h += "\r\n";
        }
        if (compress) h += "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n";
        if (!keep_alive) {
            h += "Connection: close\r\n";
        } else if (http10_) {
            h += "Connection: keep-alive\r\n";
        }
        h += "\r\n";
        body_out_ = std::move(r.body);
        if (head_only) body_out_.clear();

        lowest().expires_after(std::chrono::milliseconds(server_.options.write_timeout_ms));
        std::array<asio::const_buffer, 2> buffers{asio::buffer(header_out_), asio::buffer(body_out_)};
        asio::async_write(stream_, buffers,
                          [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                              self->on_written(ec);
                          });
    }

    void on_written(beast::error_code ec) {
        if (in_flight_) {
            in_flight_ = false;
            server_.in_flight.fetch_sub(1, std::memory_order_relaxed);
        }
        server_.record_request(route_id_, method_, status_, start_);
        if (state_ == State::closed) return;
        if (ec) return close_now(close_reason_of(ec, CloseReason::write_timeout));
        if (close_after_write_) return linger_and_close();
        wait_for_request();
    }

    // After a final response: send FIN, then read and drop what the peer
    // still sends (up to a cap, under the read timeout) so that closing with
    // unread data does not reset the connection before the peer read our
    // response. Under TLS, a request read whole ends with close_notify instead.
    void linger_and_close() {
        state_ = State::lingering;
        set_busy(false);
        if constexpr (std::is_same_v<Stream, TlsStream>) {
            // The request was read whole: end TLS properly. close_notify tells the client the
            // response is complete (OpenSSL 3 clients otherwise report an unexpected EOF); the
            // wait for the client's close_notify is bounded like the drain below.
            if (!rejected_) {
                lowest().expires_after(std::chrono::milliseconds(
                    std::min<std::uint32_t>(server_.options.read_timeout_ms, 5000)));
                stream_.async_shutdown([self = this->shared_from_this()](beast::error_code) {
                    if (self->state_ == State::closed) return;
                    self->close_now(self->close_reason_);
                });
                return;
            }
        }
        boost::system::error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_send, ignored);
        lowest().expires_after(std::chrono::milliseconds(
            std::min<std::uint32_t>(server_.options.read_timeout_ms, 5000)));
        drained_ = buffer_.size();
        buffer_.consume(buffer_.size());
        drain();
    }

    void drain() {
        if (drained_ > server_.discard_cap()) return close_now(close_reason_);
        // Read straight from the socket: under TLS the TLS layer would try to
        // write (alerts) on a half-closed socket; the bytes are dropped anyway.
        lowest().async_read_some(
            asio::buffer(discard_),
            [self = this->shared_from_this()](beast::error_code ec, std::size_t n) {
                if (self->state_ == State::closed) return;
                if (ec) return self->close_now(self->close_reason_);
                self->drained_ += n;
                self->drain();
            });
    }

    // Every end of an HTTP connection comes here (but a handover to an upgrade handler), once.
    void close_now(CloseReason reason) {
        if (state_ == State::closed || detached_) return;
        state_ = State::closed;
        server_.count_close(reason);
        client_gone_->store(true, std::memory_order_release);
        set_busy(false);
        boost::system::error_code ignored;
        lowest().socket().shutdown(tcp::socket::shutdown_both, ignored);
        lowest().close();
    }

    void handle_upgrade(Request&& req);

    // Why the WebSocket handshake of an upgrade request could not complete (see upgrade.hpp):
    // the answer to send instead of calling the handler, or nullopt.
    std::optional<Response> handshake_refusal(const Request& req) const {
        if (!valid_websocket_key(req.header("Sec-WebSocket-Key"))) {
            return Response::error(Status::invalid_argument(
                "Sec-WebSocket-Key must be the base64 encoding of 16 bytes"));
        }
        if (req.header("Sec-WebSocket-Version") != "13") {
            Response r = Response::error(Status::invalid_argument("Unsupported Sec-WebSocket-Version"));
            r.headers.emplace_back("Sec-WebSocket-Version", "13");
            return r;
        }
        if (buffer_.size() > 0) {
            return Response::error(
                Status::invalid_argument("Data sent before the WebSocket handshake completed"));
        }
        return std::nullopt;
    }

    ServerCore& server_;
    Stream stream_;
    const asio::any_io_executor executor_;  // read from any thread by Responders
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    State state_ = State::idle;
    bool busy_ = false;
    bool in_flight_ = false;
    bool detached_ = false;
    bool first_request_ = true;
    bool shutdown_requested_ = false;
    bool keep_alive_ = true;
    bool watching_ = false;  // watch_client() has a wait pending
    // Shared with this connection's Responders (Responder::abandoned).
    const std::shared_ptr<std::atomic<bool>> client_gone_ = std::make_shared<std::atomic<bool>>(false);
    bool accept_gzip_ = false;  // the current request's Accept-Encoding allows gzip
    bool rejected_ = false;     // answered by reject(): the peer may still be sending
    bool http10_ = false;
    bool close_after_write_ = false;
    // Why the connection closes once the response being written is out (close_after_write_).
    CloseReason close_reason_ = CloseReason::not_keep_alive;
    std::uint64_t id_ = 0;
    std::string socket_ip_;
    std::string socket_port_;
    std::string header_out_;
    std::string body_out_;
    Method method_ = Method::other;
    std::size_t route_id_ = 0;
    int status_ = 0;
    Clock::time_point start_;
    std::size_t drained_ = 0;
    std::array<char, 8192> discard_;
};

// The Upgrade handed to an UpgradeHandler; lives on the stack of handle_upgrade.
class UpgradeSeam final : public Upgrade {
public:
    explicit UpgradeSeam(std::function<UpgradedConnection()> take_fn) : take_fn_(std::move(take_fn)) {}
    void reject(Response&& response) override {
        if (taken_ || rejected_) return;
        rejected_ = true;
        response_ = std::move(response);
    }
    UpgradedConnection take() override {
        if (taken_ || rejected_) throw std::logic_error("Upgrade: take() after take() or reject()");
        taken_ = true;
        return take_fn_();
    }

    std::function<UpgradedConnection()> take_fn_;
    bool taken_ = false;
    bool rejected_ = false;
    Response response_;
};

template <typename Stream>
void Connection<Stream>::handle_upgrade(Request&& req) {
    route_id_ = server_.router.upgrade_route_id(req.path);
    if (auto refusal = handshake_refusal(req)) return send(std::move(*refusal), false, false);
    const UpgradeHandler* handler = server_.router.find_upgrade(req.path);
    UpgradeSeam seam([this]() {
        lowest().expires_never();
        // Its place in max_connections goes with it, given back when the handler's socket closes.
        UpgradedConnection out{std::variant<PlainStream, TlsStream>(std::in_place_type<Stream>,
                                                                    std::move(stream_)),
                               parser_->release(), std::move(buffer_),
                               ConnectionSlot([core = &server_] { core->release_connection(); }),
                               UpgradeOutcome([core = &server_, route = route_id_, method = method_,
                                               start = start_](int status) {
                                   core->record_request(route, method, status, start);
                               })};
        // The connection now belongs to the handler: it is no longer an HTTP request.
        detached_ = true;
        state_ = State::closed;
        server_.count_close(CloseReason::upgraded);
        set_busy(false);
        if (in_flight_) {
            in_flight_ = false;
            server_.in_flight.fetch_sub(1, std::memory_order_relaxed);
        }
        return out;
    });
    try {
        (*handler)(std::move(req), seam);
    } catch (const std::exception& e) {
        if (!seam.taken_ && !seam.rejected_) seam.reject(Response::error(Status::internal(e.what())));
    } catch (...) {
        if (!seam.taken_ && !seam.rejected_) seam.reject(Response::error(Status::internal("Internal Server Error")));
    }
    if (seam.taken_) return;  // counted when the handler reports the handshake's outcome
    if (!seam.rejected_) {
        seam.response_ = Response::error(Status::internal("Upgrade handler did not answer"));
    }
    send(std::move(seam.response_), false, false);
}

// ---------------------------------------------------------------------------

void ServerCore::accept_next() {
    std::size_t i = next_context.fetch_add(1, std::memory_order_relaxed) % contexts.size();
    acceptor->async_accept(*contexts[i], [this, i](beast::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor->is_open()) return;
        if (!ec) {
            on_accept(i, std::move(socket));
            return accept_next();
        }
        // Out of descriptors and similar: back off a little instead of spinning.
        auto timer = std::make_shared<asio::steady_timer>(acceptor->get_executor(),
                                                          std::chrono::milliseconds(50));
        timer->async_wait([this, timer](beast::error_code) {
            if (acceptor->is_open()) accept_next();
        });
    });
}

void ServerCore::on_accept(std::size_t ctx_index, tcp::socket socket) {
    if (options.max_connections > 0 &&
        open_connections.load(std::memory_order_relaxed) >= options.max_connections) {
        if (connections_rejected) connections_rejected->inc();
        boost::system::error_code ignored;
        socket.close(ignored);
        return;
    }
    open_connections.fetch_add(1, std::memory_order_relaxed);
    if (connections_open) connections_open->add(1);
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    // Construct and start on the connection's own thread.
    asio::post(*contexts[ctx_index], [this, s = std::move(socket)]() mutable {
        if (tls) {
            auto c = std::make_shared<Connection<TlsStream>>(*this, TlsStream(beast::tcp_stream(std::move(s)), *tls));
            c->start();
        } else {
            auto c = std::make_shared<Connection<PlainStream>>(*this, PlainStream(std::move(s)));
            c->start();
        }
    });
}

void ServerCore::close_acceptor() {
    if (!acceptor) return;
    auto do_close = [this] {
        boost::system::error_code ignored;
        if (acceptor->is_open()) acceptor->close(ignored);
    };
    if (started && !joined && !contexts[0]->stopped()) {
        if (contexts[0]->get_executor().running_in_this_thread()) return do_close();
        std::promise<void> done;
        asio::post(*contexts[0], [&] {
            do_close();
            done.set_value();
        });
        done.get_future().wait();
    } else {
        do_close();
    }
}

void ServerCore::stop_threads() {
    if (joined) return;
    joined = true;
    for (auto& g : guards) g.reset();
    for (auto& c : contexts) c->stop();
    for (auto& t : threads) {
        if (t.joinable()) t.join();
    }
}

// ---------------------------------------------------------------------------

Server::Server(const Options& options, Router& router, metrics::Registry* metrics)
    : impl_(std::make_unique<Impl>(options, router, metrics)) {
    unsigned n = options.io_threads ? options.io_threads : std::thread::hardware_concurrency();
    if (n == 0) n = 1;
    for (unsigned i = 0; i < n; ++i) {
        impl_->contexts.push_back(std::make_unique<asio::io_context>(1));
    }
}

Server::~Server() {
    if (impl_->started && !impl_->joined) shutdown(std::chrono::milliseconds(0));
    impl_->stop_threads();
    // Destroying the contexts destroys pending handlers and with them the
    // connections, which still refer to *impl_: do it while impl_ is whole.
    impl_->acceptor.reset();
    for (auto& c : impl_->contexts) c.reset();
}

void Server::start() {
    Impl& s = *impl_;
    if (s.started) throw std::logic_error("Server::start called twice");

    if (!s.options.ssl_certificate.empty() || !s.options.ssl_private_key.empty()) {
        if (s.options.ssl_certificate.empty() || s.options.ssl_private_key.empty()) {
            throw std::runtime_error(
                "socket.ssl_certificate and socket.ssl_private_key must be set together");
        }
        s.tls.emplace(ssl::context::tls_server);
        s.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
        boost::system::error_code ec;
        s.tls->use_certificate_chain_file(s.options.ssl_certificate, ec);
        if (ec) {
            throw std::runtime_error("cannot load TLS certificate '" + s.options.ssl_certificate +
                                     "': " + ec.message());
        }
        s.tls->use_private_key_file(s.options.ssl_private_key, ssl::context::pem, ec);
        if (ec) {
            throw std::runtime_error("cannot load TLS private key '" + s.options.ssl_private_key +
                                     "': " + ec.message());
        }
    }

    boost::system::error_code ec;
    asio::ip::address address;
    if (s.options.address.empty()) {
        address = asio::ip::address_v6::any();
    } else {
        address = asio::ip::make_address(s.options.address, ec);
        if (ec) throw std::runtime_error("invalid socket.address '" + s.options.address + "'");
    }
    tcp::endpoint endpoint(address, s.options.port);
    std::string where = (s.options.address.empty() ? std::string("*") : s.options.address) + ":" +
                        std::to_string(s.options.port);
    s.acceptor.emplace(*s.contexts[0]);
    s.acceptor->open(endpoint.protocol(), ec);
    if (ec && s.options.address.empty()) {
        // No IPv6 on this host: all IPv4 interfaces then.
        endpoint = tcp::endpoint(asio::ip::address_v4::any(), s.options.port);
        ec.clear();
        s.acceptor->open(endpoint.protocol(), ec);
    }
    if (ec) throw std::runtime_error("cannot open socket for " + where + ": " + ec.message());
    if (endpoint.address().is_v6()) s.acceptor->set_option(asio::ip::v6_only(false), ec);
    s.acceptor->set_option(asio::socket_base::reuse_address(true), ec);
    s.acceptor->bind(endpoint, ec);
    if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
    s.acceptor->listen(asio::socket_base::max_listen_connections, ec);
    if (ec) throw std::runtime_error("cannot listen on " + where + ": " + ec.message());
    s.bound_port = s.acceptor->local_endpoint().port();

    if (s.registry) {
        s.route_metrics = std::make_unique<RouteMetrics[]>(s.router.route_count());
        s.connections_open = &s.registry->gauge("http_connections_open", "Open HTTP connections");
        s.connections_rejected = &s.registry->counter(
            "http_connections_rejected", "Connections closed at accept (socket.max_connections)");
        for (std::size_t i = 0; i < kCloseReasonNames.size(); ++i) {
            s.connections_closed[i] = &s.registry->counter(
                "http_connections_closed", "HTTP connections closed, by reason",
                {{"reason", std::string(kCloseReasonNames[i])}});
        }
    }

    s.started = true;
    s.accept_next();
    for (auto& c : s.contexts) s.guards.emplace_back(c->get_executor());
    for (auto& c : s.contexts) {
        s.threads.emplace_back([ctx = c.get()] {
            for (;;) {
                try {
                    ctx->run();
                    return;
                } catch (...) {
                    // A throwing completion handler must not take the io thread down.
                }
            }
        });
    }
}

std::uint16_t Server::port() const { return impl_->bound_port; }

std::size_t Server::io_thread_count() const { return impl_->contexts.size(); }

asio::io_context& Server::io_context() { return *impl_->contexts[0]; }

asio::any_io_executor Server::next_executor() {
    std::size_t i = impl_->next_context.fetch_add(1, std::memory_order_relaxed) % impl_->contexts.size();
    return impl_->contexts[i]->get_executor();
}

void Server::stop_accepting() { impl_->close_acceptor(); }

std::size_t Server::in_flight() const { return impl_->in_flight.load(std::memory_order_relaxed); }

void Server::shutdown(std::chrono::milliseconds grace) {
    Impl& s = *impl_;
    if (!s.started || s.joined) return;
    s.close_acceptor();
    s.shutting_down.store(true);
    for (auto& c : s.live_connections()) {
        asio::post(c->executor(), [c] { c->begin_shutdown(); });
    }
    {
        std::unique_lock lock(s.busy_mutex);
        s.busy_cv.wait_for(lock, grace, [&] { return s.busy == 0; });
    }
    auto left = s.live_connections();
    std::atomic<std::size_t> pending{left.size()};
    std::promise<void> all_closed;
    if (left.empty()) all_closed.set_value();
    for (auto& c : left) {
        asio::post(c->executor(), [c, &pending, &all_closed] {
            c->force_close();
            if (pending.fetch_sub(1) == 1) all_closed.set_value();
        });
    }
    left.clear();
    all_closed.get_future().wait_for(std::chrono::seconds(5));
    s.stop_threads();
}

void Server::join() { impl_->stop_threads(); }

}  // namespace nk::net
