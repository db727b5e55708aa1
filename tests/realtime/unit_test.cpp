// Socket-free parts of realtime: envelope codec, end-reason bookkeeping, registry.
#include <doctest/doctest.h>

#include <atomic>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <variant>
#include <vector>

#include "net/http.hpp"
#include "realtime/envelope.hpp"
#include "realtime/realtime.hpp"
#include "realtime/session_end.hpp"
#include "realtime/session_hub.hpp"
#include "realtime/session_registry.hpp"

using namespace nk::realtime;

namespace {
const nk::JsonLimits kLimits;  // the default depth limit, not counted
}  // namespace

TEST_CASE("parse_envelope classifies kinds and keeps the cid") {
    auto ping = parse_envelope(R"({"cid":"7","ping":{}})", kLimits);
    REQUIRE(ping);
    CHECK(ping->type == Envelope::Type::ping);
    CHECK(ping->cid == "7");

    auto pong = parse_envelope(R"({"pong":{}})", kLimits);
    REQUIRE(pong);
    CHECK(pong->type == Envelope::Type::pong);
    CHECK(pong->cid.empty());

    auto other = parse_envelope(R"({"channel_join":{"target":"x","type":1},"cid":"9"})", kLimits);
    REQUIRE(other);
    CHECK(other->type == Envelope::Type::other);
    CHECK(other->kind == "channel_join");
    CHECK(other->cid == "9");

    auto empty = parse_envelope(R"({"cid":"3"})", kLimits);
    REQUIRE(empty);
    CHECK(empty->type == Envelope::Type::empty);
    CHECK(empty->cid == "3");

    auto null_kind = parse_envelope(R"({"cid":"4","ping":null})", kLimits);
    REQUIRE(null_kind);
    CHECK(null_kind->type == Envelope::Type::empty);
}

TEST_CASE("parse_envelope rejects malformed payloads") {
    CHECK_FALSE(parse_envelope("", kLimits));
    CHECK_FALSE(parse_envelope("{", kLimits));
    CHECK_FALSE(parse_envelope("[]", kLimits));
    CHECK_FALSE(parse_envelope("\"ping\"", kLimits));
    CHECK_FALSE(parse_envelope(R"({"cid":1,"ping":{}})", kLimits));
    CHECK_FALSE(parse_envelope(R"({"ping":1})", kLimits));
    CHECK_FALSE(parse_envelope(R"({"ping":{},"pong":{}})", kLimits));
    CHECK_FALSE(parse_envelope(R"({"ping":{}} trailing)", kLimits));
    CHECK_FALSE(parse_envelope("{\"cid\":\"\xff\",\"ping\":{}}", kLimits));
}

TEST_CASE("parse_envelope refuses and counts envelopes nested deeper than the limit") {
    int refused = 0;
    const nk::JsonLimits limits{3, [&refused] { ++refused; }};
    auto at_limit = parse_envelope(R"({"cid":"1","custom":{"a":[]}})", limits);
    REQUIRE(at_limit);
    CHECK(at_limit->kind == "custom");
    CHECK_FALSE(parse_envelope(R"({"cid":"1","custom":{"a":[[]]}})", limits));
    CHECK_FALSE(parse_envelope(std::string(200000, '[') + std::string(200000, ']'), kLimits));
    CHECK(refused == 1);
}

TEST_CASE("encoders produce Nakama's envelopes") {
    CHECK(encode_pong("12") == R"({"cid":"12","pong":{}})");
    CHECK(encode_pong("") == R"({"pong":{}})");
    CHECK(encode_error("5", EnvelopeError::unrecognized_payload, "Unsupported message kind: rpc") ==
          R"({"cid":"5","error":{"code":1,"message":"Unsupported message kind: rpc"}})");
    CHECK(encode_error("", EnvelopeError::missing_payload, "say \"hi\"") ==
          R"({"error":{"code":2,"message":"say \"hi\""}})");
}

