// Hot reload with the real loader, real plugins and the real event pipeline: what a reload
// replaces and when, what it refuses, the inotify watcher's handling of the ways files get
// replaced, rescans (SIGHUP) with the watcher off, pinned registrations, state handoff, a plugin
// with a thread of its own, and a plugin built against the frozen ABI 1.0 header.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "support/file_replace.hpp"

using namespace nk;
using namespace nk::test;
using namespace std::chrono_literals;

namespace {

// A Runtime and pipeline wired as App does, on a temp runtime.path.
struct ReloadHost {
    explicit ReloadHost(bool hot_reload, const std::vector<fs::path>& plugins = {}) {
        fs::create_directories(dir());
        install(dir(), plugins);
        runtime::Options o;
        o.path = dir().string();
        o.data_dir = tmp.path().string();
        o.node = "node-a";
        o.hot_reload = hot_reload;
        o.hot_reload_debounce_ms = 50;
        o.hot_reload_grace_ms = 5000;
        runtime::Dependencies deps;
        deps.metrics = &metrics;
        rt = std::make_unique<runtime::Runtime>(o, deps);
        events::Options eo;
        eo.workers = 4;
        eo.queue_size = 100000;
        pipeline = std::make_unique<events::EventPipeline>(eo, *rt, &metrics);
        rt->set_event_sink(pipeline.get());
        rt->set_on_publish([p = pipeline.get()] { p->handlers_changed(); });
        pipeline->start();
        status = rt->load_all();
        rt->start_reloader();
    }
    ~ReloadHost() {
        rt->stop_reloader(10s);
        pipeline->drain(20s);
        pipeline.reset();
        rt.reset();
    }
    fs::path dir() const { return tmp / "modules"; }

    void submit_counts(int n) {
        for (int i = 0; i < n; ++i) {
            events::Event e;
            e.name = "count";
            e.external = true;
            REQUIRE(pipeline->submit(std::move(e)) == events::SubmitResult::accepted);
        }
    }
    void drain_queue() {
        REQUIRE(wait_until([&] { return pipeline->stats().depth == 0; }));
    }
    std::string rpc(const std::string& id) {
        std::string out;
        Status st = rt->rpc(id, RequestContext{}, "", out);
        return st ? out : "error: " + st.message();
    }
    bool settled() {
        return wait_until([&] { return rt->retiring() == 0; });
    }
    double reloads(const std::string& module, const std::string& result) {
        return static_cast<double>(
            metrics.counter("module_reloads", "", {{"module", module}, {"result", result}})
                .value());
    }

    TempDir tmp;
    metrics::Registry metrics{"nakama", "node-a"};
    std::unique_ptr<runtime::Runtime> rt;
    std::unique_ptr<events::EventPipeline> pipeline;
    Status status;
};

// The "variant" field of the counter fixture's RPC reply.
std::string variant_of(const std::string& reply) {
    const auto at = reply.find("\"variant\":\"");
    if (at == std::string::npos)
        return "<none: " + reply + ">";
    const auto from = at + 11;
    return reply.substr(from, reply.find('"', from) - from);
}
long number_of(const std::string& reply, const std::string& key) {
    const auto at = reply.find("\"" + key + "\":");
    if (at == std::string::npos)
        return -1;
    return std::stol(reply.substr(at + key.size() + 3));
}

const fs::path counter_a = fixture("reload_counter_a").parent_path() / "reload_counter.so";
const fs::path counter_b = fixture("reload_counter_b").parent_path() / "reload_counter.so";
const fs::path counter_future =
    fixture("reload_counter_future").parent_path() / "reload_counter.so";

}  // namespace

TEST_CASE("a reload swaps in the new generation and hands the old one's count over") {
    LogCapture log("info");
    ReloadHost h(false, {counter_a});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    const std::uint64_t first = h.rt->module_generation("reload_counter");
    CHECK(first != 0);
    CHECK(variant_of(h.rpc("counter")) == "a");

    h.submit_counts(300);
    h.drain_queue();
    rename_over(file, read_file(counter_b));
    CHECK(h.rt->reload(file) == runtime::ReloadResult::loaded);
    CHECK(h.rt->module_generation("reload_counter") > first);
    CHECK(variant_of(h.rpc("counter")) == "b");
    h.submit_counts(200);
    h.drain_queue();
    REQUIRE(h.settled());
    const std::string reply = h.rpc("counter");
    CHECK(number_of(reply, "own") == 200);
    CHECK(number_of(reply, "total") == 500);  // 300 handed over by generation a
    CHECK(reply.find("\"variant\":\"a\",\"count\":300") != std::string::npos);
    CHECK(log.contains("generation " + std::to_string(first) + " retired"));
    CHECK(log.contains("state handed to generation"));
    CHECK(h.reloads("reload_counter", "loaded") == 2);  // startup + reload

    // Same bytes again: nothing to do.
    rename_over(file, read_file(counter_b));
    CHECK(h.rt->reload(file) == runtime::ReloadResult::unchanged);
}

