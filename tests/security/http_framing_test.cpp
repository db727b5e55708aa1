// HTTP framing attacks against the real nkhost process: chunk extensions and trailers that never
// end, Transfer-Encoding smuggling and Host header rules, realtime sockets against
// socket.max_connections, invalid UTF-8 in the request target, malformed WebSocket upgrades.
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::test;

namespace {

// Far more than the read buffer may hold (max(socket.max_header_size_bytes, 64 KiB)), far less
// than the gigabytes that grew the server without bound.
const std::string kEndless(256 * 1024, 'b');

const std::string kChunkedPost =
    "POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

// Sends `head` and then `endless` without ever ending it; the answer and whether the server
// closed the connection after it.
std::pair<std::string, bool> send_unterminated(std::uint16_t port, const std::string& head) {
    RawConnection c(port);
    REQUIRE(c.send(head));
    c.send(kEndless);  // the server may stop reading (and close) before all of it arrived
    std::string answer = c.read_response();
    return {answer, c.closed_by_peer()};
}

using nk::test::ws::upgrade_request;

const std::string kGoodKey = nk::test::ws::kKey;

double requests_with_status(const Nkhost& n, int status) {
    return n.metric("nkhost_http_requests", {"status=\"" + std::to_string(status) + "\""});
}

}  // namespace

TEST_CASE("a chunk extension that never ends gets 400 and the connection closed") {
    Nkhost n;
    const double before = requests_with_status(n, 400);
    auto [answer, closed] = send_unterminated(n.port(), kChunkedPost + "1;a=");
    CHECK(status_of(answer) == 400);
    CHECK(answer.find("Chunk extension or trailer too large") != std::string::npos);
    CHECK(closed);
    CHECK(requests_with_status(n, 400) == before + 1);
    // The server is still there for everybody else.
    CHECK(n.client()->Get("/healthcheck")->status == 200);
}

TEST_CASE("a trailer section that never ends gets 400 and the connection closed") {
    Nkhost n;
    auto [answer, closed] = send_unterminated(n.port(), kChunkedPost + "1\r\na\r\n0\r\nX-Trailer: ");
    CHECK(status_of(answer) == 400);
    CHECK(answer.find("Chunk extension or trailer too large") != std::string::npos);
    CHECK(closed);
}

TEST_CASE("the metrics port bounds chunk extensions and trailers too") {
    Nkhost n;
    // The metrics port starts listening after the API port answered.
    REQUIRE(wait_until([&] {
        try {
            return !n.metrics_text().empty();
        } catch (const std::exception&) {
            return false;
        }
    }));
    auto [ext, ext_closed] = send_unterminated(n.metrics_port(), kChunkedPost + "1;a=");
    CHECK(status_of(ext) == 400);
    CHECK(ext_closed);
    auto [trailer, trailer_closed] =
        send_unterminated(n.metrics_port(), kChunkedPost + "0\r\nX-Trailer: ");
    CHECK(status_of(trailer) == 400);
    CHECK(trailer_closed);
}

TEST_CASE("a Transfer-Encoding that does not end in chunked is refused, not smuggled") {
    Nkhost n;
    const std::vector<std::string> encodings = {
        "Transfer-Encoding: xchunked\r\n",
        "Transfer-Encoding: chunked, identity\r\n",
        "Transfer-Encoding: identity\r\n",
        "Transfer-Encoding: gzip\r\n",
        "Transfer-Encoding: gzip, chunked\r\n",
        "Transfer-Encoding: identity\r\nTransfer-Encoding: gzip\r\n",
        "Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: gzip\r\nContent-Length: 5\r\n",
        "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",
        "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n",
    };
    for (const auto& te : encodings) {
        CAPTURE(te);
        RawConnection c(n.port());
        REQUIRE(c.send("POST /healthcheck HTTP/1.1\r\nHost: x\r\n" + te +
                       "\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"));
        std::string answer = c.read_until_close();
        CHECK(count_responses(answer) == 1);
        CHECK(status_of(answer) == 400);
    }
    CHECK(n.metric("nkhost_http_requests", {"route=\"unmatched\"", "status=\"404\""}) == 0);
}

