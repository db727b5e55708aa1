// Server tests: real sockets on loopback, ephemeral ports (TLS and upgrades: server_upgrade_test.cpp).
#include "server_support.hpp"

TEST_CASE("server: routing with captures, trailing '?' and '&'") {
    TestServer t;
    auto c = t.client();
    c->set_url_encode(false);  // send the target exactly as written
    auto res = c->Get("/v2/rpc/hello%20world?http_key=k+1&&unwrap&");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "id=hello world;http_key=k 1;unwrap=");
    res = c->Get("/v2/rpc/x?");
    REQUIRE(res);
    CHECK(res->body == "id=x");
}

TEST_CASE("server: 404 and 501 JSON shapes") {
    TestServer t;
    auto c = t.client();
    auto res = c->Get("/nowhere");
    REQUIRE(res);
    CHECK(res->status == 404);
    CHECK(res->body == R"({"code":5,"message":"Not Found"})");
    CHECK(res->get_header_value("Content-Type") == "application/json");
    res = c->Delete("/echo");
    REQUIRE(res);
    CHECK(res->status == 501);
    CHECK(res->body == R"({"code":12,"message":"Method Not Allowed"})");
}

TEST_CASE("server: CORS and Cache-Control on normal responses, OPTIONS preflight") {
    TestServer t;
    auto c = t.client();
    auto res = c->Post("/echo", "hi", "text/plain");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "hi");
    CHECK(res->get_header_value("Cache-Control") == "no-store, no-cache, must-revalidate");
    CHECK(res->get_header_value("Access-Control-Allow-Origin") == "*");
    CHECK(res->get_header_value("Content-Type") == "text/plain");

    res = c->Options("/v2/rpc/anything");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body.empty());
    CHECK(res->get_header_value("Access-Control-Allow-Origin") == "*");
    CHECK(res->get_header_value("Access-Control-Allow-Headers") == "Authorization, Content-Type, User-Agent");
    CHECK(res->get_header_value("Access-Control-Allow-Methods").find("POST") != std::string::npos);
    res = c->Options("/not/a/route");
    REQUIRE(res);
    CHECK(res->status == 200);
}

TEST_CASE("server: HEAD answers like GET without a body") {
    TestServer t;
    RawSocket s(t.server->port());
    s.send("HEAD /v2/rpc/abc HTTP/1.1\r\nHost: x\r\n\r\n");
    http::response_parser<http::empty_body> p;
    p.skip(true);
    http::read_header(s.socket, s.buffer, p);
    CHECK(p.get().result_int() == 200);
    CHECK(p.get()[http::field::content_length] == "6");  // "id=abc"
    // The connection is still usable: nothing but the header was sent.
    s.send("GET /v2/rpc/next HTTP/1.1\r\nHost: x\r\n\r\n");
    auto res = s.read_response();
    CHECK(res.body() == "id=next");
}

TEST_CASE("server: body over the limit gets 413 (raw socket, large body)") {
    TestServer t;
    RawSocket s(t.server->port());
    std::string body(200000, 'x');
    s.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n");
    s.send_lenient(body);
    auto res = s.read_response();
    CHECK(res.result_int() == 413);
    CHECK(res.body() == R"({"code":3,"message":"Request body too large"})");
    CHECK(res[http::field::connection] == "close");
}

TEST_CASE("server: chunked body over the limit gets 413") {
    TestServer t;
    RawSocket s(t.server->port());
    s.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
    std::string chunk(3000, 'y');
    for (int i = 0; i < 5; ++i) s.send_lenient("BB8\r\n" + chunk + "\r\n");
    auto res = s.read_response();
    CHECK(res.result_int() == 413);
}

TEST_CASE("server: body over the limit gets 413 (httplib)") {
    TestServer t;
    auto c = t.client();
    auto res = c->Post("/echo", std::string(300000, 'z'), "text/plain");
    REQUIRE(res);
    CHECK(res->status == 413);
    CHECK(res->body == R"({"code":3,"message":"Request body too large"})");
}

