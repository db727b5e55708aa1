// plugins/event_archive with the real runtime and the real event pipeline (8 workers): every
// event is one whole JSON line, with its id and receive time; rotation keeps the configured
// number of files under the size limit; off when EVENT_ARCHIVE_PATH is unset.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include <fstream>
#include <regex>
#include <set>
#include <thread>
#include <unordered_set>

#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "runtime/runtime.hpp"
#include "runtime/runtime_support.hpp"

using namespace nk;
using namespace nk::test;
using namespace std::chrono_literals;

namespace {

fs::path archive_plugin() {
    return build_dir() / "plugins" / "event_archive.so";
}

// Runtime + pipeline wired like main, with event_archive.so loaded and `env` as runtime.env.
struct ArchiveHost {
    explicit ArchiveHost(std::map<std::string, std::string> env, bool reloader = false,
                         std::vector<fs::path> more_plugins = {}) {
        more_plugins.push_back(archive_plugin());
        install(tmp / "modules", more_plugins);
        runtime::Options o;
        o.path = (tmp / "modules").string();
        o.data_dir = tmp.path().string();
        o.node = "node-a";
        o.env = std::move(env);
        runtime::Dependencies deps;
        deps.metrics = &metrics;
        rt = std::make_unique<runtime::Runtime>(o, deps);
        events::Options eo;
        eo.workers = 8;
        eo.queue_size = std::size_t{1} << 17;  // room for every event of the test: none dropped
        eo.queue_max_bytes = std::size_t{1} << 30;
        pipeline = std::make_unique<events::EventPipeline>(eo, *rt, &metrics);
        rt->set_event_sink(pipeline.get());
        rt->set_on_publish([p = pipeline.get()] { p->handlers_changed(); });
        status = rt->load_all();
        pipeline->start();
        if (reloader)
            rt->start_reloader();  // and the retirer, which runs a replaced generation's shutdown
    }
    ~ArchiveHost() { finish(); }

    // As the server shuts down: drain the queue, then the shutdown handlers (the archive writes
    // what it holds and joins its thread).
    void finish() {
        if (finished)
            return;
        finished = true;
        unhandled = pipeline->drain(120s);
        rt->stop_reloader(60s);
        rt->run_shutdown_handlers(60s);
        pipeline.reset();
        rt.reset();
    }