TEST_CASE("end reasons use Nakama's texts") {
    CHECK(end_reason_text(EndReason::normal) == "");
    CHECK(end_reason_text(EndReason::connection_lost) == "connection lost");
    CHECK(end_reason_text(EndReason::pong_timeout) == "pong timeout");
    CHECK(end_reason_text(EndReason::message_too_big) == "message too big");
    CHECK(end_reason_text(EndReason::malformed_payload) == "received malformed payload");
    CHECK(end_reason_text(EndReason::queue_full) == "session outgoing queue full");
    CHECK(end_reason_text(EndReason::kicked) == "server-side session disconnect");
    CHECK(end_reason_text(EndReason::server_shutdown) == "server shutdown");
    CHECK(end_reason_text(EndReason::client_close, 4000) == "websocket: close 4000");
    CHECK(end_reason_text(EndReason::unexpected_message_type) ==
          "received unexpected WebSocket message type");
    CHECK(end_reason_text(EndReason::protocol_error) == "websocket protocol error");
    CHECK(std::string(end_reason_label(EndReason::protocol_error)) == "protocol_error");
}

TEST_CASE("SessionEnding keeps the first cause and grants the end once under races") {
    for (int round = 0; round < 200; ++round) {
        SessionEnding ending;
        std::atomic<int> first_records{0};
        std::atomic<int> claims{0};
        std::vector<std::thread> threads;
        const EndReason reasons[] = {EndReason::normal, EndReason::pong_timeout,
                                     EndReason::server_shutdown, EndReason::connection_lost};
        for (EndReason r : reasons) {
            threads.emplace_back([&, r] {
                if (ending.record(r)) first_records.fetch_add(1);
                if (ending.claim_end()) claims.fetch_add(1);
            });
        }
        for (auto& t : threads) t.join();
        CHECK(first_records.load() == 1);
        CHECK(claims.load() == 1);
        CHECK(ending.reason() != EndReason::none);
        CHECK(ending.ended());
    }
}

namespace {

struct FakeSocket final : Session {
    using Session::Session;
    std::atomic<int> closes{0};
    void close(EndReason reason) override {
        ending().record(reason);
        closes.fetch_add(1);
    }
    void abort(EndReason reason) override { close(reason); }
};

std::shared_ptr<FakeSocket> make_session(std::string id, std::string user) {
    SessionInfo info;
    info.session_id = std::move(id);
    info.user_id = std::move(user);
    return std::make_shared<FakeSocket>(std::move(info));
}

struct RecordingSink final : nk::events::EventSink {
    std::mutex mutex;
    std::vector<nk::events::Event> events;
    nk::events::SubmitResult submit(nk::events::Event&& e) override {
        std::lock_guard lock(mutex);
        events.push_back(std::move(e));
        return nk::events::SubmitResult::accepted;
    }
};

}  // namespace

TEST_CASE("SessionRegistry indexes by id and user and refuses after close_for_new") {
    SessionRegistry registry;
    auto a = make_session("a", "u1");
    auto b = make_session("b", "u1");
    auto c = make_session("c", "u2");
    std::vector<std::shared_ptr<Session>> same;
    CHECK(registry.add(a, &same));
    CHECK(same.empty());
    CHECK(registry.add(b, &same));
    REQUIRE(same.size() == 1);
    CHECK(same[0]->id() == "a");
    CHECK(registry.add(c));
    CHECK(registry.size() == 3);
    CHECK(registry.for_user("u1").size() == 2);
    CHECK(registry.find("c") == c);
    CHECK(registry.remove("a"));
    CHECK_FALSE(registry.remove("a"));
    CHECK(registry.for_user("u1").size() == 1);
    registry.close_for_new();
    CHECK_FALSE(registry.add(make_session("d", "u3")));
    registry.remove("b");
    registry.remove("c");
    CHECK(registry.wait_empty(std::chrono::steady_clock::now()));
}

TEST_CASE("SessionRegistry keeps a user's index exact with many sessions of one user") {
    // One user may hold thousands of sockets (a bot account, a load test): removing them in
    // any order leaves exactly the others indexed, and the user's entry goes with the last one.
    SessionRegistry registry;
    constexpr int n = 5000;
    std::vector<std::shared_ptr<FakeSocket>> sessions;
    for (int i = 0; i < n; ++i) {
        sessions.push_back(make_session("s" + std::to_string(i), "many"));
        REQUIRE(registry.add(sessions.back()));
    }
    REQUIRE(registry.add(make_session("other", "u2")));
    CHECK(registry.for_user("many").size() == n);
    // Remove every third, then the rest from the back.
    std::size_t left = n;
    for (int i = 0; i < n; i += 3, --left) REQUIRE(registry.remove("s" + std::to_string(i)));
    auto remaining = registry.for_user("many");
    CHECK(remaining.size() == left);
    for (const auto& s : remaining) CHECK(std::stoi(s->id().substr(1)) % 3 != 0);
    std::vector<std::shared_ptr<Session>> same;
    REQUIRE(registry.add(make_session("late", "many"), &same));
    CHECK(same.size() == left);
    CHECK(registry.remove("late"));
    for (int i = n - 1; i >= 0; --i) {
        if (i % 3 != 0) REQUIRE(registry.remove("s" + std::to_string(i)));
    }
    CHECK(registry.for_user("many").empty());
    CHECK(registry.size() == 1);
    CHECK(registry.for_user("u2").size() == 1);
}