TEST_CASE("server: gzip and deflate bodies are decompressed") {
    TestServer t;
    auto c = t.client();
    std::string text;
    for (int i = 0; i < 200; ++i) text += "event number " + std::to_string(i) + "; ";
    REQUIRE(text.size() < 4096);
    httplib::Headers gz{{"Content-Encoding", "gzip"}};
    auto res = c->Post("/echo", gz, compress(text, 15 + 16), "application/json");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == text);

    httplib::Headers df{{"Content-Encoding", "deflate"}};
    res = c->Post("/echo", df, compress(text, 15), "application/json");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == text);
    res = c->Post("/echo", df, compress(text, -15), "application/json");  // raw deflate
    REQUIRE(res);
    CHECK(res->body == text);
}

TEST_CASE("server: gzip bomb gets 413, corrupt gzip and unknown encodings get 400") {
    TestServer t;
    auto c = t.client();
    std::string bomb = compress(std::string(3 << 20, '\0'), 15 + 16);  // 3 MiB in ~3 KiB
    REQUIRE(bomb.size() < 4096);
    auto res = c->Post("/echo", httplib::Headers{{"Content-Encoding", "gzip"}}, bomb, "application/json");
    REQUIRE(res);
    CHECK(res->status == 413);
    CHECK(res->body.find("\"code\":3") != std::string::npos);

    std::string corrupt = compress("hello hello hello hello", 15 + 16);
    corrupt[corrupt.size() / 2] ^= 0x5a;
    corrupt.resize(corrupt.size() - 3);
    res = c->Post("/echo", httplib::Headers{{"Content-Encoding", "gzip"}}, corrupt, "application/json");
    REQUIRE(res);
    CHECK(res->status == 400);
    CHECK(res->body.find("\"code\":3") != std::string::npos);

    res = c->Post("/echo", httplib::Headers{{"Content-Encoding", "zstd"}}, "abc", "application/json");
    REQUIRE(res);
    CHECK(res->status == 400);
    CHECK(res->body.find("\"code\":3") != std::string::npos);
}

TEST_CASE("server: oversized headers get 431") {
    TestServer t;
    RawSocket s(t.server->port());
    s.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'h') + "\r\n\r\n");
    auto res = s.read_response();
    CHECK(res.result_int() == 431);
    CHECK(res.body() == R"({"code":3,"message":"Request header fields too large"})");
}

TEST_CASE("server: malformed HTTP gets 400 and close") {
    TestServer t;
    RawSocket s(t.server->port());
    s.send("THIS IS NOT HTTP\r\n\r\n");
    auto res = s.read_response();
    CHECK(res.result_int() == 400);
    CHECK(s.closed_by_peer());
}

TEST_CASE("server: Expect 100-continue") {
    TestServer t;
    RawSocket s(t.server->port());
    s.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
    http::response_parser<http::empty_body> interim;
    http::read_header(s.socket, s.buffer, interim);
    CHECK(interim.get().result_int() == 100);
    s.send("hello");
    auto res = s.read_response();
    CHECK(res.result_int() == 200);
    CHECK(res.body() == "hello");
}

TEST_CASE("server: keep-alive reuses one connection") {
    TestServer t;
    auto& open = t.registry.gauge("http_connections_open", "");
    RawSocket s(t.server->port());
    s.send("GET /client HTTP/1.1\r\nHost: x\r\n\r\n");
    auto first = s.read_response();
    s.send("GET /client HTTP/1.1\r\nHost: x\r\n\r\n");
    auto second = s.read_response();
    CHECK(first.result_int() == 200);
    CHECK(second.result_int() == 200);
    CHECK(first.body() == second.body());  // same client port: same connection
    CHECK(first.body().rfind("127.0.0.1|", 0) == 0);
    CHECK(open.value() == 1);
    s.socket.close();
    CHECK(wait_until([&] { return open.value() == 0; }));
}