TEST_CASE("Transfer-Encoding in an HTTP/1.0 request is refused") {
    Nkhost n;
    RawConnection c(n.port());
    REQUIRE(c.send("POST /healthcheck HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
                   "GET /smuggled HTTP/1.0\r\n\r\n"));
    std::string answer = c.read_until_close();
    CHECK(count_responses(answer) == 1);
    CHECK(status_of(answer) == 400);
}

TEST_CASE("an HTTP/1.1 request needs exactly one Host header") {
    Nkhost n;
    auto answer_to = [&](const std::string& request) {
        RawConnection c(n.port());
        REQUIRE(c.send(request));
        return c.read_until_close();
    };
    std::string none = answer_to("GET /healthcheck HTTP/1.1\r\n\r\n");
    CHECK(status_of(none) == 400);
    CHECK(none.find("Missing Host header") != std::string::npos);
    std::string two = answer_to("GET /healthcheck HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n");
    CHECK(status_of(two) == 400);
    CHECK(two.find("Multiple Host headers") != std::string::npos);
    // HTTP/1.0 has no Host requirement.
    CHECK(status_of(answer_to("GET /healthcheck HTTP/1.0\r\n\r\n")) == 200);
}

TEST_CASE("realtime sockets count toward socket.max_connections until they close") {
    Nkhost n({"--socket.max_connections", "20"});
    const std::string token = n.device_token("max-connections-device");
    auto open = [&] { return n.metric("nkhost_http_connections_open"); };
    // The connections that authenticated and polled readiness are gone.
    REQUIRE(wait_until([&] { return open() == 0; }));

    std::vector<std::unique_ptr<RawConnection>> sockets;
    for (int i = 0; i < 20; ++i) {
        auto c = std::make_unique<RawConnection>(n.port());
        REQUIRE(c->send(upgrade_request("/ws?token=" + token, kGoodKey)));
        REQUIRE(status_of(c->read_response()) == 101);
        sockets.push_back(std::move(c));
    }
    CHECK(open() == 20);

    const double rejected = n.metric("nkhost_http_connections_rejected");
    RawConnection over(n.port());
    over.send(upgrade_request("/ws?token=" + token, kGoodKey));
    CHECK(over.closed_by_peer());
    CHECK(over.read_until_close(std::chrono::milliseconds(0)).empty());  // no answer at all
    CHECK(n.metric("nkhost_http_connections_rejected") == rejected + 1);

    // Closing sockets gives their places back.
    sockets.resize(15);
    REQUIRE(wait_until([&] { return open() == 15; }));
    RawConnection again(n.port());
    REQUIRE(again.send(upgrade_request("/ws?token=" + token, kGoodKey)));
    CHECK(status_of(again.read_response()) == 101);
    CHECK(open() == 16);
}

