// Hostile and broken realtime clients against the real server: messages over
// socket.max_message_size_bytes (one frame, or fragments adding up), frames RFC 6455 forbids, a
// binary frame on a format=json socket, text that is not UTF-8 or not an envelope, and a client
// that never answers pings. Each gets its documented close code and session_end reason (read
// from the event archive plugin, a session_end handler), is counted in
// socket_ws_closed{reason}, and the server keeps serving sockets and REST requests.
// Fragmented messages within the limit are reassembled and answered.
#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace nk::test::ws;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

constexpr auto kSafety = 20s;  // safety net only; nothing here measures time
constexpr std::size_t kMaxMessage = 1024;

// A server with the event archive recording every session_end to a file.
class Server {
public:
    explicit Server(std::vector<std::string> extra = {}) : host_(args(dir_, std::move(extra))) {}

    Nkhost& host() { return host_; }

    // A new user's session token and user id.
    std::pair<std::string, std::string> user(const std::string& device) {
        const std::string token = host_.device_token(device);
        auto c = host_.client();
        c->set_bearer_token_auth(token);
        auto res = c->Get("/v2/account");
        REQUIRE(res);
        REQUIRE(res->status == 200);
        rapidjson::Document d;
        d.Parse(res->body.c_str());
        REQUIRE((d.IsObject() && d.HasMember("user") && d["user"]["id"].IsString()));
        return {token, d["user"]["id"].GetString()};
    }

    // The reason of the user's session_end once the archive has it; nullopt if it never came.
    std::optional<std::string> session_end_reason(const std::string& user_id) {
        std::optional<std::string> reason;
        wait_until([&] { return (reason = find_session_end(user_id)).has_value(); }, kSafety);
        return reason;
    }

    double closed(const std::string& label) {
        return host_.metric("nkhost_socket_ws_closed", {"reason=\"" + label + "\""});
    }

    // A fresh socket answers a ping envelope and a REST request answers 200.
    bool still_serves(const std::string& token) {
        WsClient healthy(host_.port(), token);
        if (!healthy.answers_ping("alive")) return false;
        auto c = host_.client();
        c->set_bearer_token_auth(token);
        auto res = c->Get("/v2/account");
        return res && res->status == 200;
    }

private:
    static std::vector<std::string> args(const TempDir& dir, std::vector<std::string> extra) {
        const fs::path modules = dir.path() / "modules";
        fs::create_directories(modules);
        fs::copy_file(build_dir() / "plugins" / "event_archive.so", modules / "event_archive.so");
        std::vector<std::string> out = {
            "--runtime.path", modules.string(), "--runtime.env",
            "EVENT_ARCHIVE_PATH=" + (dir.path() / "events.jsonl").string(),
            "--socket.max_message_size_bytes", std::to_string(kMaxMessage)};
        out.insert(out.end(), extra.begin(), extra.end());
        return out;
    }

    std::optional<std::string> find_session_end(const std::string& user_id) {
        const fs::path file = dir_.path() / "events.jsonl";
        std::error_code ec;
        if (!fs::exists(file, ec)) return std::nullopt;
        const std::string text = read_file(file);
        std::string::size_type start = 0;
        for (auto end = text.find('\n'); end != std::string::npos;
             start = end + 1, end = text.find('\n', start)) {
            rapidjson::Document d;
            d.Parse(text.data() + start, end - start);
            if (d.HasParseError() || !d.IsObject() || !d["name"].IsString() ||
                std::string(d["name"].GetString()) != "session_end" || !d["user_id"].IsString() ||
                user_id != d["user_id"].GetString())
                continue;
            const auto& props = d["properties"];
            if (props.IsObject() && props.HasMember("reason") && props["reason"].IsString())
                return std::string(props["reason"].GetString());
        }
        return std::nullopt;
    }

    TempDir dir_;
    Nkhost host_;
};

struct Expected {
    int code;                // the close code the client reads
    std::string close_text;  // the close frame's reason text
    std::string reason;      // session_end's reason
    std::string label;       // socket_ws_closed{reason}
};

// Opens a socket for a new user, sends `bytes`, and checks the close, session_end, the metric,
// and that the server still serves others.
void check_fault(Server& s, const std::string& name, const std::string& bytes, const Expected& e) {
    CAPTURE(name);
    auto [token, user_id] = s.user("ws-fault-" + name);
    const double before = s.closed(e.label);
    {
        WsClient c(s.host().port(), token);
        REQUIRE(c.answers_ping("before"));
        (void)c.send(bytes);  // the server may close before it has read everything
        const auto close = c.close_frame();
        REQUIRE_MESSAGE(close.has_value(), "no close frame");
        CHECK(close->code == e.code);
        CHECK(close->reason == e.close_text);
        CHECK(c.closed_by_server());
    }
    CHECK(s.session_end_reason(user_id) == e.reason);
    CHECK(wait_until([&] { return s.closed(e.label) == before + 1; }, kSafety));
    CHECK(s.still_serves(token));
}

}  // namespace

