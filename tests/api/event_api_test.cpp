// POST /v2/event over real HTTP on loopback: net::Server, real Tokens, the real EventPipeline,
// handlers registered in-process through a StaticHandlerSource.
#include <doctest/doctest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "api/event_api.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "auth/tokens.hpp"
#include "core/blocking_pool.hpp"
#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "support/wait.hpp"

using namespace nk;
using namespace std::chrono_literals;

namespace {

using test::Gate;
using test::wait_until;

// Event hooks implemented in-process (the plugin runtime implements the same interface).
class TestHooks final : public api::RuntimeBridge {
  public:
    bool before_enabled = false, after_enabled = false;
    std::string rename_to;  // before-hook rewrites the name when set
    Status reject;          // before-hook answers this when not OK
    std::mutex m;
    std::vector<std::string> after_in;
    std::vector<RequestContext> after_ctx;

    bool has_before(std::string_view id) const override { return before_enabled && id == "Event"; }
    bool has_after(std::string_view id) const override { return after_enabled && id == "Event"; }
    Status before(const Pin&, std::string_view, const RequestContext& ctx, std::string& in_json) override {
        if (ctx.execution_mode != "before")
            return Status::internal("wrong mode");
        if (!reject.is_ok())
            return reject;
        if (!rename_to.empty()) {
            rapidjson::Document d;
            d.Parse(in_json.c_str());
            if (d.HasMember("external"))
                return Status::internal("client external leaked");
            in_json = R"({"name":")" + rename_to + R"(","properties":{"hooked":"yes"}})";
        }
        return Status::ok();
    }
    void after(const Pin&, std::string_view, const RequestContext& ctx, std::string_view out_json,
               std::string_view in_json) override {
        std::lock_guard lock(m);
        after_in.emplace_back(in_json);
        after_ctx.push_back(ctx);
        if (!out_json.empty())
            after_in.back() += "<unexpected out>";
    }
    // In-process hooks do not change while a test runs: nothing to pin.
    Pin pin() const override { return nullptr; }
    bool has_before(const Pin&, std::string_view id) const override { return has_before(id); }
    bool has_after(const Pin&, std::string_view id) const override { return has_after(id); }
    bool has_rpc(std::string_view) const override { return false; }
    Status rpc(std::string_view, const RequestContext&, std::string_view, std::string&) override {
        return Status::not_found("RPC function not found");
    }
};

struct EventServer {
    explicit EventServer(events::Options options, events::HandlerSet handlers,
                         api::RuntimeBridge* runtime = nullptr)
        : limits(options),
          source(std::move(handlers)),
          registry("nktest", "node1"),
          pipeline(limits, source, &registry),
          tokens(auth::Options{}),
          pool(2) {
        pipeline.start();
        services.tokens = &tokens;
        services.events = &pipeline;
        services.event_limits = &limits;
        services.runtime = runtime;
        services.pool = &pool;
        services.metrics = &registry;
        api::register_event_routes(router, services);
        net::Options net_options;
        net_options.address = "127.0.0.1";
        net_options.port = 0;
        net_options.io_threads = 2;
        server = std::make_unique<net::Server>(net_options, router);
        server->start();
        token =
            tokens.issue("3e2b5c4a-1111-4a4a-8a8a-000000000001", "alice", {{"tier", "gold"}}).token;
    }
    ~EventServer() {
        pool.stop();
        server->shutdown(2000ms);
    }

    httplib::Client client() const {
        httplib::Client c("127.0.0.1", server->port());
        c.set_read_timeout(30, 0);
        c.set_connection_timeout(10, 0);
        c.set_keep_alive(true);
        c.set_tcp_nodelay(true);
        return c;
    }
    httplib::Headers auth() const { return {{"Authorization", "Bearer " + token}}; }
    httplib::Result post(const std::string& body) {
        auto c = client();
        return c.Post("/v2/event", auth(), body, "application/json");
    }

    events::Options limits;
    events::StaticHandlerSource source;
    metrics::Registry registry;
    events::EventPipeline pipeline;
    auth::Tokens tokens;
    BlockingPool pool;
    api::Services services;
    net::Router router;
    std::unique_ptr<net::Server> server;
    std::string token;
};

void check_error(const httplib::Result& res, int http, int code, const std::string& message = {}) {
    REQUIRE(res);
    CHECK(res->status == http);
    rapidjson::Document d;
    d.Parse(res->body.c_str());
    REQUIRE(d.IsObject());
    CHECK(d.MemberCount() == 2);
    REQUIRE(d.HasMember("code"));
    CHECK(d["code"].GetInt() == code);
    if (!message.empty())
        CHECK(std::string(d["message"].GetString()) == message);
}

events::Options options(std::size_t queue, unsigned workers,
                        events::FullPolicy policy = events::FullPolicy::drop) {
    events::Options o;
    o.queue_size = queue;
    o.workers = workers;
    o.full_policy = policy;
    return o;
}

struct Recorder {
    std::mutex m;
    std::vector<events::Event> seen;
    events::HandlerSet handlers() {
        events::HandlerSet set;
        set.custom.push_back([this](const events::Event& e) {
            std::lock_guard lock(m);
            seen.push_back(e);
        });
        return set;
    }
    std::size_t size() {
        std::lock_guard lock(m);
        return seen.size();
    }
};

}  // namespace