TEST_CASE("server: X-Forwarded-For with proxy_count") {
    auto get_client = [](unsigned proxy_count, std::string xff) {
        Options o = test_options();
        o.proxy_count = proxy_count;
        TestServer t(o);
        auto c = t.client();
        auto res = c->Get("/client", httplib::Headers{{"X-Forwarded-For", xff}});
        REQUIRE(res);
        return res->body;
    };
    CHECK(get_client(1, "10.0.0.1, 10.0.0.2") == "10.0.0.2|");
    CHECK(get_client(2, "10.0.0.1, 10.0.0.2") == "10.0.0.1|");
    CHECK(get_client(1, "10.0.0.1:4567") == "10.0.0.1|4567");
    CHECK(get_client(1, "[2001:db8::1]:80") == "2001:db8::1|80");
    CHECK(get_client(3, "10.0.0.1, 10.0.0.2").rfind("127.0.0.1|", 0) == 0);
    CHECK(get_client(0, "10.0.0.1").rfind("127.0.0.1|", 0) == 0);
    CHECK(get_client(1, "not-an-ip").rfind("127.0.0.1|", 0) == 0);
}

TEST_CASE("server: responder called from a BlockingPool thread") {
    nk::BlockingPool pool(2);
    TestServer t(test_options(), [&](Router& r) {
        r.add(Method::post, "/slow", [&](Request&& req, Responder respond) {
            pool.post([req = std::move(req), respond]() mutable {
                respond(Response::json(200, "{\"got\":\"" + req.body + "\"}"));
            });
        });
    });
    auto c = t.client();
    for (int i = 0; i < 20; ++i) {
        auto res = c->Post("/slow", std::to_string(i), "text/plain");
        REQUIRE(res);
        CHECK(res->status == 200);
        CHECK(res->body == "{\"got\":\"" + std::to_string(i) + "\"}");
    }
    pool.stop();
}

TEST_CASE("server: responder dropped uncalled answers 500; a throwing handler too") {
    nk::BlockingPool pool(1);
    TestServer t(test_options(), [&](Router& r) {
        r.add(Method::get, "/drop", [](Request&&, Responder) {});
        r.add(Method::get, "/drop-later", [&](Request&&, Responder respond) {
            pool.post([respond] { (void)respond; });
        });
        r.add(Method::get, "/throw", [](Request&&, Responder) { throw std::runtime_error("boom"); });
    });
    auto c = t.client();
    for (const char* path : {"/drop", "/drop-later", "/throw"}) {
        auto res = c->Get(path);
        REQUIRE(res);
        CHECK(res->status == 500);
        CHECK(res->body.find("\"code\":13") != std::string::npos);
    }
    pool.stop();
}

TEST_CASE("server: read timeout closes a slow client") {
    Options o = test_options();
    o.read_timeout_ms = 200;
    TestServer t(o);
    RawSocket s(t.server->port());
    s.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\n");  // never finishes the header
    CHECK(s.closed_by_peer());
}

TEST_CASE("server: idle keep-alive connections are closed after idle_timeout_ms") {
    Options o = test_options();
    o.idle_timeout_ms = 200;
    TestServer t(o);
    RawSocket s(t.server->port());
    s.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(s.read_response().result_int() == 200);
    CHECK(s.closed_by_peer());
}

