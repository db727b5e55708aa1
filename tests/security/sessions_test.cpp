// Realtime sockets do not outlive what authenticated them: DELETE /v2/account closes the user's
// sockets, a logout of every session closes them too, and a logout naming a session token closes
// the sockets opened with that token only, and with session.single_session a new login closes
// the sockets of the sessions it invalidated. The server closes with 1000 and the session_end
// reason "server-side session disconnect" as its close text (the same text session_end carries).
#include <doctest/doctest.h>

#include <string>
#include <utility>

#include "security_support.hpp"

using nk::test::Nkhost;
using nk::test::WsClient;

namespace {

std::string field(const std::string& json, const std::string& name) {
    const std::string key = "\"" + name + "\":\"";
    auto at = json.find(key);
    if (at == std::string::npos) return {};
    at += key.size();
    return json.substr(at, json.find('"', at) - at);
}

// A second session of the device's user: {token, refresh_token}.
std::pair<std::string, std::string> authenticate(Nkhost& host, const std::string& device) {
    auto c = host.client();
    c->set_basic_auth("defaultkey", "");
    auto res = c->Post("/v2/account/authenticate/device?create=true", R"({"id":")" + device + R"("})",
                       "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    return {field(res->body, "token"), field(res->body, "refresh_token")};
}

int post_as(Nkhost& host, const std::string& token, const std::string& path, const std::string& body) {
    auto c = host.client();
    c->set_bearer_token_auth(token);
    auto res = c->Post(path, body, "application/json");
    REQUIRE(res);
    return res->status;
}

const nk::test::ws::Close kDisconnected{1000, "server-side session disconnect"};

// Two sessions of one device's user ({token, refresh_token} each), each with an open socket.
struct TwoSessions {
    TwoSessions(Nkhost& host, const std::string& device)
        : first(authenticate(host, device)),
          second(authenticate(host, device)),
          a(host.port(), first.first),
          b(host.port(), second.first) {
        REQUIRE(a.answers_ping("1"));
        REQUIRE(b.answers_ping("2"));
    }
    std::pair<std::string, std::string> first, second;
    WsClient a, b;
};

}  // namespace

TEST_CASE("DELETE /v2/account closes the user's open sockets with server-side session disconnect") {
    Nkhost host;
    const std::string token = host.device_token("sessions-delete-device-01");
    const std::string other = host.device_token("sessions-delete-device-02");
    WsClient first(host.port(), token);
    WsClient second(host.port(), token);
    WsClient bystander(host.port(), other);
    REQUIRE(first.answers_ping("1"));
    REQUIRE(second.answers_ping("2"));

    auto c = host.client();
    c->set_bearer_token_auth(token);
    auto res = c->Delete("/v2/account");
    REQUIRE(res);
    REQUIRE(res->status == 200);

    CHECK(first.close_frame() == kDisconnected);
    CHECK(second.close_frame() == kDisconnected);
    CHECK(bystander.answers_ping("3"));  // another user's socket stays open
}

TEST_CASE("logout without a token closes every socket of the caller") {
    Nkhost host;
    TwoSessions s(host, "sessions-logout-all-01");
    CHECK(post_as(host, s.first.first, "/v2/session/logout", "{}") == 200);
    CHECK(s.a.close_frame() == kDisconnected);
    CHECK(s.b.close_frame() == kDisconnected);
}

TEST_CASE("logout naming a session token closes the sockets opened with it, no other") {
    Nkhost host;
    TwoSessions s(host, "sessions-logout-one-01");
    const std::string& token_a = s.first.first;
    const std::string& token_b = s.second.first;
    // A refresh token opens no socket: naming only one leaves both open.
    CHECK(post_as(host, token_b, "/v2/session/logout",
                  R"({"refresh_token":")" + s.first.second + R"("})") == 200);
    CHECK(s.a.answers_ping("3"));
    CHECK(s.b.answers_ping("4"));

    CHECK(post_as(host, token_b, "/v2/session/logout", R"({"token":")" + token_a + R"("})") == 200);
    CHECK(s.a.close_frame() == kDisconnected);
    CHECK(s.b.answers_ping("5"));
}

TEST_CASE("with session.single_session a new login closes the sockets of the sessions it invalidated") {
    Nkhost host({"--session.single_session", "true"});
    const std::string first = authenticate(host, "sessions-single-01").first;
    WsClient a(host.port(), first);
    WsClient bystander(host.port(), host.device_token("sessions-single-02"));
    REQUIRE(a.answers_ping("1"));

    const std::string second = authenticate(host, "sessions-single-01").first;
    CHECK(a.close_frame() == kDisconnected);
    CHECK(post_as(host, first, "/v2/event", R"({"name":"e"})") == 401);  // the token went with it

    // The new session's socket opens and stays open; another user's socket is left alone.
    WsClient b(host.port(), second);
    CHECK(b.answers_ping("2"));
    CHECK(bystander.answers_ping("3"));

    // The next login closes it in turn.
    authenticate(host, "sessions-single-01");
    CHECK(b.close_frame() == kDisconnected);
    CHECK(bystander.answers_ping("4"));
}