    TempDir tmp;
    metrics::Registry metrics{"nakama", "node-a"};
    std::unique_ptr<runtime::Runtime> rt;
    std::unique_ptr<events::EventPipeline> pipeline;
    Status status;
    bool finished = false;
    std::size_t unhandled = 0;
};

events::Event custom_event(int i) {
    events::Event e;
    e.kind = events::Kind::custom;
    e.name = "level_up";
    // Quotes, backslashes, newlines and non-ASCII must be escaped, never break a line.
    e.properties = {{"i", std::to_string(i)}, {"note", "a \"b\" \\ c\nd \xC3\xA9"}};
    e.external = true;
    if (i % 2 == 0) {
        e.has_timestamp = true;
        e.timestamp = {1700000000 + i, 0};
    }
    RequestContext ctx;
    ctx.execution_mode = "event";
    ctx.user_id = "user-" + std::to_string(i % 7);
    ctx.username = "player" + std::to_string(i % 7);
    e.set_context(std::move(ctx));
    return e;
}

events::Event session_event(events::Kind kind, int session) {
    events::Event e;
    e.kind = kind;
    e.name = kind == events::Kind::session_start ? "session_start" : "session_end";
    if (kind == events::Kind::session_end)
        e.properties = {{"reason", ""}};
    e.has_timestamp = true;
    e.timestamp = {1700000000, 0};
    RequestContext ctx;
    ctx.execution_mode = "event";
    ctx.user_id = "user-s";
    ctx.session_id = "session-" + std::to_string(session);
    e.set_context(std::move(ctx));
    return e;
}

std::vector<std::string> read_lines(const fs::path& file, bool& ends_with_newline) {
    std::ifstream in(file, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ends_with_newline = all.empty() || all.back() == '\n';
    std::vector<std::string> lines;
    std::string::size_type start = 0;
    while (start < all.size()) {
        auto end = all.find('\n', start);
        if (end == std::string::npos)
            end = all.size();
        lines.push_back(all.substr(start, end - start));
        start = end + 1;
    }
    return lines;
}

std::string str(const rapidjson::Value& v) {
    return v.IsString() ? std::string(v.GetString(), v.GetStringLength()) : std::string();
}

// Checks one archive line: valid JSON with every field of the documented shape.
bool check_line(const std::string& line, rapidjson::Document& d) {
    static const std::regex uuid_v7(
        "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
    static const std::regex millis(R"(^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$)");
    if (d.Parse(line.data(), line.size()).HasParseError() || !d.IsObject())
        return false;
    for (const char* key : {"id", "name", "properties", "external", "timestamp", "user_id",
                            "username", "session_id", "node", "received_at"})
        if (!d.HasMember(key))
            return false;
    return d["id"].IsString() && std::regex_match(str(d["id"]), uuid_v7) && d["name"].IsString() &&
           d["properties"].IsObject() && d["external"].IsBool() &&
           (d["timestamp"].IsNull() || d["timestamp"].IsString()) && str(d["node"]) == "node-a" &&
           d["received_at"].IsString() && std::regex_match(str(d["received_at"]), millis);
}

}  // namespace

TEST_CASE("100,000 events from 8 workers become 100,000 whole JSON lines") {
    TempDir out;
    const fs::path file = out / "events.jsonl";
    ArchiveHost h({{"EVENT_ARCHIVE_PATH", file.string()},
                   {"EVENT_ARCHIVE_BUFFER_BYTES", std::to_string(256u << 20)}});
    REQUIRE(h.status.is_ok());

    constexpr int kCustom = 90000, kSessions = 5000;
    // Two producers, as HTTP and realtime would be.
    std::atomic<int> refused{0};
    std::thread custom([&] {
        for (int i = 0; i < kCustom; ++i)
            if (h.pipeline->submit(custom_event(i)) != events::SubmitResult::accepted)
                ++refused;
    });
    std::thread sessions([&] {
        for (int s = 0; s < kSessions; ++s) {
            if (h.pipeline->submit(session_event(events::Kind::session_start, s)) !=
                events::SubmitResult::accepted)
                ++refused;
            if (h.pipeline->submit(session_event(events::Kind::session_end, s)) !=
                events::SubmitResult::accepted)
                ++refused;
        }
    });
    custom.join();
    sessions.join();
    h.finish();
    CHECK(refused.load() == 0);
    CHECK(h.unhandled == 0);
    const std::string text = h.metrics.render();
    CHECK(text.find("nakama_events_dropped{node_name=\"node-a\",kind=\"custom\"} 0") !=
          std::string::npos);
    CHECK(text.find("nakama_custom_event_archive_events_dropped") == std::string::npos);
    CHECK(text.find("nakama_custom_event_archive_lines_written{node_name=\"node-a\"} 100000") !=
          std::string::npos);

    bool ends_with_newline = false;
    const auto lines = read_lines(file, ends_with_newline);
    CHECK(ends_with_newline);
    REQUIRE(lines.size() == 100000);
    std::unordered_set<std::string> ids;
    std::set<int> custom_seen;
    int starts = 0, ends = 0, bad = 0;
    rapidjson::Document d;
    for (const auto& line : lines) {
        if (!check_line(line, d)) {
            if (++bad < 5)
                MESSAGE("bad line: " << line);
            continue;
        }
        ids.insert(str(d["id"]));
        const std::string name = str(d["name"]);
        if (name == "level_up") {
            const int i = std::stoi(str(d["properties"]["i"]));
            custom_seen.insert(i);
            if (str(d["properties"]["note"]) != "a \"b\" \\ c\nd \xC3\xA9" ||
                str(d["user_id"]) != "user-" + std::to_string(i % 7) || !d["external"].GetBool() ||
                !d["session_id"].IsNull() || d["timestamp"].IsNull() != (i % 2 != 0))
                ++bad;
            if (i == 2 && str(d["timestamp"]) != "2023-11-14T22:13:22Z")
                ++bad;
        } else if (name == "session_start") {
            ++starts;
        } else if (name == "session_end") {
            ++ends;
            if (!d["properties"].HasMember("reason"))
                ++bad;
        }
    }
    CHECK(bad == 0);
    CHECK(ids.size() == 100000);
    CHECK(custom_seen.size() == static_cast<std::size_t>(kCustom));
    CHECK(starts == kSessions);
    CHECK(ends == kSessions);
}

TEST_CASE("rotation keeps EVENT_ARCHIVE_MAX_FILES files, each under EVENT_ARCHIVE_MAX_BYTES") {
    TempDir out;
    const fs::path file = out / "events.jsonl";
    constexpr std::uint64_t kMaxBytes = 16 * 1024;
    ArchiveHost h({{"EVENT_ARCHIVE_PATH", file.string()},
                   {"EVENT_ARCHIVE_MAX_BYTES", std::to_string(kMaxBytes)},
                   {"EVENT_ARCHIVE_MAX_FILES", "3"}});
    REQUIRE(h.status.is_ok());
    for (int i = 0; i < 3000; ++i)  // about 900 KB: dozens of rotations
        REQUIRE(h.pipeline->submit(custom_event(i)) == events::SubmitResult::accepted);
    h.finish();

    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(out.path()))
        names.insert(entry.path().filename().string());
    CHECK(names == std::set<std::string>{"events.jsonl", "events.jsonl.1", "events.jsonl.2"});
    std::unordered_set<std::string> ids;
    for (const auto& name : names) {
        CAPTURE(name);
        CHECK(fs::file_size(out / name) <= kMaxBytes);
        bool ends_with_newline = false;
        const auto lines = read_lines(out / name, ends_with_newline);
        CHECK(ends_with_newline);
        CHECK(lines.size() > 10);
        rapidjson::Document d;
        for (const auto& line : lines) {
            REQUIRE(check_line(line, d));
            ids.insert(str(d["id"]));
        }
    }
    // The rotated files are full: the current one plus two at nearly the limit.
    CHECK(fs::file_size(out / "events.jsonl.1") > kMaxBytes - 1024);
    CHECK(fs::file_size(out / "events.jsonl.2") > kMaxBytes - 1024);
    CHECK(ids.size() > 100);
}

TEST_CASE("a hot reload stops the old generation's writer; the new one appends to the same file") {
    LogCapture log("info");
    TempDir out;
    const fs::path file = out / "events.jsonl";
    ArchiveHost h({{"EVENT_ARCHIVE_PATH", file.string()}}, true);
    REQUIRE(h.status.is_ok());
    for (int i = 0; i < 1000; ++i)
        REQUIRE(h.pipeline->submit(custom_event(i)) == events::SubmitResult::accepted);

    // A rebuilt plugin: the same code in different bytes, put in place with a rename.
    const fs::path installed = h.tmp / "modules" / "event_archive.so";
    const fs::path staged = h.tmp / "modules" / ".event_archive.so.tmp";
    fs::copy_file(archive_plugin(), staged);
    std::ofstream(staged, std::ios::binary | std::ios::app) << "rebuilt";
    fs::rename(staged, installed);
    REQUIRE(h.rt->reload(installed) == runtime::ReloadResult::loaded);
    // Retired once its last call returned: its shutdown handler wrote what it held and joined.
    REQUIRE(wait_until([&] { return h.rt->retiring() == 0; }, 60s));
    for (int i = 1000; i < 2000; ++i)
        REQUIRE(h.pipeline->submit(custom_event(i)) == events::SubmitResult::accepted);
    h.finish();

    bool ends_with_newline = false;
    const auto lines = read_lines(file, ends_with_newline);
    CHECK(ends_with_newline);
    CHECK(lines.size() == 2000);
    std::set<int> seen;
    rapidjson::Document d;
    for (const auto& line : lines) {
        REQUIRE(check_line(line, d));
        seen.insert(std::stoi(str(d["properties"]["i"])));
    }
    CHECK(seen.size() == 2000);
    const std::string text = log.text();
    CHECK(text.find("event archive: writing events") !=
          text.rfind("event archive: writing events"));
}

TEST_CASE("a plugin built for ABI 1.0 emits 1.0-sized events; the host stamps them") {
    TempDir out;
    const fs::path file = out / "events.jsonl";
    ArchiveHost h({{"EVENT_ARCHIVE_PATH", file.string()}}, false, {fixture("emit_1_0")});
    REQUIRE(h.status.is_ok());
    for (const char* name : {"old_plugin_a", "old_plugin_b"}) {
        std::string reply;
        REQUIRE(h.rt->rpc("emit_1_0", RequestContext{}, name, reply).is_ok());
        CHECK(reply == "sent");
    }
    h.finish();
    bool ends_with_newline = false;
    const auto lines = read_lines(file, ends_with_newline);
    REQUIRE(lines.size() == 2);
    std::set<std::string> ids, names;
    rapidjson::Document d;
    for (const auto& line : lines) {
        REQUIRE(check_line(line, d));
        ids.insert(str(d["id"]));
        names.insert(str(d["name"]));
    }
    CHECK(ids.size() == 2);
    CHECK(names == std::set<std::string>{"old_plugin_a", "old_plugin_b"});
}

TEST_CASE("without EVENT_ARCHIVE_PATH the archive is off and says so") {
    LogCapture log("info");
    ArchiveHost h({});
    REQUIRE(h.status.is_ok());
    CHECK(log.contains("event archive off"));
    CHECK_FALSE(h.rt->has_handlers(events::Kind::custom));
    CHECK_FALSE(h.rt->has_handlers(events::Kind::session_start));
}

TEST_CASE("a bad size in runtime.env refuses the module with the key in the message") {
    TempDir out;
    ArchiveHost h(
        {{"EVENT_ARCHIVE_PATH", (out / "a.jsonl").string()}, {"EVENT_ARCHIVE_MAX_BYTES", "12MB"}});
    CHECK_FALSE(h.status.is_ok());
    CHECK(h.status.message().find("EVENT_ARCHIVE_MAX_BYTES must be a positive integer") !=
          std::string::npos);
}
