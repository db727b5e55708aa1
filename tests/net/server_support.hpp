// Shared by the server test files: a test server, a raw loopback socket, zlib helpers.
#pragma once

#include <doctest/doctest.h>
#include <utility>  // Boost 1.74 asio/awaitable.hpp needs std::exchange (C++20)
#include <httplib.h>
#include <sys/socket.h>
#include <zlib.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <thread>

#include "core/blocking_pool.hpp"
#include "metrics/registry.hpp"
#include "net/content_coding.hpp"
#include "net/server.hpp"
#include "net/text.hpp"
#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::net;
using nk::test::wait_until;
namespace ws = nk::test::ws;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

namespace {

inline Options test_options() {
    Options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.io_threads = 2;
    o.max_request_size_bytes = 4096;
    o.proxy_count = 0;
    return o;
}

// Echo handler: answers with body, path, query and captures as plain text lines.
inline void add_echo_routes(Router& router) {
    router.add(Method::post, "/echo", [](Request&& req, Responder respond) {
        Response r;
        r.content_type = "text/plain";
        r.body = req.body;
        respond(std::move(r));
    });
    router.add(Method::get, "/v2/rpc/{id}", [](Request&& req, Responder respond) {
        std::string out = "id=" + std::string(req.path_param("id"));
        for (auto& [k, v] : req.query) out += ";" + k + "=" + v;
        respond(Response::json(200, out));
    });
    router.add(Method::get, "/client", [](Request&& req, Responder respond) {
        respond(Response::json(200, req.client_ip + "|" + req.client_port));
    });
}

struct TestServer {
    explicit TestServer(Options o = test_options(), std::function<void(Router&)> setup = add_echo_routes)
        : registry("nakama", "node1") {
        setup(router);
        server = std::make_unique<Server>(o, router, &registry);
        server->start();
    }
    std::unique_ptr<httplib::Client> client() {
        auto c = std::make_unique<httplib::Client>("127.0.0.1", server->port());
        c->set_read_timeout(20, 0);
        c->set_write_timeout(20, 0);
        c->set_connection_timeout(20, 0);
        return c;
    }
    Router router;
    nk::metrics::Registry registry;
    std::unique_ptr<Server> server;
};

// A blocking loopback socket with a safety-net receive timeout.
struct RawSocket {
    asio::io_context io;
    tcp::socket socket{io};
    beast::flat_buffer buffer;

    explicit RawSocket(std::uint16_t port) {
        socket.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
        timeval tv{20, 0};
        ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ::setsockopt(socket.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    }
    void send(std::string_view data) { asio::write(socket, asio::buffer(data.data(), data.size())); }
    // Writes and ignores a peer that closed early.
    std::size_t send_lenient(std::string_view data) {
        boost::system::error_code ec;
        return asio::write(socket, asio::buffer(data.data(), data.size()), ec);
    }
    http::response<http::string_body> read_response() {
        http::response<http::string_body> res;
        http::read(socket, buffer, res);
        return res;
    }
    // True when the peer closed (EOF or reset) before the safety net expired.
    bool closed_by_peer() {
        char c;
        boost::system::error_code ec;
        std::size_t n = socket.read_some(asio::buffer(&c, 1), ec);
        return n == 0 && (ec == asio::error::eof || ec == asio::error::connection_reset);
    }
};

inline std::string compress(std::string_view data, int window_bits) {
    z_stream zs{};
    REQUIRE(deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, window_bits, 8, Z_DEFAULT_STRATEGY) == Z_OK);
    std::string out(deflateBound(&zs, data.size()) + 64, '\0');
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    zs.next_out = reinterpret_cast<Bytef*>(out.data());
    zs.avail_out = static_cast<uInt>(out.size());
    REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
    out.resize(zs.total_out);
    deflateEnd(&zs);
    return out;
}

// A gzip member decoded with zlib directly (not through the server's code).
inline std::string gunzip(std::string_view data) {
    z_stream zs{};
    REQUIRE(inflateInit2(&zs, 15 + 16) == Z_OK);
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
    zs.avail_in = static_cast<uInt>(data.size());
    std::string out;
    char chunk[4096];
    int rc = Z_OK;
    while (rc == Z_OK) {
        zs.next_out = reinterpret_cast<Bytef*>(chunk);
        zs.avail_out = sizeof chunk;
        rc = inflate(&zs, Z_NO_FLUSH);
        out.append(chunk, sizeof chunk - zs.avail_out);
    }
    inflateEnd(&zs);
    CHECK(rc == Z_STREAM_END);
    CHECK(zs.avail_in == 0);
    return out;
}

}  // namespace
