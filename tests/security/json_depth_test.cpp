// JSON nesting depth and UTF-8 against the real process: every endpoint that parses a client's
// JSON refuses a document nested deeper than socket.max_json_depth with 400 code 3 (a realtime
// socket is closed) instead of overflowing the stack, counts it, and keeps serving; a document
// exactly at the limit is accepted. Invalid UTF-8 in JSON strings is refused the same way.
#include <doctest/doctest.h>

#include <zlib.h>

#include <rapidjson/document.h>

#include <stdexcept>
#include <string>

#include "security_support.hpp"

using nk::test::Nkhost;
using nk::test::RawConnection;
using nk::test::WsClient;

namespace {

const char* const kDepthMetric = "nkhost_json_depth_exceeded";

// {"x":[[...]]} whose outermost object makes the total depth `depth` (>= 1).
std::string nested(std::size_t depth, const std::string& members = "") {
    const std::size_t arrays = depth - 1;
    return "{" + members + (members.empty() ? "" : ",") + "\"x\":" + std::string(arrays, '[') +
           std::string(arrays, ']') + "}";
}

std::string gzip(const std::string& in) {
    z_stream z{};
    if (deflateInit2(&z, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 9, Z_DEFAULT_STRATEGY) != Z_OK)
        throw std::runtime_error("deflateInit2");
    std::string out(deflateBound(&z, in.size()), '\0');
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    const int rc = deflate(&z, Z_FINISH);
    deflateEnd(&z);
    if (rc != Z_STREAM_END)
        throw std::runtime_error("deflate");
    out.resize(z.total_out);
    return out;
}

// The reproduction: 130,000 nested arrays, 298 bytes gzipped.
std::string deep_body(std::size_t depth = 130000) {
    return "{\"x\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
}

// Sends `body` gzip-encoded; returns the raw response ("" when the connection died).
std::string send_gzip(const Nkhost& server, const std::string& request_line,
                      const std::string& auth_header, const std::string& body) {
    const std::string z = gzip(body);
    RawConnection c(server.port());
    std::string req = request_line + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth_header +
                      "Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
                      "Content-Length: " +
                      std::to_string(z.size()) + "\r\nConnection: close\r\n\r\n" + z;
    if (!c.send(req))
        return "";
    return c.read_until_close();
}

std::string basic_server_key() {
    return "Authorization: Basic ZGVmYXVsdGtleTo=\r\n";  // defaultkey:
}
std::string bearer(const std::string& token) {
    return "Authorization: Bearer " + token + "\r\n";
}

// 400 with Nakama's {"code":3,...} body.
void check_invalid_argument(const std::string& raw) {
    CHECK(nk::test::status_of(raw) == 400);
    CHECK(raw.find("\"code\":3") != std::string::npos);
}

bool healthy(const Nkhost& server) {
    auto res = server.client()->Get("/healthcheck");
    return res && res->status == 200;
}

}  // namespace

TEST_CASE("130,000 nested arrays in a gzip authenticate body answer 400 code 3, not a crash") {
    Nkhost server;
    const std::string raw = send_gzip(server, "POST /v2/account/authenticate/device?create=true",
                                      basic_server_key(), deep_body());
    check_invalid_argument(raw);
    CHECK(raw.find("socket.max_json_depth") != std::string::npos);
    CHECK(healthy(server));
    CHECK(server.metric(kDepthMetric) == 1);
}

TEST_CASE("every REST body parser refuses deep JSON before it can overflow the stack") {
    Nkhost server;
    const std::string token = server.device_token("json-depth-device-1");

    SUBCASE("PUT /v2/account") {
        check_invalid_argument(send_gzip(server, "PUT /v2/account", bearer(token), deep_body()));
    }
    SUBCASE("POST /v2/account/session/refresh") {
        check_invalid_argument(send_gzip(server, "POST /v2/account/session/refresh",
                                         basic_server_key(), deep_body()));
    }
    SUBCASE("POST /v2/session/logout") {
        check_invalid_argument(
            send_gzip(server, "POST /v2/session/logout", bearer(token), deep_body()));
    }
    SUBCASE("POST /v2/event, 60,000 levels under an unknown member") {
        check_invalid_argument(
            send_gzip(server, "POST /v2/event", bearer(token), deep_body(60000)));
    }
    SUBCASE("POST /v2/rpc body (parsed before the id is looked up)") {
        check_invalid_argument(send_gzip(server, "POST /v2/rpc/any_id?http_key=defaulthttpkey", "",
                                         deep_body()));
    }
    CHECK(healthy(server));
    CHECK(server.metric(kDepthMetric) == 1);
    // The account is untouched and still served.
    auto c = server.client();
    c->set_bearer_token_auth(token);
    auto res = c->Get("/v2/account");
    REQUIRE(res);
    CHECK(res->status == 200);
}

