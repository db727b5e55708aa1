// The registry and bridges with real plugins and the real event pipeline:
// event handlers, nk.event, before/after hooks, RPCs, shutdown handlers, and
// the failure fixtures (handler throws, after-hook fails, before-hook rejects,
// slow handler, registration outside InitModule).
#include <doctest/doctest.h>

#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "nk/sdk.h"
#include "runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "store/sqlite_account_store.hpp"

using namespace nk;
using namespace nk::test;

namespace {

// Runtime + pipeline wired like main does; plugins' nk.event goes through `sink`.
struct Host {
    explicit Host(const std::vector<fs::path>& plugins, bool skip_failed = false) {
        install(tmp / "modules", plugins);
        runtime::Options o;
        o.path = (tmp / "modules").string();
        o.data_dir = tmp.path().string();
        o.node = "node-a";
        o.env = {{"region", "eu"}};
        o.skip_failed_modules = skip_failed;
        runtime::Dependencies deps;
        deps.metrics = &metrics;
        rt = std::make_unique<runtime::Runtime>(o, deps);
        events::Options eo;
        eo.workers = 2;
        eo.queue_size = 1024;
        pipeline = std::make_unique<events::EventPipeline>(eo, *rt, &metrics);
        sink.set_next(pipeline.get());
        rt->set_event_sink(&sink);
        status = rt->load_all();
        pipeline->start();
    }
    ~Host() {
        pipeline->drain(std::chrono::seconds(20));
        pipeline.reset();
        rt.reset();
    }
    events::Event event(const std::string& name, events::Kind kind = events::Kind::custom) {
        events::Event e;
        e.kind = kind;
        e.name = name;
        e.external = true;
        RequestContext ctx;
        ctx.execution_mode = "event";
        ctx.user_id = "u-1";
        ctx.username = "alice";
        e.set_context(std::move(ctx));
        return e;
    }

    TempDir tmp;
    metrics::Registry metrics{"nakama", "node-a"};
    RecordingSink sink;
    std::unique_ptr<runtime::Runtime> rt;
    std::unique_ptr<events::EventPipeline> pipeline;
    Status status;
};

void with_session(events::Event& e, const std::string& session_id) {
    RequestContext ctx = e.context();
    ctx.session_id = session_id;
    e.set_context(std::move(ctx));
}

RequestContext user_ctx() {
    RequestContext c;
    c.user_id = "u-1";
    c.username = "alice";
    c.vars = {{"tier", "gold"}};
    c.session_expiry = 1900000000;
    c.client_ip = "10.0.0.7";
    return c;
}

}  // namespace

TEST_CASE("event handlers get the event and its context; nk.event re-enters the pipeline") {
    Host h({fixture("events_good")});
    REQUIRE(h.status.is_ok());
    auto e = h.event("ping");
    e.properties = {{"level", "3"}};
    CHECK(h.pipeline->submit(std::move(e)) == events::SubmitResult::accepted);
    events::Event pong;
    REQUIRE(h.sink.wait_for("pong", pong));
    CHECK(prop(pong, "level") == "3");
    CHECK(prop(pong, "seen_user") == "u-1");
    CHECK(prop(pong, "seen_mode") == "event");
    CHECK(prop(pong, "seen_external") == "true");
    CHECK_FALSE(pong.external);            // as the plugin gave it
    CHECK(pong.context().user_id == "u-1");  // the caller's context travels with it
    CHECK(pong.kind == events::Kind::custom);
}

TEST_CASE("handlers that capture InitModule's ctx, logger and nk by reference stay valid") {
    Host h({fixture("captures_by_ref")});
    REQUIRE(h.status.is_ok());
    std::string out;
    REQUIRE(h.rt->rpc("captured", user_ctx(), "p", out).is_ok());
    CHECK(out == "run_once|node-a|rpc");
    events::Event from_rpc;
    REQUIRE(h.sink.wait_for("from_captured_rpc", from_rpc));
    CHECK(h.pipeline->submit(h.event("ping_captured")) == events::SubmitResult::accepted);
    events::Event pong;
    REQUIRE(h.sink.wait_for("pong_captured", pong));
    CHECK(prop(pong, "init_mode") == "run_once");
}

