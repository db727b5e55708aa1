// Realtime over real sockets: net::Server + Realtime + the real EventPipeline,
// with Beast WebSocket clients on loopback and handlers recording the events.
#include <doctest/doctest.h>

#include <utility>  // Boost 1.74 asio/awaitable.hpp needs std::exchange (C++20)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "auth/tokens.hpp"
#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "realtime/realtime.hpp"

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using namespace std::chrono_literals;
using nk::events::Event;
using nk::events::Kind;

namespace {

constexpr auto kSafety = 20s;  // safety net only; nothing here measures time

// Handlers that record every session event, in the order they ran.
class Recorder final : public nk::events::HandlerSource {
public:
    Recorder() {
        auto set = std::make_shared<nk::events::HandlerSet>();
        auto record = [this](const Event& e) {
            std::lock_guard lock(mutex_);
            events_.push_back(e);
            cv_.notify_all();
        };
        set->session_start.push_back(record);
        set->session_end.push_back(record);
        set_ = set;
    }
    std::shared_ptr<const nk::events::HandlerSet> handlers() const override { return set_; }

    std::vector<Event> events() const {
        std::lock_guard lock(mutex_);
        return events_;
    }
    // Waits for the first event matching `pred`.
    std::optional<Event> wait_for(const std::function<bool(const Event&)>& pred,
                                  std::chrono::milliseconds limit = kSafety) const {
        std::unique_lock lock(mutex_);
        std::optional<Event> found;
        cv_.wait_for(lock, limit, [&] {
            for (const auto& e : events_) {
                if (pred(e)) {
                    found = e;
                    return true;
                }
            }
            return false;
        });
        return found;
    }
    // The session_start of the user's session after the first `skip` (a user may have several).
    std::optional<Event> wait_start_of_user(const std::string& user_id, std::size_t skip = 0) const {
        std::unique_lock lock(mutex_);
        std::optional<Event> found;
        cv_.wait_for(lock, kSafety, [&] {
            std::size_t seen = 0;
            for (const auto& e : events_) {
                if (e.kind == Kind::session_start && e.context().user_id == user_id &&
                    seen++ == skip) {
                    found = e;
                    return true;
                }
            }
            return false;
        });
        return found;
    }
    std::size_t starts_of_user(const std::string& user_id) const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& e : events_)
            n += e.kind == Kind::session_start && e.context().user_id == user_id;
        return n;
    }
    std::optional<Event> wait_end(const std::string& session_id) const {
        return wait_for([&](const Event& e) {
            return e.kind == Kind::session_end && e.context().session_id == session_id;
        });
    }
    std::size_t count(Kind kind, const std::string& session_id) const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& e : events_) n += e.kind == kind && e.context().session_id == session_id;
        return n;
    }

private:
    std::shared_ptr<const nk::events::HandlerSet> set_;
    mutable std::mutex mutex_;
    mutable std::condition_variable cv_;
    std::vector<Event> events_;
};

std::string reason_of(const Event& e) {
    for (const auto& [k, v] : e.properties) {
        if (k == "reason") return v;
    }
    return "<no reason property>";
}

nk::realtime::Options fast_options() {
    nk::realtime::Options o;
    o.ping_period_ms = 100;
    o.pong_wait_ms = 400;
    o.write_wait_ms = 2000;
    o.close_ack_wait_ms = 300;
    return o;
}

// One server: net::Server + Realtime + EventPipeline + Tokens, on an ephemeral port.
class Harness {
public:
    explicit Harness(nk::realtime::Options options = fast_options())
        : metrics_("nakama", "test"),
          tokens_(nk::auth::Options{}),
          pipeline_(pipeline_options(), recorder_, &metrics_),
          realtime_(options, tokens_, &pipeline_, &metrics_) {
        pipeline_.start();
        realtime_.attach(router_);
        nk::net::Options net_options;
        net_options.address = "127.0.0.1";
        net_options.port = 0;
        net_options.io_threads = 2;
        server_ = std::make_unique<nk::net::Server>(net_options, router_, &metrics_);
        server_->start();
    }
    ~Harness() { stop(); }

    // Shuts down in the app's order: sockets, then the event queue, then io.
    void stop() {
        if (stopped_) return;
        stopped_ = true;
        realtime_.shutdown(3s);
        pipeline_.drain(10s);
        server_->shutdown(1s);
    }