TEST_CASE("invalid UTF-8 in a query parameter is refused and creates nothing") {
    Nkhost n;
    auto authenticate = [&](const std::string& query) {
        const std::string body = R"({"id":"utf8-query-device-1"})";
        RawConnection c(n.port());
        REQUIRE(c.send("POST /v2/account/authenticate/device?" + query +
                       " HTTP/1.1\r\nHost: x\r\nAuthorization: Basic ZGVmYXVsdGtleTo=\r\n"
                       "Content-Type: application/json\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body));
        return c.read_response();
    };
    std::string refused = authenticate("create=true&username=%FF%FE");
    CHECK(status_of(refused) == 400);
    CHECK(refused.find(R"({"code":3,"message":"Invalid UTF-8 in query parameter \"username\""})") !=
          std::string::npos);
    // Overlong and surrogate forms too.
    CHECK(status_of(authenticate("create=true&username=%C0%AF")) == 400);
    CHECK(status_of(authenticate("create=true&username=%ED%A0%80")) == 400);
    // Nothing was created: without create the device is unknown.
    CHECK(status_of(authenticate("create=false")) == 404);
    // Valid UTF-8 passes.
    CHECK(status_of(authenticate("create=true&username=J%C3%BCrgen")) == 200);
}

TEST_CASE("invalid UTF-8 in the request path is refused") {
    Nkhost n;
    RawConnection c(n.port());
    REQUIRE(c.send("GET /v2/rpc/%FF HTTP/1.1\r\nHost: x\r\n\r\n"));
    std::string answer = c.read_response();
    CHECK(status_of(answer) == 400);
    CHECK(answer.find("Invalid UTF-8 in the request path") != std::string::npos);
}

TEST_CASE("a malformed Sec-WebSocket-Key is refused with 400, not upgraded") {
    Nkhost n;
    const std::string token = n.device_token("websocket-key-device");
    const double upgraded = requests_with_status(n, 101);
    for (const std::string key : {"abc", "AAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAA===",
                                  "AAAAAAAAAAAAAAAAAAAA*A==", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}) {
        CAPTURE(key);
        RawConnection c(n.port());
        REQUIRE(c.send(upgrade_request("/ws?token=" + token, key)));
        std::string answer = c.read_until_close();
        CHECK(status_of(answer) == 400);
        CHECK(answer.find("Sec-WebSocket-Key") != std::string::npos);
    }
    CHECK(requests_with_status(n, 101) == upgraded);
    CHECK(requests_with_status(n, 400) >= 5);
}

TEST_CASE("refused /ws upgrades are counted with their status, not as 101") {
    Nkhost n;
    const std::string token = n.device_token("websocket-metric-device");
    auto ws_requests = [&](int status) {
        return n.metric("nkhost_http_requests",
                        {"route=\"/ws\"", "status=\"" + std::to_string(status) + "\""});
    };
    const double upgraded = ws_requests(101), unauthorized = ws_requests(401),
                 bad = ws_requests(400);

    // No token: 401.
    {
        RawConnection c(n.port());
        REQUIRE(c.send(upgrade_request("/ws", kGoodKey)));
        CHECK(status_of(c.read_until_close()) == 401);
    }
    // A WebSocket version the server does not speak: 400 naming the one it does.
    {
        RawConnection c(n.port());
        REQUIRE(c.send(upgrade_request("/ws?token=" + token, kGoodKey, "8")));
        std::string answer = c.read_until_close();
        CHECK(status_of(answer) == 400);
        CHECK(answer.find("Sec-WebSocket-Version: 13") != std::string::npos);
    }
    // Data sent before the handshake completed: 400.
    {
        RawConnection c(n.port());
        REQUIRE(c.send(upgrade_request("/ws?token=" + token, kGoodKey) + "early"));
        CHECK(status_of(c.read_until_close()) == 400);
    }
    CHECK(ws_requests(101) == upgraded);
    CHECK(ws_requests(401) == unauthorized + 1);
    CHECK(ws_requests(400) == bad + 2);

    // Taken for the upgrade, then the client resets the connection before the 101 could be
    // written: the handshake failed, counted with status 0 (no answer), never as 101.
    auto opened = [&] { return n.metric("nkhost_socket_ws_opened"); };
    const double opened_before = opened(), unanswered = ws_requests(0);
    for (int i = 0; i < 10; ++i) {
        RawConnection c(n.port());
        const linger reset{1, 0};
        REQUIRE(::setsockopt(c.fd(), SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
        REQUIRE(c.send(upgrade_request("/ws?token=" + token, kGoodKey)));
    }  // closed with a reset right after the request
    CHECK(wait_until([&] { return ws_requests(0) - unanswered + ws_requests(101) - upgraded == 10; }));
    CHECK(ws_requests(0) > unanswered);

    // A real upgrade is still counted as 101. Only handshakes that completed count so: as many
    // as sessions started (a reset that came after the 101 was written counts as one).
    RawConnection c(n.port());
    REQUIRE(c.send(upgrade_request("/ws?token=" + token, kGoodKey)));
    CHECK(status_of(c.read_response()) == 101);
    CHECK(wait_until([&] {
        return opened() > opened_before && ws_requests(101) - upgraded == opened() - opened_before;
    }));
}