TEST_CASE("session start and end handlers") {
    Host h({fixture("events_good")});
    REQUIRE(h.status.is_ok());
    auto start = h.event("session_start", events::Kind::session_start);
    with_session(start, "s-42");
    auto end = h.event("session_end", events::Kind::session_end);
    with_session(end, "s-42");
    end.properties = {{"reason", ""}};
    h.pipeline->submit(std::move(start));
    h.pipeline->submit(std::move(end));
    events::Event seen;
    REQUIRE(h.sink.wait_for("saw_session_start", seen));
    CHECK(prop(seen, "session_id") == "s-42");
    CHECK(prop(seen, "kind") == "1");
    REQUIRE(h.sink.wait_for("saw_session_end", seen));
    CHECK(prop(seen, "kind") == "2");
    CHECK(prop(seen, "p_reason") == "");
}

TEST_CASE("RPC calls: payload, context (mode, user, node, env), errors, unknown ids") {
    Host h({fixture("events_good")});
    REQUIRE(h.status.is_ok());
    std::string out;
    CHECK(h.rt->rpc("echo", user_ctx(), "{\"a\":1}", out).is_ok());
    CHECK(out == "{\"a\":1}");
    CHECK(h.rt->rpc("EcHo", user_ctx(), "x", out).is_ok());
    CHECK(out == "x");
    CHECK(h.rt->rpc("whoami", user_ctx(), "", out).is_ok());
    CHECK(out == "rpc|u-1|alice|node-a|eu");
    Status st = h.rt->rpc("denied", user_ctx(), "", out);
    CHECK(st.code() == Code::permission_denied);
    CHECK(st.message() == "not for you");
    st = h.rt->rpc("nope", user_ctx(), "", out);
    CHECK(st.code() == Code::not_found);
    CHECK(st.message() == "RPC function not found");
    // nk.event from an RPC keeps the caller's context and `external` as given.
    CHECK(h.rt->rpc("emit", user_ctx(), "from_rpc", out).is_ok());
    events::Event e;
    REQUIRE(h.sink.wait_for("from_rpc", e));
    CHECK(e.external);
    CHECK(e.context().user_id == "u-1");
    CHECK(e.context().execution_mode == "rpc");
    CHECK(prop(e, "from") == "rpc");
    // No account store wired: unimplemented, not a crash.
    st = h.rt->rpc("account", user_ctx(), "u-1", out);
    CHECK(st.code() == Code::unimplemented);
}

TEST_CASE("after-hooks receive Nakama's arguments and the after context") {
    Host h({fixture("events_good")});
    REQUIRE(h.status.is_ok());
    h.rt->after(nullptr, "UpdateAccount", user_ctx(), "", "{\"display_name\":\"Bob\"}");
    events::Event e;
    REQUIRE(h.sink.wait_for("after_update", e));
    CHECK(prop(e, "display_name") == "Bob");
    CHECK(prop(e, "user") == "u-1");
    CHECK(prop(e, "mode") == "after");
    h.rt->after(nullptr, "AuthenticateDevice", user_ctx(), "{\"token\":\"t\",\"created\":true}",
                "{\"account\":{\"id\":\"device-123456\"},\"create\":true}");
    REQUIRE(h.sink.wait_for("after_auth", e));
    CHECK(prop(e, "device") == "device-123456");
    CHECK(prop(e, "created") == "true");
    // No hook registered for that id: nothing happens.
    h.rt->after(nullptr, "DeleteAccount", user_ctx(), "", "");
}

TEST_CASE("shutdown handlers run with mode shutdown") {
    Host h({fixture("events_good")});
    REQUIRE(h.status.is_ok());
    h.rt->run_shutdown_handlers(std::chrono::seconds(20));
    events::Event e;
    REQUIRE(h.sink.wait_for("shutdown", e));
    CHECK(prop(e, "mode") == "shutdown");
    CHECK(prop(e, "grace") == "20");
}

TEST_CASE("fixture handler_throws: exceptions are contained, never crash the host") {
    LogCapture logs("info");
    Host h({fixture("handler_throws"), fixture("events_good")});
    REQUIRE(h.status.is_ok());
    auto faults = [&](const char* call) {
        return h.metrics.counter("plugin_faults", "", {{"module", "handler_throws"}, {"call", call}})
            .value();
    };
    // The wrapped handler's fault comes first on "boom" (registered first): the pipeline logs
    // it naming module and event (then holds back the raw handler's, a second later).
    h.pipeline->submit(h.event("boom"));
    CHECK(logs.wait_for(
        "event handler of module handler_throws for event \"boom\" failed: event handler "
        "threw: handler failure"));
    h.pipeline->submit(h.event("ping"));
    events::Event e;
    REQUIRE(h.sink.wait_for("pong", e));  // the other module's handler still runs
    // Both the wrapped handler's fault ("boom") and the raw handler's exceptions (on boom, ping
    // and the pong events_good emits) reach the pipeline, which counts them.
    CHECK(wait_until([&] { return h.pipeline->stats().handler_errors == 4; }));
    CHECK(wait_until([&] { return faults("event") == 4; }));
    std::string out;
    Status st = h.rt->rpc("throws", user_ctx(), "", out);
    CHECK(st.code() == Code::internal);
    CHECK(st.message() == "Error calling RPC function.");
    CHECK(logs.contains("Module handler_throws: RPC throws: rpc function threw: rpc failure"));
    st = h.rt->rpc("throws_raw", user_ctx(), "", out);
    CHECK(st.code() == Code::internal);
    CHECK(st.message() == "Error calling RPC function.");
    CHECK(logs.contains("Module handler_throws: RPC throws_raw: an exception escaped"));
    CHECK(faults("rpc") == 2);
}