    std::uint16_t port() const { return server_->port(); }
    // Tokens carry UUID user ids: each test names its users, the harness maps names to ids.
    std::string user_id(const std::string& name) {
        std::lock_guard lock(users_mutex_);
        auto [it, inserted] = users_.try_emplace(name);
        if (inserted) it->second = nk::auth::random_uuid_v4();
        return it->second;
    }
    std::string token_for(const std::string& name, std::map<std::string, std::string> vars = {}) {
        return tokens_.issue(user_id(name), "name-" + name, vars).token;
    }
    nk::realtime::Realtime& realtime() { return realtime_; }
    const Recorder& recorder() const { return recorder_; }
    nk::metrics::Registry& metrics() { return metrics_; }
    nk::auth::Tokens& tokens() { return tokens_; }

    // After stop(): every session that started has exactly one end.
    void check_pairs() const {
        std::map<std::string, std::pair<int, int>> seen;
        for (const auto& e : recorder_.events()) {
            auto& p = seen[e.context().session_id];
            if (e.kind == Kind::session_start) ++p.first;
            if (e.kind == Kind::session_end) {
                ++p.second;
                CHECK_MESSAGE(p.first == 1, "session_end before its session_start");
            }
        }
        for (const auto& [id, p] : seen) {
            CHECK_MESSAGE(p.first == 1, "session " << id << " starts: " << p.first);
            CHECK_MESSAGE(p.second == 1, "session " << id << " ends: " << p.second);
        }
    }

private:
    static nk::events::Options pipeline_options() {
        nk::events::Options o;
        o.workers = 2;
        return o;
    }

    Recorder recorder_;
    nk::metrics::Registry metrics_;
    nk::auth::Tokens tokens_;
    nk::events::EventPipeline pipeline_;
    nk::realtime::Realtime realtime_;
    nk::net::Router router_;
    std::unique_ptr<nk::net::Server> server_;
    std::mutex users_mutex_;
    std::map<std::string, std::string> users_;
    bool stopped_ = false;
};

// A WebSocket client driven step by step on its own io_context.
class Client {
public:
    using Ws = websocket::stream<beast::tcp_stream>;

    explicit Client(std::uint16_t port, std::function<void(asio::ip::tcp::socket&)> tune = {})
        : ws_(ioc_) {
        auto& sock = beast::get_lowest_layer(ws_).socket();
        sock.open(asio::ip::tcp::v4());
        if (tune) tune(sock);
        sock.connect({asio::ip::make_address("127.0.0.1"), port});
    }

    beast::error_code handshake(const std::string& target) {
        return await([&](auto done) { ws_.async_handshake(response_, "127.0.0.1", target, done); });
    }
    beast::error_code send_text(const std::string& text) {
        ws_.text(true);
        return await([&](auto done) { ws_.async_write(asio::buffer(text), done); });
    }
    beast::error_code send_binary(const std::string& data) {
        ws_.binary(true);
        return await([&](auto done) { ws_.async_write(asio::buffer(data), done); });
    }
    // Reads one message; the error when the socket closed instead.
    beast::error_code read(std::string& out) {
        beast::flat_buffer buf;
        auto ec = await([&](auto done) { ws_.async_read(buf, done); });
        out = beast::buffers_to_string(buf.data());
        return ec;
    }
    // Reads until the server's close frame (or an error); returns the last error.
    beast::error_code read_until_closed() {
        std::string ignored;
        beast::error_code ec;
        while (!(ec = read(ignored))) {
        }
        return ec;
    }
    beast::error_code close(websocket::close_reason reason) {
        return await([&](auto done) { ws_.async_close(reason, done); });
    }
    void drop_tcp() {
        beast::error_code ignored;
        beast::get_lowest_layer(ws_).socket().close(ignored);
    }
    websocket::close_reason close_reason() const { return ws_.reason(); }
    Ws& ws() { return ws_; }
    asio::io_context& ioc() { return ioc_; }

    // Runs the client's io_context until the operation completes (or the safety net).
    template <class Initiate>
    beast::error_code await(Initiate&& initiate, std::chrono::milliseconds limit = kSafety) {
        bool done = false;
        beast::error_code result;
        initiate([&](beast::error_code ec, auto&&...) {
            result = ec;
            done = true;
        });
        ioc_.restart();
        auto deadline = std::chrono::steady_clock::now() + limit;
        while (!done && std::chrono::steady_clock::now() < deadline) ioc_.run_one_until(deadline);
        if (!done) {
            drop_tcp();
            ioc_.restart();
            while (!done) ioc_.run_one();
            return asio::error::timed_out;
        }
        return result;
    }

private:
    asio::io_context ioc_;
    Ws ws_;
    websocket::response_type response_;
};