TEST_CASE("a reload re-registering the module's own RPC ids is not a duplicate registration") {
    LogCapture log("info");
    ReloadHost h(false, {counter_a});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    rename_over(file, read_file(counter_b));
    CHECK(h.rt->reload(file) == runtime::ReloadResult::loaded);
    CHECK(variant_of(h.rpc("COUNTER")) == "b");
    REQUIRE(h.settled());
    rename_over(file, read_file(counter_a));
    h.rt->request_rescan();  // the reloader thread's path
    REQUIRE(wait_until([&] { return variant_of(h.rpc("counter")) == "a"; }));
    CHECK(h.rt->rpc_conflicts().empty());
    CHECK_FALSE(log.contains("is registered by module"));
    // A second module registering the same id (case-insensitively) is one.
    fs::create_directories(h.dir() / "sub");
    fs::copy_file(counter_b, h.dir() / "sub/reload_counter.so");
    CHECK(h.rt->reload(h.dir() / "sub/reload_counter.so") == runtime::ReloadResult::loaded);
    REQUIRE(h.rt->rpc_conflicts().size() == 1);
    CHECK(h.rt->rpc_conflicts()[0].id == "counter");
    CHECK(log.contains("RPC id \"counter\" is registered by module reload_counter (" +
                       file.string() + ") and by module reload_counter (" +
                       (h.dir() / "sub/reload_counter.so").string() + ")"));
}

TEST_CASE("handoff: the count survives 5 reloads while events keep flowing") {
    ReloadHost h(true, {counter_a});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    const std::string a = read_file(counter_a), b = read_file(counter_b);
    std::atomic<bool> stop{false};
    std::atomic<long> accepted{0};
    std::thread producer([&] {
        while (!stop.load()) {
            events::Event e;
            e.name = "count";
            if (h.pipeline->submit(std::move(e)) == events::SubmitResult::accepted)
                accepted.fetch_add(1);
            std::this_thread::sleep_for(50us);
        }
    });
    for (int i = 0; i < 5; ++i) {
        const std::string next = i % 2 == 0 ? "b" : "a";
        rename_over(file, next == "a" ? a : b);
        REQUIRE(wait_until([&] { return variant_of(h.rpc("counter")) == next; }));
    }
    stop = true;
    producer.join();
    h.drain_queue();
    REQUIRE(h.settled());
    CHECK(h.pipeline->stats().dropped == 0);
    const std::string reply = h.rpc("counter");
    INFO(reply);
    CHECK(accepted.load() > 0);
    CHECK(number_of(reply, "total") == accepted.load());
}

TEST_CASE("a broken replacement is refused with its reason and the old generation keeps serving") {
    LogCapture log("info");
    ReloadHost h(false, {counter_a});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    const std::uint64_t gen = h.rt->module_generation("reload_counter");

    rename_over(file, read_file(fixture("abi_major")));
    CHECK(h.rt->reload(file) == runtime::ReloadResult::refused);
    CHECK(log.contains("ABI version mismatch"));
    rename_over(file, read_file(fixture("init_error")));
    CHECK(h.rt->reload(file) == runtime::ReloadResult::refused);
    CHECK(log.contains("InitModule returned error code"));
    const std::string good = read_file(counter_b);
    write_in_place(file, good.substr(0, good.size() / 2));  // not (re)created: refused
    CHECK(h.rt->reload(file) == runtime::ReloadResult::refused);
    CHECK(log.contains("truncated ELF file"));
    rename_over(file, read_file(fixture("ignores_refusal")));  // InitModule OK, a hook refused
    CHECK(h.rt->reload(file) == runtime::ReloadResult::refused);
    CHECK(log.contains("InitModule returned OK after a registration was refused: register_before: unknown hook id"));
    CHECK(log.contains("generation " + std::to_string(gen) + " keeps serving"));

    CHECK(h.rt->module_generation("reload_counter") == gen);
    CHECK(variant_of(h.rpc("counter")) == "a");
    CHECK(h.reloads("reload_counter", "refused") == 4);
    CHECK(h.rt->retiring() == 0);
}

TEST_CASE("a blob version the new generation does not know: it starts fresh, nothing fails") {
    LogCapture log("info");
    ReloadHost h(false, {counter_future});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    h.submit_counts(50);
    h.drain_queue();
    rename_over(file, read_file(counter_a));  // the future variant saves version 99
    CHECK(h.rt->reload(file) == runtime::ReloadResult::loaded);
    REQUIRE(h.settled());
    const std::string reply = h.rpc("counter");
    CHECK(variant_of(reply) == "a");
    CHECK(number_of(reply, "total") == 0);
    CHECK(log.contains("did not take the state"));
    CHECK(h.metrics.counter("module_handoffs", "", {{"module", "reload_counter"}, {"result", "refused"}})
              .value() == 1);
}