TEST_CASE("sdk.hpp faults: generic to the client, named and rate-limited in the log, counted") {
    LogCapture logs("info");
    Host h({fixture("handler_throws")});
    REQUIRE(h.status.is_ok());
    auto faults = [&](const char* call) {
        return h.metrics.counter("plugin_faults", "", {{"module", "handler_throws"}, {"call", call}})
            .value();
    };
    std::string out;
    // std::out_of_range from vector::at: its internal text stays in the log.
    Status st = h.rt->rpc("out_of_range", user_ctx(), "", out);
    CHECK(st.code() == Code::internal);
    CHECK(st.message() == "Error calling RPC function.");
    CHECK(logs.contains("Module handler_throws: RPC out_of_range: rpc function threw: "));
    // A thrown nk::Error is the plugin's answer: its code and message.
    st = h.rt->rpc("not_found", user_ctx(), "", out);
    CHECK(st.code() == Code::not_found);
    CHECK(st.message() == "no such item");
    CHECK(faults("rpc") == 1);  // an nk::Error is not a fault

    // Before-hook: the request is refused with the generic message.
    std::string in = "{}";
    st = h.rt->before(nullptr, "UpdateAccount", user_ctx(), in);
    CHECK(st.code() == Code::internal);
    CHECK(st.message() == "Error in before hook.");
    CHECK(logs.contains("Module handler_throws: before-hook UpdateAccount: before-hook threw: "
                        "secret internal state"));
    CHECK(faults("before") == 1);

    // HTTP route.
    runtime::Runtime::HttpCall call;
    call.method = "GET";
    call.path = "/plugins/throws";
    call.sub_path = "/throws";
    runtime::Runtime::HttpReply reply;
    st = h.rt->http(nullptr, user_ctx(), call, reply);
    CHECK(st.code() == Code::internal);
    CHECK(st.message() == "Error in HTTP handler.");
    CHECK(faults("http") == 1);

    // 50 failing calls: every one counted, the log holds back all but about one a second.
    for (int i = 0; i < 50; ++i)
        CHECK(h.rt->rpc("throws", user_ctx(), "", out).message() == "Error calling RPC function.");
    CHECK(faults("rpc") == 51);
    const std::string text = logs.text();
    std::size_t lines = 0;
    for (auto pos = text.find("RPC throws: rpc function threw"); pos != std::string::npos;
         pos = text.find("RPC throws: rpc function threw", pos + 1))
        ++lines;
    CHECK(lines >= 1);
    CHECK(lines < 10);
    // The next line let through (a second later) says how many were held back.
    CHECK(wait_until([&] {
        h.rt->rpc("throws", user_ctx(), "", out);
        return logs.contains("more like it in the last second not logged");
    }));

    // 20 failing events: each counted once as a plugin fault and once as a handler error.
    const auto errors_before = h.pipeline->stats().handler_errors;
    for (int i = 0; i < 20; ++i)
        h.pipeline->submit(h.event("boom"));
    // The raw handler throws on every event too: 40 handler errors, 40 faults.
    CHECK(wait_until([&] { return h.pipeline->stats().handler_errors == errors_before + 40; }));
    CHECK(wait_until([&] { return faults("event") == 40; }));
}

TEST_CASE("sdk.hpp: a late registration's error says why it was refused") {
    LogCapture logs("info");
    Host h({fixture("handler_throws")});
    REQUIRE(h.status.is_ok());
    std::string out;
    REQUIRE(h.rt->rpc("register_late", user_ctx(), "", out).is_ok());
    CHECK(out == std::to_string(NK_FAILED_PRECONDITION) +
                     " register_rpc late refused by the host: register_rpc refused: registration "
                     "is only allowed inside InitModule, on its thread");
    CHECK_FALSE(h.rt->has_rpc("late"));
}