TEST_CASE("a document exactly at socket.max_json_depth parses; one level deeper is refused") {
    SUBCASE("the default limit, 64") {
        Nkhost server;
        auto c = server.client();
        c->set_basic_auth("defaultkey", "");
        auto ok = c->Post("/v2/account/authenticate/device?create=true",
                          nested(64, "\"id\":\"depth-limit-device-64\""), "application/json");
        REQUIRE(ok);
        CHECK(ok->status == 200);
        auto deep = c->Post("/v2/account/authenticate/device?create=true",
                            nested(65, "\"id\":\"depth-limit-device-65\""), "application/json");
        REQUIRE(deep);
        CHECK(deep->status == 400);
        CHECK(deep->body.find("\"code\":3") != std::string::npos);
        CHECK(server.metric(kDepthMetric) == 1);
    }
    SUBCASE("a configured limit applies to authenticate, events and RPC bodies") {
        Nkhost server({"--socket.max_json_depth", "8"});
        const std::string token = server.device_token("depth-limit-device-8");
        auto c = server.client();
        c->set_bearer_token_auth(token);
        auto ev_ok = c->Post("/v2/event", nested(8, "\"name\":\"e\""), "application/json");
        REQUIRE(ev_ok);
        CHECK(ev_ok->status / 100 == 2);
        auto ev_deep = c->Post("/v2/event", nested(9, "\"name\":\"e\""), "application/json");
        REQUIRE(ev_deep);
        CHECK(ev_deep->status == 400);

        auto put_ok = c->Put("/v2/account", nested(8, "\"display_name\":\"d8\""), "application/json");
        REQUIRE(put_ok);
        CHECK(put_ok->status == 200);
        auto put_deep = c->Put("/v2/account", nested(9, "\"display_name\":\"d9\""), "application/json");
        REQUIRE(put_deep);
        CHECK(put_deep->status == 400);

        auto rpc_deep = server.client()->Post("/v2/rpc/any_id?http_key=defaulthttpkey",
                                              std::string(9, '[') + std::string(9, ']'),
                                              "application/json");
        REQUIRE(rpc_deep);
        CHECK(rpc_deep->status == 400);
        CHECK(server.metric(kDepthMetric) == 3);
    }
}

TEST_CASE("a deep realtime envelope closes the socket and the server keeps serving") {
    Nkhost server({"--socket.max_message_size_bytes", "1048576"});
    const std::string token = server.device_token("json-depth-ws-device");

    WsClient at_limit(server.port(), token);
    // A kind the server does not support, 64 levels deep: parsed, answered, socket kept.
    at_limit.send_text("{\"cid\":\"1\",\"custom\":" + nested(63) + "}");
    CHECK(at_limit.read_until("Unsupported message kind").find("Unsupported message kind") !=
          std::string::npos);

    WsClient deep(server.port(), token);
    deep.send_text(deep_body());
    const std::string got = deep.read_until(std::string(1, '\x88'));
    REQUIRE(!got.empty());
    CHECK(static_cast<unsigned char>(got[0]) == 0x88);  // a close frame, from a live server
    CHECK(healthy(server));
    CHECK(server.metric(kDepthMetric) == 1);
}

TEST_CASE("invalid UTF-8 in JSON strings is refused with 400 code 3") {
    Nkhost server;
    SUBCASE("a device id with bytes ff fe: refused, nothing created") {
        auto c = server.client();
        c->set_basic_auth("defaultkey", "");
        auto res = c->Post("/v2/account/authenticate/device?create=true",
                           "{\"id\":\"device-\xff\xfe-0001\"}", "application/json");
        REQUIRE(res);
        CHECK(res->status == 400);
        CHECK(res->body.find("\"code\":3") != std::string::npos);
        CHECK(res->body.find("token") == std::string::npos);
    }
    SUBCASE("a display name of invalid UTF-8: refused, the account stays valid JSON") {
        const std::string token = server.device_token("utf8-device-0001");
        auto c = server.client();
        c->set_bearer_token_auth(token);
        auto put = c->Put("/v2/account", "{\"display_name\":\"bad-\xc3\x28-name\"}",
                          "application/json");
        REQUIRE(put);
        CHECK(put->status == 400);
        CHECK(put->body.find("\"code\":3") != std::string::npos);
        auto get = c->Get("/v2/account");
        REQUIRE(get);
        CHECK(get->status == 200);
        rapidjson::Document d;
        d.Parse<rapidjson::kParseValidateEncodingFlag>(get->body.c_str());
        CHECK_FALSE(d.HasParseError());
        CHECK(get->body.find("bad-") == std::string::npos);
    }
    CHECK(server.metric(kDepthMetric) == 0);
}