TEST_CASE("a pinned request keeps its generation's hooks across a reload") {
    ReloadHost h(false, {counter_a});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    const auto pin = h.rt->pin();
    rename_over(file, read_file(counter_b));
    REQUIRE(h.rt->reload(file) == runtime::ReloadResult::loaded);

    std::string in = "{}";
    REQUIRE(h.rt->before(pin, "UpdateAccount", RequestContext{}, in).is_ok());
    CHECK(in.find("\"a\"") != std::string::npos);  // the old generation's hook, still loaded
    CHECK(h.rt->retiring() == 1);                  // held by the pin

    std::string now = "{}";
    REQUIRE(h.rt->before(h.rt->pin(), "UpdateAccount", RequestContext{}, now).is_ok());
    CHECK(now.find("\"b\"") != std::string::npos);
}

TEST_CASE("watcher: every way of replacing a file reloads it, never unloads it meanwhile") {
    LogCapture log("info");
    ReloadHost h(true, {counter_a});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    const std::string a = read_file(counter_a), b = read_file(counter_b);

    // The module's RPC must answer through every replacement below.
    std::atomic<bool> stop{false};
    std::atomic<long> missing{0}, calls{0};
    std::thread prober([&] {
        while (!stop.load()) {
            std::string out;
            if (!h.rt->rpc("counter", RequestContext{}, "", out))
                missing.fetch_add(1);
            calls.fetch_add(1);
            std::this_thread::sleep_for(200us);
        }
    });
    auto serves = [&](const std::string& variant) {
        return wait_until([&] { return variant_of(h.rpc("counter")) == variant; });
    };

    SUBCASE("rename over, then truncate-and-write in place, then several writes in a row") {
        rename_over(file, b);
        CHECK(serves("b"));
        write_in_place(file, a);
        CHECK(serves("a"));
        const double loaded = h.reloads("reload_counter", "loaded");
        {
            std::ofstream out(file, std::ios::binary | std::ios::trunc);
            for (std::size_t at = 0; at < b.size(); at += b.size() / 4 + 1) {
                out.write(b.data() + at,
                          static_cast<std::streamsize>(std::min(b.size() - at, b.size() / 4 + 1)));
                out.flush();
                std::this_thread::sleep_for(10ms);  // well inside the 50 ms debounce
            }
        }
        CHECK(serves("b"));
        CHECK(h.reloads("reload_counter", "loaded") == loaded + 1);  // one reload for the burst
    }
    SUBCASE("delete then recreate (GNU ld): pending while the writer is busy, then loaded") {
        fs::remove(file);
        const int fd = ::open(file.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0755);
        REQUIRE(fd >= 0);
        std::this_thread::sleep_for(300ms);  // six debounce windows with an empty, open file
        CHECK(variant_of(h.rpc("counter")) == "a");
        REQUIRE(::write(fd, b.data(), b.size()) == static_cast<ssize_t>(b.size()));
        ::close(fd);
        CHECK(serves("b"));
        CHECK(h.reloads("reload_counter", "refused") == 0);
        CHECK(h.reloads("reload_counter", "unloaded") == 0);
    }
    SUBCASE("delete, then recreate closed but incomplete: pending until the next close-write") {
        fs::remove(file);
        write_in_place(file, b.substr(0, b.size() / 3));
        CHECK(wait_until([&] { return h.reloads("reload_counter", "pending") >= 1; }));
        CHECK(variant_of(h.rpc("counter")) == "a");
        write_in_place(file, b);
        CHECK(serves("b"));
        CHECK(h.reloads("reload_counter", "refused") == 0);
    }
    stop = true;
    prober.join();
    CHECK(calls.load() > 0);
    CHECK(missing.load() == 0);
    REQUIRE(h.settled());
}

TEST_CASE("watcher: new files and subfolders load, a file gone longer than the window unloads") {
    LogCapture log("info");
    ReloadHost h(true);
    REQUIRE(h.status.is_ok());
    CHECK(h.rt->module_count() == 0);

    fs::create_directories(h.dir() / "game" / "v1");
    install(h.dir() / "game" / "v1", {counter_a});
    if (!wait_until([&] { return variant_of(h.rpc("counter")) == "a"; }))
        FAIL(log.text());
    install(h.dir(), {fixture("reload_thread")});
    REQUIRE(wait_until([&] { return h.rt->module_count() == 2; }));

    fs::remove(h.dir() / "game" / "v1" / "reload_counter.so");
    REQUIRE(wait_until([&] { return h.rt->module_count() == 1; }));
    std::string out;
    CHECK(h.rt->rpc("counter", RequestContext{}, "", out).code() == Code::not_found);
    CHECK(h.reloads("reload_counter", "unloaded") == 1);
    CHECK(h.metrics.gauge("module_generation", "", {{"module", "reload_counter"}}).value() == 0);
    REQUIRE(h.settled());
    CHECK(log.contains("removed; generation"));
}