TEST_CASE("fixture after_fails: counted and logged, nothing surfaces") {
    LogCapture logs("info");
    Host h({fixture("after_fails")});
    REQUIRE(h.status.is_ok());
    h.rt->after(nullptr, "UpdateAccount", user_ctx(), "", "{}");
    h.rt->after(nullptr, "UpdateAccount", user_ctx(), "", "{}");
    h.rt->after(nullptr, "GetAccount", user_ctx(), "{\"user\":{\"id\":\"u-1\"}}", "");
    auto& update_errors = h.metrics.counter("after_hook_errors", "", {{"api", "UpdateAccount"}});
    auto& get_errors = h.metrics.counter("after_hook_errors", "", {{"api", "GetAccount"}});
    CHECK(update_errors.value() == 2);
    CHECK(get_errors.value() == 1);
    CHECK(logs.contains("after-hook UpdateAccount failed with code 13: analytics backend down"));
    CHECK(logs.contains("after GetAccount exploded"));
    CHECK(h.metrics.render().find("nakama_after_hook_errors{") != std::string::npos);
}

TEST_CASE("fixture before_rejects: reject with code and message, or rewrite the input") {
    Host h({fixture("before_rejects")});
    REQUIRE(h.status.is_ok());
    CHECK(h.rt->has_before("UpdateAccount"));
    std::string in = "{\"username\":\"admin\"}";
    Status st = h.rt->before(nullptr, "UpdateAccount", user_ctx(), in);
    CHECK(st.code() == Code::permission_denied);
    CHECK(st.message() == "Username admin is reserved.");
    CHECK(st.http_status() == 403);
    in = "{\"display_name\":\"bob\"}";
    REQUIRE(h.rt->before(nullptr, "UpdateAccount", user_ctx(), in).is_ok());
    CHECK(in == "{\"display_name\":\"[bob]\"}");
    std::string none;
    st = h.rt->before(nullptr, "GetAccount", user_ctx(), none);
    CHECK(st.code() == Code::unavailable);
    CHECK(st.message() == "Request rejected by before hook.");
    // Rewriting keeps every field of the message, timestamp included.
    std::string ev = "{\"name\":\"x\",\"timestamp\":\"2024-02-29T12:00:00.25Z\",\"external\":true}";
    REQUIRE(h.rt->before(nullptr, "Event", user_ctx(), ev).is_ok());
    CHECK(ev ==
          "{\"name\":\"x\",\"properties\":{\"checked\":\"yes\"},\"timestamp\":"
          "\"2024-02-29T12:00:00.25Z\",\"external\":true}");
    // No hook for this id: input untouched.
    std::string logout = "{\"token\":\"t\"}";
    CHECK(h.rt->before(nullptr, "SessionLogout", user_ctx(), logout).is_ok());
    CHECK(logout == "{\"token\":\"t\"}");
}

TEST_CASE("fixture slow_handler: other events keep flowing; shutdown grace is bounded") {
    LogCapture logs("info");
    Host h({fixture("slow_handler")});
    REQUIRE(h.status.is_ok());
    for (int i = 0; i < 4; ++i) {
        auto e = h.event("slow");
        e.properties = {{"sleep_ms", "50"}};
        h.pipeline->submit(std::move(e));
    }
    CHECK(wait_until([&] { return h.sink.count("slow_done") == 4; }));
    // The shutdown handler sleeps 3 s; with a tiny grace, shutdown goes on without it.
    h.rt->run_shutdown_handlers(std::chrono::milliseconds(50));
    CHECK(logs.contains("shutdown handler still running after the grace period"));
    // The detached handler keeps its module mapped until it returns; then the
    // private copy disappears (the generation is unloaded).
    h.pipeline->drain(std::chrono::seconds(20));
    h.rt.reset();
    CHECK(wait_until(
        [&] {
            std::error_code ec;
            return fs::is_empty(h.tmp / ".modules", ec);
        },
        std::chrono::seconds(30)));
}

TEST_CASE(
    "fixture register_outside: registration after InitModule is refused, user data destroyed") {
    LogCapture logs("info");
    Host h({fixture("register_outside")});
    REQUIRE(h.status.is_ok());
    std::string out;
    REQUIRE(h.rt->rpc("register_late", user_ctx(), "", out).is_ok());
    CHECK(out == std::to_string(NK_FAILED_PRECONDITION) + " 1");  // refused, destroy called once
    CHECK_FALSE(h.rt->has_rpc("late"));
    CHECK(logs.contains("register_rpc refused: registration is only allowed inside InitModule"));
}