TEST_CASE("POST /v2/event: 200 {} and the handler gets the event, external=true and the user ctx") {
    Recorder rec;
    EventServer s(options(64, 2), rec.handlers());
    auto res =
        s.post(R"({"name":"match_won","properties":{"map":"dust","score":"10"},)"
               R"("timestamp":"2023-11-14T22:13:20Z","external":false,"unknown":{"x":[1]}})");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "{}");
    REQUIRE(wait_until([&] { return rec.size() == 1; }));
    const events::Event& e = rec.seen[0];
    CHECK(e.name == "match_won");
    REQUIRE(e.properties.size() == 2);
    CHECK(e.properties[0].first == "map");
    CHECK(e.properties[1].second == "10");
    CHECK(e.has_timestamp);
    CHECK(e.timestamp.seconds == 1700000000);
    CHECK(e.external);
    CHECK(e.kind == events::Kind::custom);
    CHECK(e.context().execution_mode == "event");
    CHECK(e.context().user_id == "3e2b5c4a-1111-4a4a-8a8a-000000000001");
    CHECK(e.context().username == "alice");
    CHECK(e.context().vars.at("tier") == "gold");
    CHECK(e.context().session_expiry > 0);
    CHECK(e.context().session_id.empty());
    CHECK(e.context().client_ip == "127.0.0.1");
    CHECK_FALSE(e.context().client_port.empty());

    // Empty body and a missing name are accepted (Nakama does no validation).
    res = s.post("");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "{}");
    REQUIRE(wait_until([&] { return rec.size() == 2; }));
    CHECK(rec.seen[1].name.empty());
    CHECK_FALSE(rec.seen[1].has_timestamp);
    CHECK(rec.seen[1].external);
}

TEST_CASE("POST /v2/event: auth and decoding errors with Nakama's codes") {
    Recorder rec;
    events::Options o = options(64, 1);
    o.max_properties = 2;
    o.max_name_bytes = 8;
    o.max_key_bytes = 4;
    o.max_value_bytes = 4;
    EventServer s(o, rec.handlers());
    auto c = s.client();
    check_error(c.Post("/v2/event", "{}", "application/json"), 401, 16, "Auth token required");
    check_error(c.Post("/v2/event", {{"Authorization", "Bearer nope"}}, "{}", "application/json"),
                401, 16, "Auth token invalid");
    check_error(s.post(R"({"properties":{"a":1}})"), 400, 3);
    check_error(s.post(R"({"properties":{"a":null}})"), 400, 3);
    check_error(s.post(R"({"timestamp":1700000000})"), 400, 3);
    check_error(s.post(R"({"timestamp":"yesterday"})"), 400, 3);
    check_error(s.post(R"({"name":"x")"), 400, 3);
    check_error(s.post("not json"), 400, 3);
    check_error(s.post(R"({"properties":{"a":"1","b":"2","c":"3"}})"), 400, 3,
                "Event has too many properties (max 2).");
    check_error(s.post(R"({"name":"123456789"})"), 400, 3, "Event name is too long (max 8 bytes).");
    check_error(s.post(R"({"properties":{"abcde":"1"}})"), 400, 3,
                "Event property key is too long (max 4 bytes).");
    check_error(s.post(R"({"properties":{"a":"12345"}})"), 400, 3,
                "Event property value is too long (max 4 bytes).");
    auto res = c.Get("/v2/event", s.auth());
    REQUIRE(res);
    CHECK(res->status == 501);
    CHECK(rec.size() == 0);
    CHECK(s.pipeline.stats().received == 0);
}

TEST_CASE("POST /v2/event: policy reject and a full queue answer 503 code 14 with Retry-After") {
    Gate gate;
    std::atomic<int> handled{0};
    events::HandlerSet set;
    set.custom.push_back([&](const events::Event&) {
        gate.wait();
        ++handled;
    });
    events::Options o = options(1, 1, events::FullPolicy::reject);
    o.reject_retry_after_sec = 7;
    EventServer s(o, std::move(set));
    auto res = s.post(R"({"name":"first"})");
    REQUIRE(res);
    CHECK(res->status == 200);
    REQUIRE(wait_until([&] { return gate.waiting() == 1; }));
    res = s.post(R"({"name":"second"})");
    check_error(res, 503, 14, "Event queue is full, retry later.");
    CHECK(res->get_header_value("Retry-After") == "7");
    gate.open();
    CHECK(s.pipeline.drain(30s) == 0);
    CHECK(handled == 1);
    CHECK(s.pipeline.stats().rejected == 1);
    // After drain the pipeline refuses: 503 as well.
    check_error(s.post("{}"), 503, 14, "Server is shutting down.");
}

