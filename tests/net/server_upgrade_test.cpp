// Server tests over TLS and through the WebSocket upgrade seam: real sockets on loopback.
#include "server_support.hpp"

#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>

TEST_CASE("server: TLS on the same port") {
    Options o = test_options();
    o.ssl_certificate = NK_NET_TEST_DATA "/cert.pem";
    o.ssl_private_key = NK_NET_TEST_DATA "/key.pem";
    TestServer t(o);
    httplib::SSLClient c("127.0.0.1", t.server->port());
    c.enable_server_certificate_verification(false);
    c.set_read_timeout(20, 0);
    auto res = c.Get("/v2/rpc/secure?x=1");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "id=secure;x=1");
    res = c.Post("/echo", std::string(100000, 'q'), "text/plain");
    REQUIRE(res);
    CHECK(res->status == 413);

    // "Connection: close" ends with a TLS close_notify, not a bare TCP close: the client's read
    // after the response sees a clean end of stream, not a truncated one.
    {
        asio::io_context io;
        asio::ssl::context ctx(asio::ssl::context::tls_client);
        ctx.set_verify_mode(asio::ssl::verify_none);
        beast::ssl_stream<beast::tcp_stream> tls(io, ctx);
        beast::get_lowest_layer(tls).connect(
            tcp::endpoint(asio::ip::make_address("127.0.0.1"), t.server->port()));
        beast::get_lowest_layer(tls).expires_after(20s);
        tls.handshake(asio::ssl::stream_base::client);
        const std::string req = "GET /v2/rpc/bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        asio::write(tls, asio::buffer(req));
        beast::flat_buffer buf;
        http::response<http::string_body> res;
        http::read(tls, buf, res);
        CHECK(res.body() == "id=bye");
        char c;
        boost::system::error_code ec;
        tls.read_some(asio::buffer(&c, 1), ec);
        CHECK(ec == asio::error::eof);  // stream_truncated without close_notify
        tls.shutdown(ec);               // answer it, as a well-behaved client does
    }

    o.ssl_private_key = NK_NET_TEST_DATA "/missing.pem";
    Router r;
    Server bad(o, r);
    CHECK_THROWS_WITH_AS(bad.start(), doctest::Contains("TLS private key"), std::runtime_error);
}

namespace {

// A websocket echo session on a taken connection (what realtime does).
template <typename Stream>
void run_echo(Stream&& stream, BeastRequest request, beast::flat_buffer buffered, ConnectionSlot slot,
              UpgradeOutcome outcome) {
    using Ws = beast::websocket::stream<std::decay_t<Stream>>;
    struct Session : std::enable_shared_from_this<Session> {
        Session(Stream&& s, ConnectionSlot c) : ws(std::move(s)), slot(std::move(c)) {}
        Ws ws;
        ConnectionSlot slot;  // held while the socket is open
        beast::flat_buffer buffer;
        void read() {
            ws.async_read(buffer, [self = this->shared_from_this()](beast::error_code ec, std::size_t) {
                if (ec) return;  // the session ends here, and its slot is given back
                self->ws.text(self->ws.got_text());
                self->ws.async_write(self->buffer.data(),
                                     [self](beast::error_code ec2, std::size_t) {
                                         if (ec2) return;
                                         self->buffer.consume(self->buffer.size());
                                         self->read();
                                     });
            });
        }
    };
    (void)buffered;
    auto session = std::make_shared<Session>(std::move(stream), std::move(slot));
    session->ws.async_accept(request, [session, outcome = std::make_shared<UpgradeOutcome>(
                                                    std::move(outcome))](beast::error_code ec) {
        if (ec) return outcome->failed(0);
        outcome->completed();
        session->read();
    });
}

// Takes the connection and echoes over WebSocket on it.
void take_and_echo(Upgrade& upgrade) {
    UpgradedConnection conn = upgrade.take();
    std::visit(
        [&](auto& stream) {
            run_echo(std::move(stream), std::move(conn.request), std::move(conn.buffered),
                     std::move(conn.slot), std::move(conn.outcome));
        },
        conn.stream);
}

}  // namespace

TEST_CASE("server: websocket upgrade seam (take and echo, reject)") {
    TestServer t(test_options(), [](Router& r) {
        r.add_upgrade("/ws", [](Request&& req, Upgrade& upgrade) {
            if (req.query_param("token") != std::optional<std::string_view>("good")) {
                Response res;
                res.status = 401;
                res.content_type = "text/plain";
                res.body = "Missing or invalid token";
                upgrade.reject(std::move(res));
                return;
            }
            take_and_echo(upgrade);
        });
    });

    asio::io_context io;
    beast::websocket::stream<tcp::socket> ws(io);
    ws.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), t.server->port()));
    ws.handshake("127.0.0.1", "/ws?token=good&");
    ws.write(asio::buffer(std::string("ping over websocket")));
    beast::flat_buffer buf;
    ws.read(buf);
    CHECK(beast::buffers_to_string(buf.data()) == "ping over websocket");
    ws.close(beast::websocket::close_code::normal);

    // Upgraded connections are not HTTP requests: shutdown does not wait for them.
    CHECK(t.server->in_flight() == 0);

    RawSocket rejected(t.server->port());
    rejected.send(ws::upgrade_request("/ws?token=bad"));
    auto res = rejected.read_response();
    CHECK(res.result_int() == 401);
    CHECK(res[http::field::content_type] == "text/plain");
    CHECK(res.body() == "Missing or invalid token");
    CHECK(rejected.closed_by_peer());
}