TEST_CASE("last registration wins across modules for hooks and RPCs; events are additive") {
    // c_minimal and events_good both register an UpdateAccount after-hook; c_minimal loads first.
    Host h({sample("c_minimal"), fixture("events_good")});
    REQUIRE(h.status.is_ok());
    CHECK(h.rt->handlers()->custom.size() == 2);
    h.rt->after(nullptr, "UpdateAccount", user_ctx(), "", "{}");
    events::Event e;
    REQUIRE(h.sink.wait_for("after_update", e));
    CHECK(h.sink.count("account_updated") == 0);
}

TEST_CASE("quickstart: after UpdateAccount emits account_updated; processEvent receives it") {
    LogCapture logs("debug");
    Host h({sample("quickstart")});
    REQUIRE(h.status.is_ok());
    CHECK(logs.contains("Server loaded."));
    h.rt->after(nullptr, "UpdateAccount", user_ctx(), "", "{\"display_name\":\"Bob\"}");
    events::Event e;
    REQUIRE(h.sink.wait_for("account_updated", e));
    CHECK_FALSE(e.external);
    CHECK(e.properties.empty());
    CHECK(logs.wait_for("process evt: name:account_updated properties:map[] external:false"));
    h.pipeline->submit(h.event("something_else"));
    CHECK(logs.wait_for("unrecognised evt: name:something_else"));
    auto start = h.event("session_start", events::Kind::session_start);
    with_session(start, "s-1");
    h.pipeline->submit(std::move(start));
    CHECK(logs.wait_for("process event session start: name:session_start"));
    std::string out;
    REQUIRE(h.rt->rpc("hello", user_ctx(), "{\"x\":1}", out).is_ok());
    CHECK(out == "{\"hello\":\"alice\",\"payload\":{\"x\":1}}");
}

TEST_CASE("c_minimal (plain C): events counted, nk->event from an after-hook, RPCs") {
    Host h({sample("c_minimal")});
    REQUIRE(h.status.is_ok());
    h.rt->after(nullptr, "UpdateAccount", user_ctx(), "", "{}");
    events::Event e;
    REQUIRE(h.sink.wait_for("account_updated", e));
    CHECK_FALSE(e.external);
    CHECK(e.context().user_id.empty());  // NULL ctx = background
    std::string out;
    CHECK(wait_until(
        [&] { return h.rt->rpc("c_count", user_ctx(), "", out).is_ok() && out == "1"; }));
    REQUIRE(h.rt->rpc("c_echo", user_ctx(), "hi", out).is_ok());
    CHECK(out == "hi");
}

TEST_CASE("concurrent calls while events flow (TSan target)") {
    Host h({fixture("events_good")});
    REQUIRE(h.status.is_ok());
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&h, t] {
            for (int i = 0; i < 50; ++i) {
                std::string out;
                h.rt->rpc("echo", user_ctx(), std::to_string(t * 100 + i), out);
                h.rt->after(nullptr, "UpdateAccount", user_ctx(), "", "{}");
                h.pipeline->submit(h.event("ping"));
                (void)h.rt->has_rpc("echo");
            }
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(wait_until([&] { return h.sink.count("pong") == 200; }));
    CHECK(h.sink.count("after_update") == 200);
}

TEST_CASE("nk.account_get_id / account_update_id reach the real account store") {
    TempDir db;
    store::Options so;
    so.address = (db / "accounts.db").string();
    store::SqliteAccountStore accounts(so);
    store::AuthResult user;
    REQUIRE(accounts.authenticate_device("device-runtime-0001", "carol", true, user).is_ok());

    TempDir tmp;
    install(tmp / "modules", {fixture("events_good")});
    runtime::Options o;
    o.path = (tmp / "modules").string();
    o.data_dir = tmp.path().string();
    runtime::Dependencies deps;
    deps.accounts = &accounts;
    runtime::Runtime rt(o, deps);
    REQUIRE(rt.load_all().is_ok());

    RequestContext ctx;
    ctx.user_id = user.user_id;
    std::string out;
    REQUIRE(rt.rpc("account", ctx, user.user_id, out).is_ok());
    CHECK(out == user.user_id + "|carol");
    REQUIRE(rt.rpc("rename", ctx, "Carol C.", out).is_ok());
    store::Account a;
    REQUIRE(accounts.get_account(user.user_id, a).is_ok());
    CHECK(a.display_name == "Carol C.");
    Status st = rt.rpc("account", ctx, "00000000-0000-4000-8000-000000000000", out);
    CHECK(st.code() == Code::not_found);
}
