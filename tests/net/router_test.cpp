#include <doctest/doctest.h>

#include "net/router.hpp"

using namespace nk::net;

namespace {
Handler named(std::string* out, std::string name) {
    return [out, name](Request&&, Responder) { *out = name; };
}
}  // namespace

TEST_CASE("router: exact routes, captures, 404 and 501 kinds") {
    Router r;
    std::string hit;
    r.add(Method::post, "/v2/event", named(&hit, "event"));
    r.add(Method::get, "/v2/rpc/{id}", named(&hit, "rpc-get"));
    r.add(Method::post, "/v2/rpc/{id}", named(&hit, "rpc-post"));
    r.add(Method::get, "/v2/user/{user}/group/{group}", named(&hit, "two"));

    KeyValues params;
    auto m = r.match(Method::post, "/v2/event", params);
    REQUIRE(m.kind == Router::Match::Kind::handler);
    CHECK(m.route == "/v2/event");
    (*m.handler)(Request{}, Responder{});
    CHECK(hit == "event");

    m = r.match(Method::get, "/v2/event", params);
    CHECK(m.kind == Router::Match::Kind::method_not_allowed);
    CHECK(m.route == "/v2/event");

    m = r.match(Method::post, "/v2/rpc/do_thing", params);
    REQUIRE(m.kind == Router::Match::Kind::handler);
    CHECK(m.route == "/v2/rpc/{id}");
    (*m.handler)(Request{}, Responder{});
    CHECK(hit == "rpc-post");
    REQUIRE(params.size() == 1);
    CHECK(params[0].first == "id");
    CHECK(params[0].second == "do_thing");

    params.clear();
    m = r.match(Method::get, "/v2/user/u1/group/g2", params);
    REQUIRE(m.kind == Router::Match::Kind::handler);
    REQUIRE(params.size() == 2);
    CHECK(params[0].second == "u1");
    CHECK(params[1].second == "g2");

    params.clear();
    CHECK(r.match(Method::get, "/v2/rpc", params).kind == Router::Match::Kind::not_found);
    CHECK(r.match(Method::get, "/v2/rpc/", params).kind == Router::Match::Kind::not_found);
    CHECK(r.match(Method::get, "/v2/rpc/a/b", params).kind == Router::Match::Kind::not_found);
    CHECK(r.match(Method::get, "/nope", params).kind == Router::Match::Kind::not_found);
    CHECK(r.match(Method::get, "/nope", params).route == "unmatched");
    CHECK(params.empty());

    // HEAD is served by GET routes.
    CHECK(r.match(Method::head, "/v2/rpc/x", params).kind == Router::Match::Kind::handler);

    CHECK_THROWS_AS(r.add(Method::post, "/v2/event", named(&hit, "dup")), std::invalid_argument);
    CHECK_THROWS_AS(r.add(Method::post, "no-slash", named(&hit, "bad")), std::invalid_argument);
}

TEST_CASE("router: fallback answers everything") {
    Router r;
    std::string hit;
    r.set_fallback(named(&hit, "fallback"));
    KeyValues params;
    auto m = r.match(Method::delete_, "/anything/at/all", params);
    REQUIRE(m.kind == Router::Match::Kind::handler);
    CHECK(m.route == "fallback");
}

TEST_CASE("router: upgrade routes are found by exact path") {
    Router r;
    r.add_upgrade("/ws", [](Request&&, Upgrade&) {});
    CHECK(r.find_upgrade("/ws") != nullptr);
    CHECK(r.find_upgrade("/ws2") == nullptr);
    CHECK(r.route_name(r.upgrade_route_id("/ws")) == "/ws");
}

TEST_CASE("query parsing: decoding, '+', empty and trailing parameters") {
    KeyValues q;
    parse_query("", q);
    CHECK(q.empty());
    parse_query("a=1&", q);
    REQUIRE(q.size() == 1);
    CHECK(q[0] == std::pair<std::string, std::string>{"a", "1"});
    q.clear();
    parse_query("&&http_key=a%20b+c&&unwrap&x=%zz%4", q);
    REQUIRE(q.size() == 3);
    CHECK(q[0].first == "http_key");
    CHECK(q[0].second == "a b c");
    CHECK(q[1].first == "unwrap");
    CHECK(q[1].second.empty());
    CHECK(q[2].second == "%zz%4");
    CHECK(percent_decode("/v2/rpc/a%2Fb+c", false) == "/v2/rpc/a/b+c");
}

TEST_CASE("request helpers and error responses") {
    Request req;
    req.headers = {{"Content-Type", "application/json"}, {"X-Test", "1"}};
    req.query = {{"a", "1"}, {"a", "2"}};
    req.path_params = {{"id", "foo"}};
    CHECK(req.header("content-type") == "application/json");
    CHECK(req.header("missing").empty());
    CHECK(req.query_param("a") == std::optional<std::string_view>("1"));
    CHECK(!req.query_param("b"));
    CHECK(req.path_param("id") == "foo");

    auto r = Response::error(nk::Status::unauthenticated("Auth token invalid"));
    CHECK(r.status == 401);
    CHECK(r.body == R"({"code":16,"message":"Auth token invalid"})");
    REQUIRE(r.headers.size() == 1);
    CHECK(r.headers[0].first == "WWW-Authenticate");
    CHECK(r.headers[0].second == "Auth token invalid");
    CHECK(Response::error(nk::Status::not_found("x")).headers.empty());
}

TEST_CASE("responder: first call wins, dropped uncalled sends 500 once") {
    std::vector<int> sent;
    {
        Responder a([&](Response&& r) { sent.push_back(r.status); });
        Responder b = a;
        b(Response::json(201, "{}"));
        a(Response::json(202, "{}"));
    }
    CHECK(sent == std::vector<int>{201});
    sent.clear();
    {
        Responder a([&](Response&& r) { sent.push_back(r.status); });
        Responder b = a;
    }
    CHECK(sent == std::vector<int>{500});
}