// A plain HTTP GET /ws upgrade attempt; returns the response.
http::response<http::string_body> raw_upgrade(std::uint16_t port, const std::string& target,
                                              const std::string& authorization = {}) {
    asio::io_context ioc;
    beast::tcp_stream stream(ioc);
    stream.connect({asio::ip::make_address("127.0.0.1"), port});
    stream.expires_after(kSafety);
    http::request<http::empty_body> req(http::verb::get, target, 11);
    req.set(http::field::host, "127.0.0.1");
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    req.set(http::field::sec_websocket_version, "13");
    if (!authorization.empty()) req.set(http::field::authorization, authorization);
    http::write(stream, req);
    beast::flat_buffer buf;
    http::response<http::string_body> res;
    http::read(stream, buf, res);
    return res;
}

std::string ws_target(const std::string& token, const std::string& extra = "") {
    return "/ws?lang=en&status=false&token=" + token + extra;
}

// Connects a client for `user` and returns it with its session_start.
struct Connected {
    std::unique_ptr<Client> client;
    Event start;
    std::string session_id() const { return start.context().session_id; }
};

Connected connect_user(Harness& h, const std::string& user, const std::string& extra = "",
                       std::function<void(asio::ip::tcp::socket&)> tune = {}) {
    Connected c;
    const std::size_t earlier = h.recorder().starts_of_user(h.user_id(user));
    c.client = std::make_unique<Client>(h.port(), std::move(tune));
    auto ec = c.client->handshake(ws_target(h.token_for(user), extra));
    REQUIRE_MESSAGE(!ec, ec.message());
    // This connection's session_start, not one of an earlier socket of the same user.
    auto start = h.recorder().wait_start_of_user(h.user_id(user), earlier);
    REQUIRE(start);
    c.start = *start;
    // session_start is submitted just before the session enters the registry: wait for it.
    for (int i = 0; i < 1000 && !h.realtime().sessions().find(c.session_id()); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(h.realtime().sessions().find(c.session_id()));
    return c;
}

std::string end_reason(Harness& h, const std::string& session_id) {
    auto end = h.recorder().wait_end(session_id);
    REQUIRE_MESSAGE(end, "no session_end for " << session_id);
    return reason_of(*end);
}

}  // namespace

TEST_CASE("upgrade refused with 401 before the upgrade for a missing or bad token") {
    Harness h;
    auto missing = raw_upgrade(h.port(), "/ws");
    CHECK(missing.result_int() == 401);
    CHECK(missing.body().find("Missing or invalid token") != std::string::npos);
    CHECK(std::string(missing[http::field::content_type]).find("text/plain") == 0);

    auto bad = raw_upgrade(h.port(), "/ws?token=not.a.jwt");
    CHECK(bad.result_int() == 401);
    CHECK(bad.body().find("Missing or invalid token") != std::string::npos);

    nk::auth::TokenClaims expired;
    expired.token_id = nk::auth::random_uuid_v4();
    expired.user_id = nk::auth::random_uuid_v4();
    expired.username = "old";
    expired.expires_at = h.tokens().now() - 10;
    auto old = raw_upgrade(h.port(), "/ws?token=" +
                                         h.tokens().sign(expired, nk::auth::TokenKind::session));
    CHECK(old.result_int() == 401);

    auto not_bearer = raw_upgrade(h.port(), "/ws?token=" + h.token_for("u401"), "Basic abc");
    CHECK(not_bearer.result_int() == 401);

    h.stop();
    CHECK(h.recorder().events().empty());
}

TEST_CASE("upgrade refused with 400 for format=protobuf and unknown formats") {
    Harness h;
    auto token = h.token_for("u400");
    auto proto = raw_upgrade(h.port(), "/ws?format=protobuf&token=" + token);
    CHECK(proto.result_int() == 400);
    CHECK(proto.body().find("Protobuf format is not supported") != std::string::npos);
    auto xml = raw_upgrade(h.port(), "/ws?format=xml&token=" + token);
    CHECK(xml.result_int() == 400);
    CHECK(xml.body().find("Invalid format parameter") != std::string::npos);
    h.stop();
    CHECK(h.recorder().events().empty());
}

