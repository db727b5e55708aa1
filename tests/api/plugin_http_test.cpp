// Plugin HTTP routes (register_http, ABI 1.1) in the real server process: every auth mode, the
// reserved /plugins prefix, prefix routes, 404/501 like built-in routes, error statuses, a
// throwing handler (500, the server keeps serving), the listener's limits, CORS and gzip, and
// refused registrations.
#include <doctest/doctest.h>

#include <filesystem>

#include "security_support.hpp"

using namespace nk::test;
namespace fs = std::filesystem;

namespace {

std::string fixture_bytes(const std::string& name) {
    return read_file(build_dir() / "fixtures" / name / (name + ".so"));
}

struct RoutesHost {
    RoutesHost() : host(args()) {}
    static std::vector<std::string> args() {
        static TempDir modules;  // one fixture for the whole suite
        write_file(modules.path() / "http_routes.so", fixture_bytes("http_routes"));
        return {"--runtime.path", modules.path().string(), "--socket.max_request_size_bytes",
                "4096"};
    }
    Nkhost host;
};

RoutesHost& server() {
    static RoutesHost h;
    return h;
}

}  // namespace

TEST_CASE("a route without auth: served under /plugins with its status, headers and body") {
    auto c = server().host.client();
    auto res = c->Get("/plugins/hello?name=Ada%20L");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "hello Ada L (http, GET /plugins/hello)");
    CHECK(res->get_header_value("Content-Type") == "text/plain; charset=utf-8");
    CHECK(res->get_header_value("X-Plugin") == "http_routes");
    CHECK(res->get_header_value("Access-Control-Allow-Origin") == "*");  // CORS as everywhere

    auto head = c->Head("/plugins/hello");
    REQUIRE(head);
    CHECK(head->status == 200);
    CHECK(head->body.empty());

    auto teapot = c->Get("/plugins/teapot");
    REQUIRE(teapot);
    CHECK(teapot->status == 418);
    CHECK(teapot->body == "{\"teapot\":true}");  // its Content-Length header was ignored
    CHECK_FALSE(teapot->has_header("Injected"));
    CHECK_FALSE(teapot->has_header("X-Bad"));
}

TEST_CASE("unknown routes answer 404, other methods 501, as built-in routes do") {
    auto c = server().host.client();
    auto missing = c->Get("/plugins/nope");
    REQUIRE(missing);
    CHECK(missing->status == 404);
    CHECK(missing->body == R"({"code":5,"message":"Not Found"})");
    auto method = c->Delete("/plugins/hello");
    REQUIRE(method);
    CHECK(method->status == 501);
    CHECK(method->body == R"({"code":12,"message":"Method Not Allowed"})");
}

TEST_CASE("prefix routes answer every deeper path; the route is passed to the handler") {
    auto c = server().host.client();
    auto res = c->Get("/plugins/files/a/b/c.txt");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "/plugins/files/a/b/c.txt|/files/{*}");
    auto bare = c->Get("/plugins/files");
    REQUIRE(bare);
    CHECK(bare->status == 404);
}

TEST_CASE("auth modes: session token, server key, http key") {
    auto c = server().host.client();
    // Session token: none → 401, a valid one → the handler sees the user.
    auto anon = c->Post("/plugins/echo", "x", "text/plain");
    REQUIRE(anon);
    CHECK(anon->status == 401);
    const std::string token = server().host.device_token("http-routes-device-1");
    httplib::Headers h = {{"Authorization", "Bearer " + token}, {"X-Tag", "t1"}};
    auto echo = c->Put("/plugins/echo", h, "payload", "text/plain");
    REQUIRE(echo);
    CHECK(echo->status == 200);
    CHECK(echo->body.rfind("PUT|", 0) == 0);
    CHECK(echo->body.find("|t1|payload") != std::string::npos);
    CHECK(echo->body.size() > std::string("PUT||t1|payload").size());  // a user id is there

    // Server key as HTTP Basic auth.
    auto no_key = c->Get("/plugins/server");
    REQUIRE(no_key);
    CHECK(no_key->status == 401);
    auto c2 = server().host.client();
    c2->set_basic_auth("defaultkey", "");
    auto with_key = c2->Get("/plugins/server");
    REQUIRE(with_key);
    CHECK(with_key->status == 200);
    CHECK(with_key->body == "{\"auth\":\"server key\"}");

    // http_key in the query.
    auto wrong = c->Get("/plugins/key?http_key=nope");
    REQUIRE(wrong);
    CHECK(wrong->status == 401);
    CHECK(wrong->body.find("HTTP key invalid") != std::string::npos);
    auto right = c->Get("/plugins/key?http_key=defaulthttpkey");
    REQUIRE(right);
    CHECK(right->status == 200);
}

TEST_CASE("handler errors: a status becomes Nakama's error JSON; a throw is a 500, not a crash") {
    auto c = server().host.client();
    auto denied = c->Get("/plugins/denied");
    REQUIRE(denied);
    CHECK(denied->status == 403);
    CHECK(denied->body == R"({"code":7,"message":"not yours"})");
    for (int i = 0; i < 3; ++i) {
        auto thrown = c->Get("/plugins/throws");
        REQUIRE(thrown);
        CHECK(thrown->status == 500);
        CHECK(thrown->body.find("\"code\":13") != std::string::npos);
    }
    auto still = c->Get("/plugins/hello");
    REQUIRE(still);
    CHECK(still->status == 200);
    CHECK(server().host.process().running());
}

TEST_CASE("the listener's limits and gzip apply to plugin routes") {
    auto c = server().host.client();
    auto too_big = c->Post("/plugins/echo", std::string(8000, 'x'), "text/plain");
    REQUIRE(too_big);
    CHECK(too_big->status == 413);

    httplib::Headers gz = {{"Accept-Encoding", "gzip"}};
    c->set_decompress(false);
    auto big = c->Get("/plugins/big", gz);
    REQUIRE(big);
    CHECK(big->status == 200);
    CHECK(big->get_header_value("Content-Encoding") == "gzip");
    CHECK(big->body.size() < 100000);
}

TEST_CASE("an invalid route is refused at load, naming the reason") {
    TempDir modules;
    write_file(modules.path() / "http_bad_route.so", fixture_bytes("http_bad_route"));
    const auto run = run_nkhost({"check", "--runtime.path", modules.path().string(), "--data_dir",
                                 (modules.path() / ".data").string()});
    CHECK(run.exit_code != 0);
    CHECK(run.output.find("register_http: invalid path \"/bad path\"") != std::string::npos);
}