TEST_CASE("POST /v2/event: before-hook rewrites or rejects, after-hook sees external=true") {
    Recorder rec;
    TestHooks hooks;
    hooks.before_enabled = true;
    hooks.after_enabled = true;
    hooks.rename_to = "renamed";
    EventServer s(options(64, 1), rec.handlers(), &hooks);
    auto res = s.post(R"({"name":"original","properties":{"a":"b"}})");
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "{}");
    REQUIRE(wait_until([&] { return rec.size() == 1; }));
    CHECK(rec.seen[0].name == "renamed");
    REQUIRE(rec.seen[0].properties.size() == 1);
    CHECK(rec.seen[0].properties[0].first == "hooked");
    CHECK(rec.seen[0].external);
    {
        std::lock_guard lock(hooks.m);
        REQUIRE(hooks.after_in.size() == 1);
        CHECK(hooks.after_in[0] ==
              R"({"name":"renamed","properties":{"hooked":"yes"},"external":true})");
        CHECK(hooks.after_ctx[0].execution_mode == "after");
        CHECK(hooks.after_ctx[0].username == "alice");
    }
    hooks.reject = Status::permission_denied("no events for you");
    check_error(s.post("{}"), 403, 7, "no events for you");
    CHECK(rec.size() == 1);
}

TEST_CASE("POST /v2/event (a): at a load the queue absorbs, every 200 is handled exactly once") {
    constexpr int clients = 8, per_client = 150;
    std::mutex m;
    std::map<std::string, int> handled;
    events::HandlerSet set;
    set.custom.push_back([&](const events::Event& e) {
        std::lock_guard lock(m);
        ++handled[e.name];
    });
    EventServer s(options(clients * per_client, 4), std::move(set));
    std::atomic<int> acknowledged{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < clients; ++t) {
        threads.emplace_back([&, t] {
            auto c = s.client();
            for (int i = 0; i < per_client; ++i) {
                const std::string name = std::to_string(t) + "-" + std::to_string(i);
                auto res = c.Post("/v2/event", s.auth(), R"({"name":")" + name + R"("})",
                                  "application/json");
                if (res && res->status == 200 && res->body == "{}")
                    ++acknowledged;
                else
                    ++other;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(other == 0);
    CHECK(acknowledged == clients * per_client);
    CHECK(s.pipeline.drain(30s) == 0);
    CHECK(s.pipeline.stats().dropped == 0);
    std::lock_guard lock(m);
    CHECK(handled.size() == static_cast<std::size_t>(clients * per_client));
    for (const auto& [name, count] : handled)
        REQUIRE_MESSAGE(count == 1, name);
}

TEST_CASE("POST /v2/event (b): policy drop overload, handled + dropped == acknowledged") {
    constexpr int clients = 8, per_client = 50;
    Gate gate;
    std::atomic<int> handled{0};
    events::HandlerSet set;
    set.custom.push_back([&](const events::Event&) {
        gate.wait();  // a handler far slower than the clients
        ++handled;
    });
    EventServer s(options(4, 1), std::move(set));
    std::atomic<int> acknowledged{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < clients; ++t) {
        threads.emplace_back([&] {
            auto c = s.client();
            for (int i = 0; i < per_client; ++i) {
                auto res = c.Post("/v2/event", s.auth(), R"({"name":"x"})", "application/json");
                if (res && res->status == 200)
                    ++acknowledged;
                else
                    ++other;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    gate.open();
    CHECK(s.pipeline.drain(30s) == 0);
    CHECK(other == 0);
    CHECK(acknowledged == clients * per_client);
    const auto dropped = s.registry.counter("dropped_events", "").value();
    CHECK(dropped > 0);
    CHECK(handled + dropped == static_cast<std::uint64_t>(acknowledged.load()));
}

TEST_CASE("POST /v2/event (c): policy reject overload, every event handled or answered 503") {
    constexpr int clients = 8, per_client = 50;
    Gate gate;
    std::atomic<int> handled{0};
    events::HandlerSet set;
    set.custom.push_back([&](const events::Event&) {
        gate.wait();
        ++handled;
    });
    EventServer s(options(4, 1, events::FullPolicy::reject), std::move(set));
    std::atomic<int> ok{0}, unavailable{0}, other{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < clients; ++t) {
        threads.emplace_back([&] {
            auto c = s.client();
            for (int i = 0; i < per_client; ++i) {
                auto res = c.Post("/v2/event", s.auth(), R"({"name":"x"})", "application/json");
                if (res && res->status == 200)
                    ++ok;
                else if (res && res->status == 503 && res->has_header("Retry-After"))
                    ++unavailable;
                else
                    ++other;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    gate.open();
    CHECK(s.pipeline.drain(30s) == 0);
    CHECK(other == 0);
    CHECK(unavailable > 0);
    CHECK(handled == ok);
    CHECK(ok + unavailable == clients * per_client);
}