TEST_CASE("Bearer header is accepted and format=json is the default") {
    Harness h;
    Client c(h.port());
    std::string token = h.token_for("bearer-user");
    auto ec = c.await([&](auto done) {
        c.ws().set_option(websocket::stream_base::decorator([token](websocket::request_type& req) {
            req.set(http::field::authorization, "Bearer " + token);
        }));
        static websocket::response_type res;
        c.ws().async_handshake(res, "127.0.0.1", "/ws?format=json", done);
    });
    REQUIRE_MESSAGE(!ec, ec.message());
    auto start = h.recorder().wait_start_of_user(h.user_id("bearer-user"));
    REQUIRE(start);
    CHECK(!c.close(websocket::close_code::normal));
    CHECK(end_reason(h, start->context().session_id) == "");
    h.stop();
    h.check_pairs();
}

TEST_CASE("session_start then session_end carry the session context") {
    Harness h;
    Client c(h.port());
    std::string user = nk::auth::random_uuid_v4();
    auto issued = h.tokens().issue(user, "alice", {{"tier", "gold"}});
    REQUIRE(!c.handshake("/ws?lang=de&status=true&token=" + issued.token));
    auto start = h.recorder().wait_start_of_user(user);
    REQUIRE(start);
    CHECK(start->name == "session_start");
    CHECK(start->properties.empty());
    CHECK_FALSE(start->external);
    CHECK(start->has_timestamp);
    CHECK(start->timestamp.nanos == 0);
    CHECK(start->timestamp.seconds > 1700000000);
    const auto& ctx = start->context();
    CHECK(ctx.execution_mode == "event");
    CHECK(ctx.user_id == user);
    CHECK(ctx.username == "alice");
    CHECK(ctx.vars == std::map<std::string, std::string>{{"tier", "gold"}});
    CHECK(ctx.session_expiry == issued.session.expires_at);
    CHECK(ctx.session_id.size() == 36);
    CHECK(ctx.lang == "de");
    CHECK(ctx.client_ip == "127.0.0.1");
    CHECK_FALSE(ctx.client_port.empty());
    // session_start is submitted before the session enters the registry (so no end can
    // precede its start): the handler may see it first, so wait for the registration.
    auto session = h.realtime().sessions().find(ctx.session_id);
    for (int i = 0; i < 1000 && !session; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        session = h.realtime().sessions().find(ctx.session_id);
    }
    REQUIRE(session);
    CHECK(h.metrics().gauge("sockets_open", "").value() == 1);
    CHECK(session->info().status);

    CHECK(!c.close(websocket::close_code::normal));
    auto end = h.recorder().wait_end(ctx.session_id);
    REQUIRE(end);
    CHECK(end->name == "session_end");
    REQUIRE(end->properties.size() == 1);
    CHECK(end->properties[0].first == "reason");
    CHECK(end->properties[0].second == "");
    CHECK(end->context().session_id == ctx.session_id);
    CHECK(end->context().user_id == user);
    CHECK(end->context().lang == "de");
    CHECK(end->context().execution_mode == "event");
    CHECK(end->timestamp.nanos == 0);
    h.stop();
    h.check_pairs();
    CHECK(h.metrics().gauge("sockets_open", "").value() == 0);
    CHECK(h.metrics().counter("socket_ws_opened", "").value() == 1);
    CHECK(h.metrics().counter("socket_ws_closed", "", {{"reason", "normal"}}).value() == 1);
}

TEST_CASE("ping envelope answered with pong echoing cid; unsupported kind gets an error and the socket stays open") {
    Harness h;
    auto c = connect_user(h, "pinger");
    std::string reply;
    REQUIRE(!c.client->send_text(R"({"ping":{},"cid":"1"})"));
    REQUIRE(!c.client->read(reply));
    CHECK(reply == R"({"cid":"1","pong":{}})");

    REQUIRE(!c.client->send_text(R"({"cid":"2","pong":{}})"));  // ignored: no answer
    REQUIRE(!c.client->send_text(R"({"cid":"3","channel_join":{"target":"lobby","type":1}})"));
    REQUIRE(!c.client->read(reply));
    CHECK(reply ==
          R"({"cid":"3","error":{"code":1,"message":"Unsupported message kind: channel_join"}})");

    REQUIRE(!c.client->send_text(R"({"cid":"4","ping":{}})"));
    REQUIRE(!c.client->read(reply));
    CHECK(reply == R"({"cid":"4","pong":{}})");
    CHECK(h.recorder().count(Kind::session_end, c.session_id()) == 0);

    CHECK(!c.client->close(websocket::close_code::normal));
    CHECK(end_reason(h, c.session_id()) == "");
    h.stop();
    h.check_pairs();
}