TEST_CASE("SessionHub emits one start and one end, kicks older sockets with single_socket") {
    Options options;
    options.single_socket = true;
    RecordingSink sink;
    SessionHub hub(options, &sink, nullptr);
    auto first = make_session("s1", "u1");
    auto second = make_session("s2", "u1");
    REQUIRE(hub.start(first));
    REQUIRE(hub.start(second));
    CHECK(first->closes.load() == 1);
    CHECK(first->ending().reason() == EndReason::kicked);
    CHECK(second->closes.load() == 0);

    std::vector<std::thread> enders;
    for (int i = 0; i < 4; ++i) enders.emplace_back([&] { hub.end(*first); });
    for (auto& t : enders) t.join();
    hub.end(*second);  // no recorded cause: a vanished socket

    std::lock_guard lock(sink.mutex);
    REQUIRE(sink.events.size() == 4);
    CHECK(sink.events[0].name == "session_start");
    CHECK(sink.events[0].properties.empty());
    CHECK(sink.events[2].name == "session_end");
    CHECK(sink.events[2].context().session_id == "s1");
    REQUIRE(sink.events[2].properties.size() == 1);
    CHECK(sink.events[2].properties[0].second == "server-side session disconnect");
    CHECK(sink.events[3].properties[0].second == "connection lost");
    CHECK(hub.registry().size() == 0);
}

TEST_CASE("SessionHub ends a session at once when shutdown began") {
    RecordingSink sink;
    SessionHub hub(Options{}, &sink, nullptr);
    hub.registry().close_for_new();
    auto s = make_session("late", "u");
    CHECK_FALSE(hub.start(s));
    std::lock_guard lock(sink.mutex);
    REQUIRE(sink.events.size() == 2);
    CHECK(sink.events[0].kind == nk::events::Kind::session_start);
    CHECK(sink.events[1].kind == nk::events::Kind::session_end);
    CHECK(sink.events[1].properties[0].second == "server shutdown");
}

TEST_CASE("authorize records ?status= as Go's ParseBool reads it") {
    Realtime realtime(Options{}, [](std::string_view token) -> std::optional<Identity> {
        if (token != "good") return std::nullopt;
        return Identity{"user-1", "alice", {}, 4102444800, "tid-1", 0};
    }, nullptr, nullptr);
    auto status_of = [&](std::optional<std::string> status) -> std::optional<bool> {
        nk::net::Request request;
        request.method = nk::net::Method::get;
        request.path = "/ws";
        request.query = {{"token", "good"}, {"lang", "en"}};
        if (status) request.query.emplace_back("status", *status);
        auto decision = realtime.authorize(request);
        auto* info = std::get_if<SessionInfo>(&decision);
        if (!info) return std::nullopt;
        CHECK(info->user_id == "user-1");
        return info->status;
    };
    for (const char* yes : {"true", "1", "t", "T", "TRUE", "True"}) {
        CAPTURE(yes);
        CHECK(status_of(yes) == true);
    }
    // Anything else is false, and never a refusal (Nakama ignores the parse error).
    for (const char* no : {"false", "0", "f", "", "yes", "on", "tRuE"}) {
        CAPTURE(no);
        CHECK(status_of(no) == false);
    }
    CHECK(status_of(std::nullopt) == false);

    // The status envelopes are not served: they are an unsupported kind (the socket stays open).
    auto follow = parse_envelope(R"({"cid":"7","status_follow":{"user_ids":["u2"]}})", kLimits);
    REQUIRE(follow);
    CHECK(follow->type == Envelope::Type::other);
    CHECK(follow->kind == "status_follow");
}