TEST_CASE("watcher off: a replaced file changes nothing until a rescan (SIGHUP)") {
    ReloadHost h(false, {counter_a});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_counter.so";
    rename_over(file, read_file(counter_b));
    std::this_thread::sleep_for(200ms);  // four debounce windows: a watcher would have acted
    CHECK(variant_of(h.rpc("counter")) == "a");

    h.rt->request_rescan();
    CHECK(wait_until([&] { return variant_of(h.rpc("counter")) == "b"; }));

    // Nothing changed since: a rescan reloads nothing, even with a new mtime.
    fs::last_write_time(file, fs::file_time_type::clock::now());
    CHECK(h.rt->rescan().empty());
}

TEST_CASE("a plugin with its own thread stops it on shutdown and reloads cleanly 10 times") {
    LogCapture log("info");
    ReloadHost h(false, {fixture("reload_thread")});
    REQUIRE(h.status.is_ok());
    const fs::path file = h.dir() / "reload_thread.so";
    std::string content = read_file(file);
    for (int i = 0; i < 10; ++i) {
        REQUIRE(wait_until([&] { return h.rpc("ticks") != "0"; }));  // its thread runs
        content.push_back('\0');  // trailing bytes: a different file, the same code
        rename_over(file, content);
        REQUIRE(h.rt->reload(file) == runtime::ReloadResult::loaded);
    }
    REQUIRE(h.settled());
    const std::string text = log.text();
    std::size_t stopped = 0;
    for (auto at = text.find("ticker stopped (reload)"); at != std::string::npos;
         at = text.find("ticker stopped (reload)", at + 1))
        ++stopped;
    CHECK(stopped == 10);
}

TEST_CASE("a plugin built against the frozen ABI 1.0 header loads, serves and reloads") {
    LogCapture log("info");
    ReloadHost h(false, {fixture("abi_1_0").parent_path() / "legacy_counter.so"});
    REQUIRE(h.status.is_ok());
    const auto reports = h.rt->reports();
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].abi_major == 1);
    CHECK(reports[0].abi_minor == 0);
    h.submit_counts(25);
    h.drain_queue();
    CHECK(h.rpc("legacy_count") == "25");

    const fs::path file = h.dir() / "legacy_counter.so";
    std::string content = read_file(file);
    content.push_back('\0');
    rename_over(file, content);
    REQUIRE(h.rt->reload(file) == runtime::ReloadResult::loaded);
    CHECK(h.rpc("legacy_count") == "0");  // no handoff in 1.0: a fresh generation
    h.submit_counts(3);
    h.drain_queue();
    CHECK(h.rpc("legacy_count") == "3");
    REQUIRE(h.settled());
    CHECK(log.contains("legacy_counter shutdown handler ran"));
    CHECK(log.contains("mode=reload"));
}

TEST_CASE("a C++ plugin built against the frozen ABI 1.1 headers loads, serves and reloads") {
    LogCapture log("info");
    ReloadHost h(false, {fixture("abi_1_1").parent_path() / "legacy_wrapped.so"});
    REQUIRE(h.status.is_ok());
    const auto reports = h.rt->reports();
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].abi_major == 1);
    CHECK(reports[0].abi_minor == 1);
    CHECK(log.contains("legacy_wrapped loaded"));
    h.submit_counts(7);
    h.drain_queue();
    CHECK(h.rpc("legacy_wrapped_count") == "7");
    // Its sdk.hpp predates report_fault: the host answers what the plugin wrote (still code 13).
    std::string out;
    Status st = h.rt->rpc("legacy_wrapped_throws", RequestContext{}, "", out);
    CHECK(st.code() == Code::internal);
    runtime::Runtime::HttpCall call;
    call.method = "GET";
    call.path = "/plugins/legacy";
    call.sub_path = "/legacy";
    runtime::Runtime::HttpReply reply;
    REQUIRE(h.rt->http(nullptr, RequestContext{}, call, reply).is_ok());
    CHECK(reply.body == "{\"count\":7}");

    const fs::path file = h.dir() / "legacy_wrapped.so";
    std::string content = read_file(file);
    content.push_back('\0');
    rename_over(file, content);
    REQUIRE(h.rt->reload(file) == runtime::ReloadResult::loaded);
    CHECK(h.rpc("legacy_wrapped_count") == "0");  // a fresh generation (no handoff registered)
    REQUIRE(h.settled());
}