namespace {

// An upgrade endpoint that echoes over WebSocket (holding the connection's slot) and counts calls.
struct EchoUpgrade {
    std::atomic<int> calls{0};
    void operator()(Router& r) {
        r.add_upgrade("/ws", [this](Request&&, Upgrade& upgrade) {
            ++calls;
            take_and_echo(upgrade);
        });
    }
};

}  // namespace

TEST_CASE("server: upgraded connections keep their place in max_connections until they close") {
    Options o = test_options();
    o.max_connections = 1;
    EchoUpgrade echo;
    TestServer t(o, [&](Router& r) { echo(r); });
    auto gauge = [&] { return t.registry.gauge("http_connections_open", "").value(); };
    {
        asio::io_context io;
        beast::websocket::stream<tcp::socket> ws(io);
        ws.next_layer().connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), t.server->port()));
        ws.handshake("127.0.0.1", "/ws");
        CHECK(gauge() == 1);
        RawSocket over(t.server->port());
        CHECK(over.closed_by_peer());
        CHECK(t.registry.counter("http_connections_rejected", "").value() == 1);
        ws.close(beast::websocket::close_code::normal);
    }
    REQUIRE(wait_until([&] { return gauge() == 0; }));
    RawSocket again(t.server->port());
    again.send(ws::upgrade_request("/ws"));
    CHECK(again.read_response().result_int() == 101);
}

TEST_CASE("server: upgrades that cannot complete the handshake get 400 before the handler") {
    EchoUpgrade echo;
    TestServer t(test_options(), [&](Router& r) { echo(r); });
    auto refused = [&](const std::string& request) {
        RawSocket s(t.server->port());
        s.send(request);
        auto res = s.read_response();
        CHECK(s.closed_by_peer());
        return res;
    };
    for (const std::string key : {"", "abc", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZQ===",
                                  "dGhlIHNhbXBsZSBub25jZ===", "dGhlIHNhbXBsZSBub25j!Q=="}) {
        CAPTURE(key);
        auto res = refused(ws::upgrade_request("/ws", key));
        CHECK(res.result_int() == 400);
        CHECK(res.body() ==
              R"({"code":3,"message":"Sec-WebSocket-Key must be the base64 encoding of 16 bytes"})");
    }
    auto version = refused(ws::upgrade_request("/ws", ws::kKey, "8"));
    CHECK(version.result_int() == 400);
    CHECK(version["Sec-WebSocket-Version"] == "13");
    auto early = refused(ws::upgrade_request("/ws") + "x");
    CHECK(early.result_int() == 400);
    CHECK(early.body() == R"({"code":3,"message":"Data sent before the WebSocket handshake completed"})");
    CHECK(echo.calls == 0);
    auto count = [&](const char* status) {
        return t.registry
            .counter("http_requests", "", {{"route", "/ws"}, {"method", "GET"}, {"status", status}})
            .value();
    };
    CHECK(count("400") == 8);
    CHECK(count("101") == 0);

    // A well-formed key (the low bits of its last character are not checked, as in Go).
    RawSocket s(t.server->port());
    s.send(ws::upgrade_request("/ws", "dGhlIHNhbXBsZSBub25jZR=="));
    CHECK(s.read_response().result_int() == 101);
    CHECK(echo.calls == 1);
    // Counted once the handshake completed, which may be after the client read the 101.
    CHECK(wait_until([&] { return count("101") == 1; }));
}

TEST_CASE("server: a taken upgrade is counted with the outcome its handler reports, not as 101") {
    std::atomic<int> next{0};
    TestServer t(test_options(), [&](Router& r) {
        r.add_upgrade("/ws", [&](Request&&, Upgrade& upgrade) {
            UpgradedConnection conn = upgrade.take();
            switch (next++) {
                case 0:
                    conn.outcome.failed(400);  // a refusal the handler wrote itself
                    break;
                case 1:
                    break;  // dropped without an answer: counted as 0
                default:
                    conn.outcome.completed();
            }
        });
    });
    auto count = [&](const char* status) {
        return t.registry
            .counter("http_requests", "", {{"route", "/ws"}, {"method", "GET"}, {"status", status}})
            .value();
    };
    for (int i = 0; i < 3; ++i) {
        RawSocket s(t.server->port());
        s.send(ws::upgrade_request("/ws"));
        CHECK(s.closed_by_peer());
    }
    CHECK(wait_until([&] { return count("101") == 1; }));
    CHECK(count("400") == 1);
    CHECK(count("0") == 1);
}