TEST_CASE("empty envelope gets Missing message. and the socket is closed as Nakama does") {
    Harness h;
    auto c = connect_user(h, "empty-env");
    std::string reply;
    REQUIRE(!c.client->send_text(R"({"cid":"9"})"));
    REQUIRE(!c.client->read(reply));
    CHECK(reply == R"({"cid":"9","error":{"code":2,"message":"Missing message."}})");
    CHECK(c.client->read_until_closed() == websocket::error::closed);
    CHECK(end_reason(h, c.session_id()) == "error processing message");
    h.stop();
    h.check_pairs();
}

TEST_CASE("client close 1000 and close without status (1005) end with reason \"\"") {
    Harness h;
    auto a = connect_user(h, "close-1000");
    CHECK(!a.client->close(websocket::close_code::normal));
    CHECK(end_reason(h, a.session_id()) == "");

    auto b = connect_user(h, "close-1005");
    CHECK(!b.client->close(websocket::close_reason{}));  // empty close payload
    CHECK(end_reason(h, b.session_id()) == "");

    auto c = connect_user(h, "close-4000");
    CHECK(!c.client->close(websocket::close_reason(static_cast<websocket::close_code>(4000), "bye")));
    CHECK(end_reason(h, c.session_id()) == "websocket: close 4000");
    h.stop();
    h.check_pairs();
}

TEST_CASE("TCP drop without a close frame ends with connection lost") {
    Harness h;
    auto c = connect_user(h, "dropper");
    c.client->drop_tcp();
    CHECK(end_reason(h, c.session_id()) == "connection lost");
    h.stop();
    h.check_pairs();
}

TEST_CASE("a client that never answers pings is closed with pong timeout") {
    Harness h;
    // Beast answers pings only while a read is pending: this client never reads.
    auto c = connect_user(h, "silent");
    CHECK(end_reason(h, c.session_id()) == "pong timeout");
    h.stop();
    h.check_pairs();
}

TEST_CASE("a reading client answers server pings and stays open past several pong waits") {
    Harness h;  // ping every 100 ms, pong wait 400 ms
    auto c = connect_user(h, "alive");
    int pings = 0;
    c.client->ws().control_callback([&](websocket::frame_type kind, beast::string_view) {
        if (kind == websocket::frame_type::ping) ++pings;
    });
    // Keep a read pending (so pongs go out) for about 5 pong waits.
    std::string got;
    auto ec = c.client->await(
        [&](auto done) {
            static beast::flat_buffer buf;
            c.client->ws().async_read(buf, done);
        },
        2000ms);
    CHECK(ec == asio::error::timed_out);  // nothing arrived: the socket stayed open
    CHECK(pings >= 3);
    CHECK(end_reason(h, c.session_id()) == "connection lost");  // the safety net dropped it
    h.stop();
    h.check_pairs();
}

TEST_CASE("oversize message closes with 1009 and message too big") {
    Harness h;
    auto c = connect_user(h, "big");
    std::string big = R"({"cid":"1","ping":{},"pad":")" + std::string(5000, 'x') + "\"}";
    REQUIRE(!c.client->send_text(big));
    CHECK(c.client->read_until_closed() == websocket::error::closed);
    CHECK(c.client->close_reason().code == websocket::close_code::too_big);
    CHECK(end_reason(h, c.session_id()) == "message too big");
    h.stop();
    h.check_pairs();
}

TEST_CASE("malformed JSON closes with received malformed payload, a binary frame with received "
          "unexpected WebSocket message type") {
    Harness h;
    auto a = connect_user(h, "malformed");
    REQUIRE(!a.client->send_text("{not json"));
    CHECK(a.client->read_until_closed() == websocket::error::closed);
    CHECK(a.client->close_reason().reason == "received malformed payload");
    CHECK(end_reason(h, a.session_id()) == "received malformed payload");

    auto b = connect_user(h, "binary");
    REQUIRE(!b.client->send_binary(R"({"cid":"1","ping":{}})"));
    CHECK(b.client->read_until_closed() == websocket::error::closed);
    CHECK(b.client->close_reason().code == websocket::close_code::normal);
    CHECK(b.client->close_reason().reason == "received unexpected WebSocket message type");
    CHECK(end_reason(h, b.session_id()) == "received unexpected WebSocket message type");
    h.stop();
    h.check_pairs();
}

