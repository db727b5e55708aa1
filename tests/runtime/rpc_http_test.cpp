// POST|GET /v2/rpc/{id} over real HTTP (loopback, ephemeral port) against a real plugin.
#include <doctest/doctest.h>

#include <httplib.h>

#include "api/rpc_api.hpp"
#include "api/services.hpp"
#include "auth/tokens.hpp"
#include "core/blocking_pool.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "runtime/runtime.hpp"
#include "runtime_support.hpp"

using namespace nk;
using namespace nk::test;

namespace {

struct RpcServer {
    explicit RpcServer(const std::string& plugin = "events_good") {
        install(tmp / "modules", {fixture(plugin)});
        runtime::Options o;
        o.path = (tmp / "modules").string();
        o.data_dir = tmp.path().string();
        o.node = "node-a";
        o.env = {{"region", "eu"}};
        rt = std::make_unique<runtime::Runtime>(o, runtime::Dependencies{});
        REQUIRE(rt->load_all().is_ok());
        services.tokens = &tokens;
        services.pool = &pool;
        services.runtime = rt.get();
        api::register_rpc_routes(router, services);
        net::Options no;
        no.address = "127.0.0.1";
        no.port = 0;
        no.io_threads = 1;
        server = std::make_unique<net::Server>(no, router);
        server->start();
        client = std::make_unique<httplib::Client>("127.0.0.1", server->port());
        client->set_read_timeout(20, 0);
    }
    ~RpcServer() {
        server->shutdown(std::chrono::seconds(5));
        pool.stop();
    }

    TempDir tmp;
    auth::Tokens tokens{auth::Options{}};
    BlockingPool pool{2};
    std::unique_ptr<runtime::Runtime> rt;
    api::Services services;
    net::Router router;
    std::unique_ptr<net::Server> server;
    std::unique_ptr<httplib::Client> client;
};

}  // namespace

TEST_CASE("rpc over HTTP: http_key, Bearer, body forms, unwrap, GET, errors") {
    RpcServer s;
    auto& c = *s.client;

    SUBCASE("http_key with a JSON string body") {
        auto r =
            c.Post("/v2/rpc/echo?http_key=defaulthttpkey", "\"{\\\"a\\\":1}\"", "application/json");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "{\"payload\":\"{\\\"a\\\":1}\"}");
    }
    SUBCASE("ids are case-insensitive; empty body is an empty payload") {
        auto r = c.Post("/v2/rpc/ECHO?http_key=defaulthttpkey", "", "application/json");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "{\"payload\":\"\"}");
    }
    SUBCASE("wrong http_key") {
        auto r = c.Post("/v2/rpc/echo?http_key=nope", "\"x\"", "application/json");
        REQUIRE(r);
        CHECK(r->status == 401);
        CHECK(r->body ==
              "{\"error\":\"HTTP key invalid\",\"message\":\"HTTP key invalid\",\"code\":16}");
    }
    SUBCASE("neither token nor key") {
        auto r = c.Post("/v2/rpc/echo", "\"x\"", "application/json");
        REQUIRE(r);
        CHECK(r->status == 401);
        CHECK(r->body ==
              "{\"error\":\"Auth token or HTTP key required\",\"message\":\"Auth token "
              "or HTTP key required\",\"code\":16}");
    }
    SUBCASE("Bearer token: the function sees the user") {
        auto issued = s.tokens.issue("3f1e2d4c-0000-4000-8000-000000000001", "alice", {});
        httplib::Headers h = {{"Authorization", "Bearer " + issued.token}};
        auto r = c.Post("/v2/rpc/whoami", h, "\"\"", "application/json");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body ==
              "{\"payload\":\"rpc|3f1e2d4c-0000-4000-8000-000000000001|alice|node-a|eu\"}");
    }
    SUBCASE("invalid Bearer token") {
        httplib::Headers h = {{"Authorization", "Bearer not.a.token"}};
        auto r = c.Post("/v2/rpc/echo", h, "\"x\"", "application/json");
        REQUIRE(r);
        CHECK(r->status == 401);
        CHECK(r->body.find("\"message\":\"Auth token invalid\"") != std::string::npos);
    }
    SUBCASE("object body is refused with code 3") {
        auto r = c.Post("/v2/rpc/echo?http_key=defaulthttpkey", "{\"a\":1}", "application/json");
        REQUIRE(r);
        CHECK(r->status == 400);
        CHECK(r->body ==
              "{\"error\":\"json: cannot unmarshal object into Go value of type "
              "string\",\"message\":\"json: cannot unmarshal object into Go value of "
              "type string\",\"code\":3}");
    }
    SUBCASE("unwrap: raw body in, raw payload out") {
        auto r = c.Post("/v2/rpc/echo?http_key=defaulthttpkey&unwrap", "{\"raw\":true}",
                        "application/json");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "{\"raw\":true}");
    }
    SUBCASE("GET with ?payload=") {
        auto r = c.Get("/v2/rpc/echo?http_key=defaulthttpkey&payload=%22hi%22");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "{\"payload\":\"hi\"}");
    }
    SUBCASE("unknown id") {
        auto r = c.Post("/v2/rpc/missing?http_key=defaulthttpkey", "\"x\"", "application/json");
        REQUIRE(r);
        CHECK(r->status == 404);
        CHECK(r->body ==
              "{\"error\":\"RPC function not found\",\"message\":\"RPC function not "
              "found\",\"code\":5}");
    }
    SUBCASE("function error maps to its code and HTTP status") {
        auto r = c.Post("/v2/rpc/denied?http_key=defaulthttpkey", "\"x\"", "application/json");
        REQUIRE(r);
        CHECK(r->status == 403);
        CHECK(r->body == "{\"error\":\"not for you\",\"message\":\"not for you\",\"code\":7}");
    }
}

TEST_CASE("rpc over HTTP: an exception in a C++ RPC answers the generic message, not its text") {
    RpcServer s("handler_throws");
    auto& c = *s.client;
    auto r = c.Post("/v2/rpc/out_of_range?http_key=defaulthttpkey", "\"\"", "application/json");
    REQUIRE(r);
    CHECK(r->status == 500);
    CAPTURE(r->body);
    CHECK(r->body.find("\"code\":13") != std::string::npos);
    CHECK(r->body.find("\"message\":\"Error calling RPC function.\"") != std::string::npos);
    CHECK(r->body.find("range") == std::string::npos);  // vector::_M_range_check stays inside
    // A thrown nk::Error keeps its code and message.
    r = c.Post("/v2/rpc/not_found?http_key=defaulthttpkey", "\"\"", "application/json");
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->body.find("\"message\":\"no such item\"") != std::string::npos);
}