TEST_CASE("server: max_connections closes connections over the limit") {
    Options o = test_options();
    o.max_connections = 1;
    TestServer t(o);
    RawSocket first(t.server->port());
    first.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(first.read_response().result_int() == 200);
    RawSocket second(t.server->port());
    CHECK(second.closed_by_peer());
    CHECK(t.registry.counter("http_connections_rejected", "").value() == 1);
    // The first connection still works.
    first.send("GET /v2/rpc/y HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(first.read_response().body() == "id=y");
}

TEST_CASE("server: every end of a connection is counted once, by reason") {
    Options o = test_options();
    o.read_timeout_ms = 300;
    o.idle_timeout_ms = 300;
    o.write_timeout_ms = 300;
    TestServer t(o, [](Router& r) {
        add_echo_routes(r);
        // Larger than any socket buffer pair on loopback: a peer that does not read blocks it.
        r.add(Method::get, "/big", [](Request&&, Responder respond) {
            Response res;
            res.content_type = "text/plain";
            res.body.assign(std::size_t{32} << 20, 'x');
            respond(std::move(res));
        });
        r.add_upgrade("/ws", [](Request&& req, Upgrade& upgrade) {
            if (req.query.empty()) {
                UpgradedConnection taken = upgrade.take();  // closed as it goes out of scope
            } else {
                upgrade.reject(Response::error(nk::Status::unauthenticated("no")));
            }
        });
    });
    auto closed = [&](const char* reason) {
        return t.registry.counter("http_connections_closed", "", {{"reason", reason}}).value();
    };
    auto counted = [&](const char* reason, std::uint64_t n) {
        return wait_until([&] { return closed(reason) == n; });
    };
    const auto port = t.server->port();

    {
        RawSocket s(port);  // gone half-way through a header
        s.send("GET /v2/rpc/x HTTP/1.1\r\nHo");
    }
    CHECK(counted("client_closed", 1));
    {
        RawSocket s(port);  // half-closed half-way through a body: still told why
        s.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf");
        s.socket.shutdown(tcp::socket::shutdown_send);
        CHECK(s.read_response().result_int() == 400);
    }
    CHECK(counted("client_closed", 2));
    {
        RawSocket s(port);  // a header that never ends
        s.send("GET /v2/rpc/x HTTP/1.1\r\n");
        CHECK(s.closed_by_peer());
    }
    CHECK(counted("read_timeout", 1));
    {
        RawSocket s(port);  // keep-alive, then silence
        s.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(s.read_response().result_int() == 200);
        CHECK(s.closed_by_peer());
    }
    CHECK(counted("idle_timeout", 1));
    {
        RawSocket s(port);
        s.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n");
        CHECK(s.read_response().result_int() == 400);
        CHECK(s.closed_by_peer());
    }
    CHECK(counted("bad_request", 1));
    {
        RawSocket s(port);
        s.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n");
        CHECK(s.read_response().result_int() == 413);
        CHECK(s.closed_by_peer());
    }
    CHECK(counted("limit", 1));
    {
        RawSocket s(port);
        s.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        CHECK(s.read_response().result_int() == 200);
        CHECK(s.closed_by_peer());
    }
    CHECK(counted("not_keep_alive", 1));
    {
        RawSocket s(port);  // a refused upgrade closes like a Connection: close response
        s.send(ws::upgrade_request("/ws?refuse"));
        CHECK(s.read_response().result_int() == 401);
        CHECK(s.closed_by_peer());
    }
    CHECK(counted("not_keep_alive", 2));
    {
        RawSocket s(port);
        s.send(ws::upgrade_request("/ws"));
        CHECK(s.closed_by_peer());
    }
    CHECK(counted("upgraded", 1));
    {
        RawSocket s(port);  // asks for a large answer and never reads it
        int small = 4096;
        ::setsockopt(s.socket.native_handle(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        s.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
        CHECK(counted("write_timeout", 1));
    }
    RawSocket idle(port);
    idle.send("GET /v2/rpc/x HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(idle.read_response().result_int() == 200);
    t.server->shutdown(1s);
    CHECK(closed("shutdown") == 1);

    // Nothing else was counted: one reason per connection.
    std::uint64_t total = 0;
    for (const char* reason : {"client_closed", "read_timeout", "idle_timeout", "write_timeout",
                               "bad_request", "limit", "tls_error", "not_keep_alive", "shutdown",
                               "upgraded"}) {
        total += closed(reason);
    }
    CHECK(total == 11);
}

TEST_CASE("server: shutdown lets in-flight requests finish") {
    nk::BlockingPool pool(8);
    TestServer t(test_options(), [&](Router& r) {
        r.add(Method::post, "/slow", [&](Request&& req, Responder respond) {
            pool.post([body = std::move(req.body), respond] {
                std::this_thread::sleep_for(300ms);  // the slow work itself, not synchronisation
                respond(Response::json(200, body));
            });
        });
    });
    // An idle keep-alive connection is closed by shutdown, not waited for. Its request is done
    // (the server counted the write) before the slow ones start, so that in_flight() below
    // counts only those: otherwise shutdown could begin while a slow request still sat in the
    // listen backlog, and closing the listener resets it.
    RawSocket idle(t.server->port());
    idle.send("GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(idle.read_response().result_int() == 404);
    REQUIRE(wait_until([&] { return t.server->in_flight() == 0; }));
    constexpr int kRequests = 6;
    std::vector<std::future<std::pair<int, std::string>>> results;
    for (int i = 0; i < kRequests; ++i) {
        results.push_back(std::async(std::launch::async, [&, i] {
            httplib::Client c("127.0.0.1", t.server->port());
            c.set_read_timeout(20, 0);
            auto res = c.Post("/slow", std::to_string(i), "text/plain");
            return res ? std::make_pair(res->status, res->body) : std::make_pair(-1, std::string());
        }));
    }
    REQUIRE(wait_until([&] { return t.server->in_flight() == kRequests; }));
    std::uint16_t port = t.server->port();
    t.server->shutdown(20s);
    CHECK(idle.closed_by_peer());
    for (int i = 0; i < kRequests; ++i) {
        auto [status, body] = results[i].get();
        CHECK(status == 200);
        CHECK(body == std::to_string(i));
    }
    boost::system::error_code ec;
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port), ec);
    CHECK(ec);  // refused
    pool.stop();
}

TEST_CASE("server: stop_accepting refuses new connections, existing ones keep working") {
    TestServer t;
    RawSocket existing(t.server->port());
    existing.send("GET /v2/rpc/a HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(existing.read_response().result_int() == 200);
    t.server->stop_accepting();
    boost::system::error_code ec;
    asio::io_context io;
    tcp::socket s(io);
    s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), t.server->port()), ec);
    CHECK(ec);
    existing.send("GET /v2/rpc/b HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(existing.read_response().body() == "id=b");
}

TEST_CASE("server: start fails clearly when the port is taken") {
    TestServer t;
    Options o = test_options();
    o.port = t.server->port();
    Router r;
    Server second(o, r);
    CHECK_THROWS_WITH_AS(second.start(), doctest::Contains("cannot listen on"), std::runtime_error);
}

TEST_CASE("server: metrics count requests per route, method and status") {
    TestServer t;
    auto c = t.client();
    REQUIRE(c->Get("/v2/rpc/one"));
    REQUIRE(c->Get("/v2/rpc/two"));
    REQUIRE(c->Get("/missing"));
    // The server records a request when its response write completes, which may be after the
    // client has read the response: poll (with a deadline) until all three are counted. Asking
    // the registry for a series that is not there yet creates it at 0, the same one the server
    // then increments.
    auto& ok = t.registry.counter("http_requests", "",
                                  {{"route", "/v2/rpc/{id}"}, {"method", "GET"}, {"status", "200"}});
    auto& not_found = t.registry.counter(
        "http_requests", "", {{"route", "unmatched"}, {"method", "GET"}, {"status", "404"}});
    CHECK(wait_until([&] { return ok.value() == 2 && not_found.value() == 1; }, 10s));
    CHECK(ok.value() == 2);
    CHECK(not_found.value() == 1);
    std::string text;
    CHECK(wait_until([&] {
        text = t.registry.render();
        return text.find("nakama_http_request_latency_ms") != std::string::npos;
    }, 10s));
    CHECK(text.find("nakama_http_requests") != std::string::npos);
    CHECK(text.find("route=\"/v2/rpc/{id}\"") != std::string::npos);
    CHECK(text.find("route=\"unmatched\"") != std::string::npos);
    CHECK(text.find("status=\"404\"") != std::string::npos);
    CHECK(text.find("nakama_http_connections_open") != std::string::npos);
}

TEST_CASE("accepts_gzip follows Accept-Encoding q-values") {
    CHECK(accepts_gzip("gzip"));
    CHECK(accepts_gzip("gzip, deflate"));  // what Node's fetch sends
    CHECK(accepts_gzip("deflate, GZIP"));
    CHECK(accepts_gzip("x-gzip"));
    CHECK(accepts_gzip("gzip;q=0.5"));
    CHECK(accepts_gzip("gzip ; q=0.001"));
    CHECK(accepts_gzip("gzip;q=1.000"));
    CHECK(accepts_gzip("identity, *;q=0.5"));
    CHECK(accepts_gzip("*"));
    CHECK_FALSE(accepts_gzip(""));
    CHECK_FALSE(accepts_gzip("identity"));
    CHECK_FALSE(accepts_gzip("deflate, br"));
    CHECK_FALSE(accepts_gzip("gzip;q=0"));
    CHECK_FALSE(accepts_gzip("gzip;q=0.000"));
    CHECK_FALSE(accepts_gzip("gzip;q=0, *"));  // named with q=0: "*" does not bring it back
    CHECK_FALSE(accepts_gzip("*;q=0"));
    CHECK_FALSE(accepts_gzip("gzip;q=abc"));  // malformed q-value: not consent
    CHECK_FALSE(accepts_gzip("gzip;q=1.5"));
    CHECK_FALSE(accepts_gzip("gzips"));
}

TEST_CASE("server: responses are gzip-compressed per Accept-Encoding from a size on") {
    std::string big;
    for (int i = 0; big.size() < 3000; ++i) big += "{\"event\":" + std::to_string(i) + "},";
    const std::string small(200, 's');
    const auto routes = [&](Router& r) {
        r.add(Method::get, "/big", [&](Request&&, Responder respond) {
            respond(Response::json(200, big));
        });
        r.add(Method::get, "/small", [&](Request&&, Responder respond) {
            respond(Response::json(200, small));
        });
    };
    Options o = test_options();
    REQUIRE(o.response_compression_min_bytes == 1024);  // the default
    TestServer t(o, routes);
    RawSocket s(t.server->port());
    const auto get = [&](const std::string& path, const std::string& accept) {
        std::string req = "GET " + path + " HTTP/1.1\r\nHost: x\r\n";
        if (!accept.empty()) req += "Accept-Encoding: " + accept + "\r\n";
        s.send(req + "\r\n");
        return s.read_response();
    };

    auto res = get("/big", "gzip, deflate");
    CHECK(res.result_int() == 200);
    CHECK(res[http::field::content_encoding] == "gzip");
    CHECK(res[http::field::vary] == "Accept-Encoding");
    CHECK(res[http::field::content_type] == "application/json");
    CHECK(res.body().size() < big.size() / 2);
    CHECK(gunzip(res.body()) == big);

    // Not accepted, or accepted with q=0: the body as it is.
    for (const std::string accept : {"", "identity", "deflate, br", "gzip;q=0", "*;q=0"}) {
        CAPTURE(accept);
        res = get("/big", accept);
        CHECK(res[http::field::content_encoding].empty());
        CHECK(res.body() == big);
    }
    res = get("/big", "*");
    CHECK(res[http::field::content_encoding] == "gzip");
    CHECK(gunzip(res.body()) == big);

    // Below the threshold: not worth it.
    res = get("/small", "gzip");
    CHECK(res[http::field::content_encoding].empty());
    CHECK(res.body() == small);

    // HEAD keeps the identity length and no Content-Encoding.
    s.send("HEAD /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    http::response_parser<http::empty_body> head;
    head.skip(true);
    http::read(s.socket, s.buffer, head);
    CHECK(head.get()[http::field::content_encoding].empty());
    CHECK(head.get()[http::field::content_length] == std::to_string(big.size()));

    // The connection still works after all of that (keep-alive, nothing left unread).
    res = get("/big", "gzip");
    CHECK(gunzip(res.body()) == big);
}

TEST_CASE("server: response_compression_min_bytes = 0 never compresses") {
    Options o = test_options();
    o.response_compression_min_bytes = 0;
    const std::string big(5000, 'b');
    TestServer t(o, [&](Router& r) {
        r.add(Method::get, "/big", [&](Request&&, Responder respond) {
            respond(Response::json(200, big));
        });
    });
    RawSocket s(t.server->port());
    s.send("GET /big HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\n\r\n");
    auto res = s.read_response();
    CHECK(res[http::field::content_encoding].empty());
    CHECK(res.body() == big);
}

TEST_CASE("valid_utf8 follows RFC 3629") {
    CHECK(valid_utf8(""));
    CHECK(valid_utf8("plain ascii"));
    CHECK(valid_utf8(std::string_view("nul\0inside", 10)));
    CHECK(valid_utf8("J\xC3\xBCrgen \xE2\x82\xAC \xF0\x9F\x98\x80 \xF4\x8F\xBF\xBF"));
    CHECK_FALSE(valid_utf8("\xFF\xFE"));
    CHECK_FALSE(valid_utf8("\x80"));                  // continuation byte alone
    CHECK_FALSE(valid_utf8("\xC0\xAF"));              // overlong '/'
    CHECK_FALSE(valid_utf8("\xE0\x80\xAF"));          // overlong '/'
    CHECK_FALSE(valid_utf8("\xED\xA0\x80"));          // UTF-16 surrogate
    CHECK_FALSE(valid_utf8("\xF4\x90\x80\x80"));      // above U+10FFFF
    CHECK_FALSE(valid_utf8("ok\xE2\x82"));            // truncated at the end
    CHECK_FALSE(valid_utf8(std::string_view("\xC3\0", 2)));  // NUL is no continuation byte
}

TEST_CASE("server: chunk extensions and trailers that never end get 400 and close") {
    TestServer t;
    const std::string endless(200000, 'b');  // over the read buffer's 64 KiB
    for (const std::string tail : {"1;a=", "1\r\na\r\n0\r\nX-Trailer: "}) {
        CAPTURE(tail);
        RawSocket s(t.server->port());
        s.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + tail);
        s.send_lenient(endless);
        auto res = s.read_response();
        CHECK(res.result_int() == 400);
        CHECK(res.body() == R"({"code":3,"message":"Chunk extension or trailer too large"})");
        CHECK(s.closed_by_peer());
    }
    // Chunked bodies with short extensions and trailers, and keep-alive reads, still work.
    RawSocket s(t.server->port());
    s.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
           "3;name=value\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n");
    CHECK(s.read_response().body() == "abc");
    s.send("POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nxyz");
    CHECK(s.read_response().body() == "xyz");
}

TEST_CASE("server: Transfer-Encoding must be exactly chunked; Host must be there once") {
    TestServer t;
    auto answer = [&](const std::string& head) {
        RawSocket s(t.server->port());
        s.send(head + "\r\nGET /v2/rpc/smuggled HTTP/1.1\r\nHost: x\r\n\r\n");
        auto res = s.read_response();
        CHECK(s.closed_by_peer());  // and the second request was not answered
        return res;
    };
    for (const std::string te : {"xchunked", "chunked, identity", "identity", "gzip", "gzip, chunked",
                                 "chunked;x=1", ", chunked, ,chunked"}) {
        CAPTURE(te);
        auto res = answer("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: " + te + "\r\n");
        CHECK(res.result_int() == 400);
    }
    CHECK(answer("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nContent-Length: 0\r\n")
              .body() == R"({"code":3,"message":"Transfer-Encoding and Content-Length together"})");
    CHECK(answer("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n"
                 "Transfer-Encoding: gzip\r\n")
              .result_int() == 400);
    CHECK(answer("POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\n").result_int() == 400);
    CHECK(answer("GET /v2/rpc/x HTTP/1.1\r\n").body() ==
          R"({"code":3,"message":"Missing Host header"})");
    CHECK(answer("GET /v2/rpc/x HTTP/1.1\r\nHost: a\r\nHost: a\r\n").body() ==
          R"({"code":3,"message":"Multiple Host headers"})");

    // Allowed: "Chunked" (any case), HTTP/1.0 without Host.
    RawSocket s(t.server->port());
    s.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: Chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n");
    CHECK(s.read_response().body() == "ok");
    RawSocket old(t.server->port());
    old.send("GET /v2/rpc/x HTTP/1.0\r\n\r\n");
    CHECK(old.read_response().result_int() == 200);
}

TEST_CASE("server: invalid UTF-8 in the path or a query parameter gets 400") {
    TestServer t;
    auto c = t.client();
    const std::pair<const char*, std::string> cases[] = {
        {"/v2/rpc/x?ok=%C3%BC&name=%FF",
         R"({"code":3,"message":"Invalid UTF-8 in query parameter \"name\""})"},
        {"/v2/rpc/x?%C0%AF=1", R"({"code":3,"message":"Invalid UTF-8 in a query parameter name"})"},
        {"/v2/rpc/%ED%A0%80", R"({"code":3,"message":"Invalid UTF-8 in the request path"})"},
        {"/v2/rpc/%E2%82%AC?q=%F0%9F%98%80", "id=\xE2\x82\xAC;q=\xF0\x9F\x98\x80"},
    };
    for (const auto& [target, body] : cases) {
        CAPTURE(target);
        auto res = c->Get(target);
        REQUIRE(res);
        CHECK(res->status == (body.front() == '{' ? 400 : 200));
        CHECK(res->body == body);
    }
}