TEST_CASE("a client that never reads while flooding pings overflows the outgoing queue") {
    // Why this ends deterministically with "session outgoing queue full":
    // - The server keeps a read pending whatever its writes do: Beast only makes a read wait for
    //   the write side when the peer sends a ping or close *frame* (to answer it), and this
    //   client sends text frames only. So every ping envelope is read, refreshes the peer's
    //   liveness (no pong timeout while the flood goes on) and queues one pong.
    // - The client never reads, so at most (client receive buffer + server send buffer) bytes of
    //   pongs leave the server; after that its write stays pending and the next
    //   outgoing_queue_size + 1 pings overflow the queue, long before write_wait_ms.
    // The pongs are made big (a ~3.5 KB cid) so that those buffers fill after ~2,000 pings: the
    // kernel took ~6 MB of pongs on loopback before the server's write blocked, which with
    // 21-byte pongs is ~230,000 pings, one synchronous round trip each here. A slow (TSan,
    // loaded) run then reached the flood's deadline first, stopped sending and ended by pong
    // timeout instead.
    auto options = fast_options();
    options.outgoing_queue_size = 2;
    options.pong_wait_ms = 60000;  // the peer is busy, not silent; a stopped flood fails below
    options.ping_period_ms = 30000;
    options.write_wait_ms = 60000;
    Harness h(options);
    auto c = connect_user(h, "flooder", "", [](asio::ip::tcp::socket& s) {
        s.set_option(asio::socket_base::receive_buffer_size(4096));
    });
    const std::string ping =
        R"({"cid":")" + std::string(options.max_message_size_bytes - 600, 'c') + R"(","ping":{}})";
    REQUIRE(ping.size() < options.max_message_size_bytes);
    auto deadline = std::chrono::steady_clock::now() + kSafety;
    std::size_t sent = 0;
    bool dropped = false;
    while (std::chrono::steady_clock::now() < deadline) {
        if (c.client->send_text(ping)) {
            dropped = true;  // the server dropped us
            break;
        }
        ++sent;
    }
    REQUIRE_MESSAGE(dropped, "no drop after " << sent << " pings within the safety net");
    CHECK_MESSAGE(end_reason(h, c.session_id()) == "session outgoing queue full",
                  "after " << sent << " pings");
    h.stop();
    h.check_pairs();
}

TEST_CASE("single_socket: a new socket of the same user closes the older one") {
    auto options = fast_options();
    options.single_socket = true;
    Harness h(options);
    auto first = connect_user(h, "solo");
    Client second(h.port());
    REQUIRE(!second.handshake(ws_target(h.token_for("solo"))));
    CHECK(first.client->read_until_closed() == websocket::error::closed);
    CHECK(first.client->close_reason().reason == "server-side session disconnect");
    CHECK(end_reason(h, first.session_id()) == "server-side session disconnect");

    std::string reply;
    REQUIRE(!second.send_text(R"({"cid":"1","ping":{}})"));
    REQUIRE(!second.read(reply));
    CHECK(reply == R"({"cid":"1","pong":{}})");
    CHECK(h.realtime().sessions().for_user(h.user_id("solo")).size() == 1);
    h.stop();
    h.check_pairs();
}

TEST_CASE("server shutdown closes with 1001 and every session_end is handled") {
    auto options = fast_options();
    options.pong_wait_ms = 10000;
    options.ping_period_ms = 5000;
    Harness h(options);
    auto reading = connect_user(h, "shut-reader");
    auto silent = connect_user(h, "shut-silent");  // never reads: no close ack

    std::thread reader([&] {
        CHECK(reading.client->read_until_closed() == websocket::error::closed);
        CHECK(reading.client->close_reason().code == websocket::close_code::going_away);
        CHECK(reading.client->close_reason().reason == "server shutdown");
    });
    h.realtime().shutdown(5s);
    // Every session_end was submitted before shutdown() returned.
    CHECK(h.realtime().sessions().size() == 0);
    reader.join();
    h.stop();  // drains the pipeline
    CHECK(h.recorder().count(Kind::session_end, reading.session_id()) == 1);
    CHECK(h.recorder().count(Kind::session_end, silent.session_id()) == 1);
    CHECK(end_reason(h, reading.session_id()) == "server shutdown");
    CHECK(end_reason(h, silent.session_id()) == "server shutdown");

    h.check_pairs();
}

