// Realtime sockets do not outlive what authenticated them: DELETE /v2/account closes the user's
// sockets, a logout of every session closes them too, and a logout naming a session token closes
// the sockets opened with that token only, and with session.single_session a new login closes
// the sockets of the sessions it invalidated. The server closes with 1000 and the session_end
// reason "server-side session disconnect" as its close text (the same text session_end carries).
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "security_support.hpp"

using nk::test::Nkhost;
using nk::test::RawConnection;
using namespace std::chrono_literals;

namespace {

constexpr auto kSafety = 20s;  // safety net only; nothing here measures time

struct Frame {
    int opcode = -1;  // -1: the connection ended (or the safety net ran out) first
    std::string payload;
};

// A WebSocket client over a raw connection: masked text frames out, unmasked frames in.
class Socket {
public:
    Socket(std::uint16_t port, const std::string& token) : conn_(port) {
        REQUIRE(conn_.send("GET /ws?format=json&token=" + token +
                           " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n"));
        const auto deadline = std::chrono::steady_clock::now() + kSafety;
        std::size_t end = std::string::npos;
        while ((end = in_.find("\r\n\r\n")) == std::string::npos && fill(deadline)) {
        }
        REQUIRE_MESSAGE(end != std::string::npos, "no upgrade answer: " << in_);
        REQUIRE_MESSAGE(in_.compare(0, 12, "HTTP/1.1 101") == 0, in_);
        in_.erase(0, end + 4);
    }

    void send_text(const std::string& text) {
        REQUIRE(text.size() < 126);
        std::string frame;
        frame += static_cast<char>(0x81);
        frame += static_cast<char>(0x80 | text.size());
        const char mask[4] = {0x11, 0x22, 0x33, 0x44};
        frame.append(mask, 4);
        for (std::size_t i = 0; i < text.size(); ++i) frame += static_cast<char>(text[i] ^ mask[i % 4]);
        REQUIRE(conn_.send(frame));
    }

    // The next data or close frame (server pings are skipped).
    Frame next() {
        const auto deadline = std::chrono::steady_clock::now() + kSafety;
        for (;;) {
            if (auto f = parse()) {
                if (f->opcode == 0x9 || f->opcode == 0xA) continue;
                return *f;
            }
            if (!fill(deadline)) return {};
        }
    }

    // A ping envelope answered with its pong.
    bool answers_ping(const std::string& cid) {
        send_text(R"({"cid":")" + cid + R"(","ping":{}})");
        const Frame f = next();
        return f.opcode == 0x1 && f.payload == R"({"cid":")" + cid + R"(","pong":{}})";
    }

    // Reads to the server's close frame: its code and reason, or nullopt when none came.
    std::optional<std::pair<int, std::string>> close_frame() {
        for (;;) {
            const Frame f = next();
            if (f.opcode == -1) return std::nullopt;
            if (f.opcode != 0x8) continue;
            if (f.payload.size() < 2) return std::make_pair(1005, std::string());
            const int code = (static_cast<unsigned char>(f.payload[0]) << 8) |
                             static_cast<unsigned char>(f.payload[1]);
            return std::make_pair(code, f.payload.substr(2));
        }
    }

private:
    bool fill(std::chrono::steady_clock::time_point deadline) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{conn_.fd(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char buf[4096];
        const ssize_t n = ::recv(conn_.fd(), buf, sizeof buf, 0);
        if (n <= 0) return false;
        in_.append(buf, static_cast<std::size_t>(n));
        return true;
    }

    std::optional<Frame> parse() {
        if (in_.size() < 2) return std::nullopt;
        const auto b0 = static_cast<unsigned char>(in_[0]);
        const auto b1 = static_cast<unsigned char>(in_[1]);
        std::size_t header = 2;
        std::size_t len = b1 & 0x7F;
        if (len == 126) {
            if (in_.size() < 4) return std::nullopt;
            len = (static_cast<unsigned char>(in_[2]) << 8) | static_cast<unsigned char>(in_[3]);
            header = 4;
        } else if (len == 127) {
            FAIL("unexpectedly large frame");
        }
        if (in_.size() < header + len) return std::nullopt;
        Frame f{b0 & 0x0F, in_.substr(header, len)};
        in_.erase(0, header + len);
        return f;
    }

    RawConnection conn_;
    std::string in_;
};

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

const std::pair<int, std::string> kDisconnected{1000, "server-side session disconnect"};

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
    Socket a, b;
};

}  // namespace

TEST_CASE("DELETE /v2/account closes the user's open sockets with server-side session disconnect") {
    Nkhost host;
    const std::string token = host.device_token("sessions-delete-device-01");
    const std::string other = host.device_token("sessions-delete-device-02");
    Socket first(host.port(), token);
    Socket second(host.port(), token);
    Socket bystander(host.port(), other);
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
    Socket a(host.port(), first);
    Socket bystander(host.port(), host.device_token("sessions-single-02"));
    REQUIRE(a.answers_ping("1"));

    const std::string second = authenticate(host, "sessions-single-01").first;
    CHECK(a.close_frame() == kDisconnected);
    CHECK(post_as(host, first, "/v2/event", R"({"name":"e"})") == 401);  // the token went with it

    // The new session's socket opens and stays open; another user's socket is left alone.
    Socket b(host.port(), second);
    CHECK(b.answers_ping("2"));
    CHECK(bystander.answers_ping("3"));

    // The next login closes it in turn.
    authenticate(host, "sessions-single-01");
    CHECK(b.close_frame() == kDisconnected);
    CHECK(bystander.answers_ping("4"));
}