TEST_CASE("hostile frames get their close code and session_end reason; the server keeps serving") {
    Server s;
    const Expected too_big{1009, "", "message too big", "message_too_big"};
    const Expected protocol{1002, "", "websocket protocol error", "protocol_error"};
    const Expected malformed{1000, "received malformed payload", "received malformed payload",
                             "malformed_payload"};
    const std::string ping = R"({"cid":"1","ping":{}})";
    const std::string half(kMaxMessage / 2 + 100, 'a');
    struct Case {
        std::string name, bytes;
        Expected expected;
    };
    const std::vector<Case> cases = {
        // One frame over socket.max_message_size_bytes.
        {"big-frame",
         frame(kFin | kText, R"({"cid":")" + std::string(kMaxMessage, 'a') + R"(","ping":{}})"),
         too_big},
        // Fragments that add up to more than socket.max_message_size_bytes.
        {"big-fragments",
         frame(kText, R"({"cid":")" + half) + frame(kContinuation, half) +
             frame(kFin | kContinuation, R"(","ping":{}})"),
         too_big},
        // A binary frame on a format=json socket (Nakama disconnects with this reason).
        {"binary", frame(kFin | kBinary, ping),
         {1000, "received unexpected WebSocket message type",
          "received unexpected WebSocket message type", "unexpected_message_type"}},
        // Frames RFC 6455 forbids.
        {"unmasked", frame(kFin | kText, ping, false), protocol},
        {"reserved-bit", frame(kFin | kRsv1 | kText, ping), protocol},
        {"unknown-opcode", frame(kFin | 0x3, "x"), protocol},
        {"big-control-frame", frame(kFin | kPing, std::string(126, 'p')), protocol},
        {"fragmented-control-frame", frame(kPing, "p"), protocol},
        {"stray-continuation", frame(kFin | kContinuation, "x"), protocol},
        {"text-then-text", frame(kText, "{") + frame(kFin | kText, "}"), protocol},
        // Text that is not UTF-8: the WebSocket layer closes with 1007.
        {"not-utf8", frame(kFin | kText, "{\"cid\":\"\xff\xfe\",\"ping\":{}}"),
         {1007, "", "received malformed payload", "malformed_payload"}},
        // UTF-8 text that is not an envelope: closed like Nakama, 1000 with the reason as text.
        {"not-json", frame(kFin | kText, "{not json"), malformed},
        {"wrong-shape", frame(kFin | kText, R"({"cid":"1","ping":1})"), malformed},
    };
    for (const auto& c : cases) check_fault(s, c.name, c.bytes, c.expected);
}

TEST_CASE("fragmented messages within the limit are reassembled and answered") {
    Server s;
    auto [token, user_id] = s.user("ws-fragments");
    WsClient c(s.host().port(), token);
    // Three fragments, with a ping control frame between two of them (RFC 6455 allows it).
    REQUIRE(c.send(frame(kText, R"({"cid":)") + frame(kContinuation, R"("frag",)") +
                   frame(kFin | kPing, "hello") + frame(kFin | kContinuation, R"("ping":{}})")));
    Frame pong = c.next(true);
    CHECK(pong.opcode == kPong);
    CHECK(pong.payload == "hello");
    Frame answer = c.next();
    CHECK(answer.opcode == kText);
    CHECK(answer.payload == R"({"cid":"frag","pong":{}})");

    // A message of exactly socket.max_message_size_bytes, in fragments, is answered too.
    const std::string head = R"({"cid":")", tail = R"(","ping":{}})";
    const std::string cid(kMaxMessage - head.size() - tail.size(), 'c');
    REQUIRE(c.send(frame(kText, head) + frame(kContinuation, cid.substr(0, cid.size() / 2)) +
                   frame(kFin | kContinuation, cid.substr(cid.size() / 2) + tail)));
    answer = c.next();
    CHECK(answer.opcode == kText);
    CHECK(answer.payload == R"({"cid":")" + cid + R"(","pong":{}})");
    CHECK(c.answers_ping("still-open"));
    CHECK(s.closed("message_too_big") == 0);
    CHECK(s.still_serves(token));
}

TEST_CASE("a client that never answers pings is closed with pong timeout") {
    // The server pings every 200 ms and waits 1 s for any traffic; the silent client answers
    // neither the pings nor the close frame, so the connection is dropped after close_ack_wait_ms.
    Server s({"--socket.ping_period_ms", "200", "--socket.pong_wait_ms", "1000",
              "--socket.write_wait_ms", "1000", "--socket.close_ack_wait_ms", "500"});
    auto [token, user_id] = s.user("ws-silent-client");
    const double before = s.closed("pong_timeout");
    WsClient silent(s.host().port(), token);
    bool pinged = false;
    Frame f;
    while ((f = silent.next(true)).opcode == kPing) pinged = true;
    CHECK(pinged);
    REQUIRE(f.opcode == kClose);
    REQUIRE(f.payload.size() >= 2);
    CHECK(((static_cast<unsigned char>(f.payload[0]) << 8) | static_cast<unsigned char>(f.payload[1])) ==
          1000);
    CHECK(f.payload.substr(2) == "pong timeout");
    CHECK(silent.closed_by_server());
    CHECK(s.session_end_reason(user_id) == "pong timeout");
    CHECK(wait_until([&] { return s.closed("pong_timeout") == before + 1; }, kSafety));
    CHECK(s.still_serves(token));
}