TEST_CASE("races: client close, kicks and shutdown at once still give exactly one end each") {
    auto options = fast_options();
    options.single_socket = true;
    Harness h(options);
    std::vector<Connected> clients;
    for (int i = 0; i < 12; ++i) clients.push_back(connect_user(h, "racer-" + std::to_string(i)));
    // Close from both sides at once: the client closes while the server kicks and aborts.
    for (std::size_t i = 0; i < clients.size(); ++i) {
        auto session = h.realtime().sessions().find(clients[i].session_id());
        REQUIRE(session);
        auto& client = *clients[i].client;
        client.ws().async_close(websocket::close_code::normal, [](beast::error_code) {});
        if (i % 3 == 0) session->close(nk::realtime::EndReason::kicked);
        if (i % 3 == 1) session->abort(nk::realtime::EndReason::kicked);
        if (i % 3 == 2) client.drop_tcp();
    }
    // Half of a second batch is still open when shutdown starts.
    std::vector<Connected> more;
    for (int i = 0; i < 6; ++i) more.push_back(connect_user(h, "late-" + std::to_string(i)));
    for (std::size_t i = 0; i < more.size(); i += 2) more[i].client->drop_tcp();
    h.realtime().shutdown(2s);
    for (auto& c : clients) c.client->ioc().poll();
    h.stop();
    for (auto& c : clients) CHECK(h.recorder().count(Kind::session_end, c.session_id()) == 1);
    for (auto& c : more) CHECK(h.recorder().count(Kind::session_end, c.session_id()) == 1);
    h.check_pairs();
}

TEST_CASE("disconnect(user) closes every socket of the user with server-side session disconnect") {
    Harness h;
    auto first = connect_user(h, "gone");
    auto second = connect_user(h, "gone");
    auto other = connect_user(h, "stays");
    CHECK(h.realtime().disconnect(h.user_id("gone")) == 2);
    for (auto* c : {&first, &second}) {
        CHECK(c->client->read_until_closed() == websocket::error::closed);
        CHECK(c->client->close_reason().code == websocket::close_code::normal);
        CHECK(c->client->close_reason().reason == "server-side session disconnect");
        CHECK(end_reason(h, c->session_id()) == "server-side session disconnect");
    }
    std::string reply;
    REQUIRE(!other.client->send_text(R"({"cid":"1","ping":{}})"));
    REQUIRE(!other.client->read(reply));
    CHECK(reply == R"({"cid":"1","pong":{}})");
    CHECK(h.realtime().disconnect(h.user_id("nobody")) == 0);
    h.stop();
    h.check_pairs();
}

TEST_CASE("disconnect(user, tid) closes only the sockets opened with that session token") {
    Harness h;
    auto other_token = connect_user(h, "two");  // another token of the same user
    const auto issued = h.tokens().issue(h.user_id("two"), "name-two", {});
    Connected by_token;
    by_token.client = std::make_unique<Client>(h.port());
    REQUIRE(!by_token.client->handshake(ws_target(issued.token)));
    auto start = h.recorder().wait_for([&](const Event& e) {
        return e.kind == Kind::session_start && e.context().user_id == h.user_id("two") &&
               e.context().session_id != other_token.session_id();
    });
    REQUIRE(start);
    by_token.start = *start;
    for (int i = 0; i < 1000 && !h.realtime().sessions().find(by_token.session_id()); ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(h.realtime().sessions().find(by_token.session_id()));
    CHECK(h.realtime().sessions().find(by_token.session_id())->info().token_id ==
          issued.session.token_id);

    CHECK(h.realtime().disconnect(h.user_id("two"), issued.session.token_id) == 1);
    CHECK(by_token.client->read_until_closed() == websocket::error::closed);
    CHECK(end_reason(h, by_token.session_id()) == "server-side session disconnect");
    std::string reply;
    REQUIRE(!other_token.client->send_text(R"({"cid":"2","ping":{}})"));
    REQUIRE(!other_token.client->read(reply));
    CHECK(reply == R"({"cid":"2","pong":{}})");
    h.stop();
    h.check_pairs();
}
