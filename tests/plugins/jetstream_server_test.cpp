// The jetstream plugin in the real server process against a real nats-server with JetStream:
// every event acknowledged over HTTP reaches the stream once (by id), on its subject, with
// event_archive's JSON; a nats-server restart under load loses nothing beyond what the plugin
// counts as dropped; a hot reload of jetstream.so keeps publishing.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "nats_support.hpp"
#include "security_support.hpp"
#include "support/file_replace.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kPublished = "studio_custom_jetstream_events_published";
const std::string kDropped = "studio_custom_jetstream_events_dropped";

struct Read {
    std::map<std::string, int> copies_by_id;     // how many stream messages carry each id
    std::map<std::string, std::string> payload;  // by id
    std::set<int> ns;                            // the "n" properties seen
    bool all_valid = true;                       // JSON, header id == payload id, subject
};

Read read_stream(NatsClient& nats, const std::string& durable) {
    Read r;
    for (const StreamMessage& m : nats.read_all("NKHOST_EVENTS", durable)) {
        rapidjson::Document d;
        d.Parse(m.data.data(), m.data.size());
        if (d.HasParseError() || !d.IsObject() || !d.HasMember("id") || !d["id"].IsString()) {
            r.all_valid = false;
            continue;
        }
        const std::string id = d["id"].GetString();
        r.all_valid = r.all_valid && m.msg_id == id && m.subject == "nkhost.events.load";
        ++r.copies_by_id[id];
        r.payload[id] = m.data;
        r.ns.insert(std::stoi(d["properties"]["n"].GetString()));
    }
    return r;
}

}  // namespace

TEST_CASE(
    "every acknowledged event is in the stream once, on its subject, with the archive's "
    "JSON") {
    NatsServer nats;
    TempDir dir;
    const fs::path archive = dir.path() / "events.jsonl";
    Nkhost server({"--runtime.path", jetstream_modules(dir, true).string(), "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--runtime.env",
                   "EVENT_ARCHIVE_PATH=" + archive.string(), "--metrics.prefix", "studio"});
    const std::string token = server.device_token("jetstream-device-0001");

    // Names with what a subject token cannot hold: '.', '*', '>', whitespace.
    const std::vector<std::pair<std::string, std::string>> names = {
        {"\"level_up\"", "nkhost.events.level_up"},
        {"\"shop.buy now\"", "nkhost.events.shop_buy_now"},
        {"\"a*b>c\\td\"", "nkhost.events.a_b_c_d"},
        {"\"\xC3\xA9t\xC3\xA9\"", "nkhost.events.\xC3\xA9t\xC3\xA9"},
    };
    const int total = 200;
    for (int i = 0; i < total; ++i)
        REQUIRE(post_event(server, token, names[i % names.size()].first, i) == 200);
    CHECK(wait_until([&] { return server.metric(kPublished) == total; }, 60s));
    CHECK(server.metric(kDropped) == 0);

    NatsClient client(nats.url());
    CHECK(client.stream_messages("NKHOST_EVENTS") == static_cast<std::uint64_t>(total));
    const auto messages = client.read_all("NKHOST_EVENTS", "test-reader");
    REQUIRE(messages.size() == static_cast<std::size_t>(total));

    // The archive's lines by id: the payload is the same JSON.
    std::map<std::string, std::string> lines;
    CHECK(wait_until(
        [&] {
            lines.clear();
            const std::string text = fs::exists(archive) ? read_file(archive) : "";
            for (std::size_t at = 0; at < text.size();) {
                const auto end = text.find('\n', at);
                if (end == std::string::npos)
                    break;
                rapidjson::Document d;
                d.Parse(text.data() + at, end - at);
                if (!d.HasParseError() && d.IsObject() && d["id"].IsString())
                    lines[d["id"].GetString()] = text.substr(at, end - at);
                at = end + 1;
            }
            return lines.size() == static_cast<std::size_t>(total);
        },
        30s));

    std::set<std::string> ids;
    std::set<int> ns;
    for (const StreamMessage& m : messages) {
        rapidjson::Document d;
        d.Parse(m.data.data(), m.data.size());
        REQUIRE_FALSE(d.HasParseError());
        const std::string id = d["id"].GetString();
        const int n = std::stoi(d["properties"]["n"].GetString());
        CAPTURE(m.subject);
        CAPTURE(n);
        ids.insert(id);
        ns.insert(n);
        CHECK(m.msg_id == id);  // Nats-Msg-Id: JetStream dedupes by the event's id
        CHECK(m.subject == names[n % names.size()].second);
        CHECK(m.data == lines[id]);
        CHECK(d["external"].GetBool());
        CHECK(d["user_id"].IsString());
        CHECK(d["received_at"].IsString());
    }
    CHECK(ids.size() == static_cast<std::size_t>(total));
    CHECK(ns.size() == static_cast<std::size_t>(total));
    CHECK(server.metric("studio_events_dropped") == 0);
    CHECK(server.process().stop(SIGTERM) == 0);
}

TEST_CASE(
    "a nats-server restart under load loses nothing beyond what the plugin counts as "
    "dropped") {
    NatsServer nats;
    TempDir dir;
    // A small buffer, so the outage overflows it and drops are counted.
    Nkhost server({"--runtime.path", jetstream_modules(dir).string(), "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--runtime.env", "JETSTREAM_BUFFER=100",
                   "--runtime.env", "JETSTREAM_ACK_TIMEOUT_MS=1000", "--metrics.prefix", "studio"});
    Poster poster(server, server.device_token("jetstream-device-0002"));

    CHECK(wait_until([&] { return server.metric(kPublished) >= 100; }, 60s));
    nats.stop();
    CHECK(server.process().wait_for_output("jetstream: disconnected from NATS", 60s));
    CHECK(wait_until([&] { return server.metric(kDropped) > 0; }, 60s));
    const std::size_t before_restart = poster.acked();
    nats.start();
    CHECK(server.process().wait_for_output("jetstream: reconnected to NATS", 60s));
    CHECK(wait_until([&] { return poster.acked() >= before_restart + 200; }, 60s));
    poster.stop();

    const auto acked = poster.acked_set();
    CHECK(wait_until(
        [&] { return server.metric(kPublished) + server.metric(kDropped) == acked.size(); }, 60s));
    const auto published = static_cast<std::size_t>(server.metric(kPublished));
    const auto dropped = static_cast<std::size_t>(server.metric(kDropped));
    CHECK(server.metric(kDropped, {"reason=\"buffer_full\""}) == dropped);
    CHECK(dropped > 0);
    MESSAGE("acknowledged " << acked.size() << ", published " << published << ", dropped "
                            << dropped);

    NatsClient client(nats.url());
    const Read r = read_stream(client, "restart-reader");
    CHECK(r.all_valid);
    CHECK(r.copies_by_id.size() == published);  // at least once, and once by id
    for (const auto& [id, copies] : r.copies_by_id)
        CHECK(copies == 1);
    CHECK(r.ns.size() + dropped == acked.size());  // delivered + counted drops = acknowledged
    for (int n : r.ns)
        CHECK(acked.count(n) == 1);
    CHECK(server.process().stop(SIGTERM) == 0);
}

TEST_CASE("a hot reload of jetstream.so keeps publishing, nothing lost or duplicated") {
    NatsServer nats;
    TempDir dir;
    const fs::path modules = jetstream_modules(dir);
    Nkhost server({"--runtime.path", modules.string(), "--runtime.hot_reload", "true",
                   "--runtime.hot_reload_debounce_ms", "100", "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--metrics.prefix", "studio"});
    Poster poster(server, server.device_token("jetstream-device-0003"));
    const std::string generation = "studio_module_generation";
    const std::vector<std::string> jetstream = {"module=\"jetstream\""};

    CHECK(wait_until([&] { return server.metric(kPublished) >= 50; }, 60s));
    const std::string original = read_file(modules / "jetstream.so");
    for (int reload = 1; reload <= 2; ++reload) {
        // New content (bytes after the ELF image change the file's hash, not its code).
        rename_over(modules / "jetstream.so", original + std::string(reload, '\0'));
        CHECK(wait_until([&] { return server.metric(generation, jetstream) == 1 + reload; }, 60s));
        CHECK(wait_until([&] { return server.metric("studio_module_generations_retiring") == 0; },
                         60s));
        const double at = server.metric(kPublished);
        CHECK(wait_until([&] { return server.metric(kPublished) >= at + 50; }, 60s));
    }
    poster.stop();

    const auto acked = poster.acked_set();
    CHECK(wait_until([&] { return server.metric(kPublished) == acked.size(); }, 60s));
    CHECK(server.metric(kDropped) == 0);
    NatsClient client(nats.url());
    const Read r = read_stream(client, "reload-reader");
    CHECK(r.all_valid);
    CHECK(r.copies_by_id.size() == acked.size());
    CHECK(r.ns == acked);
    CHECK(server.output().find("generation 1 retired") != std::string::npos);

    // Removed (unloaded: no generation of the plugin left, libnats stays loaded with its
    // threads), then put back: the new generation connects and publishes with the same libnats.
    fs::remove(modules / "jetstream.so");
    CHECK(wait_until([&] { return server.metric(generation, jetstream) == 0; }, 60s));
    CHECK(
        wait_until([&] { return server.metric("studio_module_generations_retiring") == 0; }, 60s));
    CHECK(server.client()->Get("/healthcheck")->status == 200);
    rename_over(modules / "jetstream.so", original);
    CHECK(wait_until([&] { return server.metric(generation, jetstream) > 0; }, 60s));
    const std::string token = server.device_token("jetstream-device-0006");
    for (int i = 0; i < 20; ++i)
        REQUIRE(post_event(server, token, "\"load\"", 100000 + i) == 200);
    CHECK(wait_until([&] { return server.metric(kPublished) == acked.size() + 20; }, 60s));
    CHECK(client.stream_messages("NKHOST_EVENTS") == acked.size() + 20);
    CHECK(server.process().stop(SIGTERM) == 0);
}

TEST_CASE("NATS down at startup: the server starts, events wait in the buffer and arrive later") {
    NatsServer nats(false);
    TempDir dir;
    Nkhost server({"--runtime.path", jetstream_modules(dir).string(), "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--metrics.prefix", "studio"});
    CHECK(server.output().find("not reachable yet") != std::string::npos);
    const std::string token = server.device_token("jetstream-device-0004");
    const int total = 50;
    for (int i = 0; i < total; ++i)
        REQUIRE(post_event(server, token, "\"load\"", i) == 200);
    CHECK(wait_until(
        [&] { return server.metric("studio_custom_jetstream_events_buffered") == total; }, 60s));
    CHECK(server.metric(kPublished) == 0);

    nats.start();  // the stream does not exist yet: the plugin creates it once connected
    CHECK(wait_until([&] { return server.metric(kPublished) == total; }, 60s));
    CHECK(server.metric(kDropped) == 0);
    NatsClient client(nats.url());
    const Read r = read_stream(client, "late-reader");
    CHECK(r.all_valid);
    CHECK(r.ns.size() == static_cast<std::size_t>(total));
    CHECK(server.process().stop(SIGTERM) == 0);
}

TEST_CASE("an event JetStream keeps refusing is dropped and counted, and does not block the rest") {
    NatsServer nats;
    {
        // A stream made by the operator, with a small maximum message size.
        NatsClient admin(nats.url());
        const char* subjects[] = {"nkhost.events.>"};
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        cfg.Name = "NKHOST_EVENTS";
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.MaxMsgSize = 1024;
        jsStreamInfo* si = nullptr;
        REQUIRE(js_AddStream(&si, admin.js(), &cfg, nullptr, nullptr) == NATS_OK);
        jsStreamInfo_Destroy(si);
    }
    TempDir dir;
    Nkhost server({"--runtime.path", jetstream_modules(dir).string(), "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--metrics.prefix", "studio"});
    const std::string token = server.device_token("jetstream-device-0005");
    auto c = server.client();
    c->set_bearer_token_auth(token);
    const std::string big(4000, 'x');
    REQUIRE(c->Post("/v2/event",
                    "{\"name\":\"load\",\"properties\":{\"n\":\"1000\",\"pad\":\"" + big + "\"}}",
                    "application/json")
                ->status == 200);
    const int small = 20;
    for (int i = 0; i < small; ++i)
        REQUIRE(post_event(server, token, "\"load\"", i) == 200);

    CHECK(wait_until(
        [&] { return server.metric(kPublished) + server.metric(kDropped) == small + 1; }, 60s));
    CHECK(server.metric(kPublished) == small);
    CHECK(server.metric(kDropped, {"reason=\"rejected\""}) == 1);
    CHECK(server.process().wait_for_output("refused by NATS", 30s));
    NatsClient client(nats.url());
    const Read r = read_stream(client, "small-reader");
    CHECK(r.ns.size() == static_cast<std::size_t>(small));
    CHECK(r.ns.count(1000) == 0);
    CHECK(server.process().stop(SIGTERM) == 0);
}

TEST_CASE("a bad setting refuses the module, naming the key") {
    TempDir dir;
    const auto res = run_nkhost({"check", "--runtime.path", jetstream_modules(dir).string(),
                                 "--runtime.env", "JETSTREAM_RETENTION=forever"});
    CHECK(res.exit_code != 0);
    CHECK(res.output.find("JETSTREAM_RETENTION must be limits, workqueue or interest") !=
          std::string::npos);
    const auto prefix = run_nkhost({"check", "--runtime.path", jetstream_modules(dir).string(),
                                    "--runtime.env", "JETSTREAM_SUBJECT_PREFIX=game.*"});
    CHECK(prefix.exit_code != 0);
    CHECK(prefix.output.find("JETSTREAM_SUBJECT_PREFIX") != std::string::npos);
}

TEST_CASE("a hot reload while NATS is away hands the unpublished events to the new generation") {
    NatsServer nats;
    TempDir dir;
    const fs::path modules = jetstream_modules(dir);
    Nkhost server({"--runtime.path", modules.string(), "--runtime.hot_reload", "true",
                   "--runtime.hot_reload_debounce_ms", "100", "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--runtime.env", "JETSTREAM_DRAIN_MS=500",
                   "--metrics.prefix", "studio"});
    const std::string token = server.device_token("jetstream-device-0007");
    const int before = 20, during = 30;
    for (int i = 0; i < before; ++i)
        REQUIRE(post_event(server, token, "\"load\"", i) == 200);
    CHECK(wait_until([&] { return server.metric(kPublished) == before; }, 60s));

    nats.stop();
    CHECK(server.process().wait_for_output("jetstream: disconnected from NATS", 60s));
    for (int i = before; i < before + during; ++i)
        REQUIRE(post_event(server, token, "\"load\"", i) == 200);
    CHECK(wait_until(
        [&] { return server.metric("studio_custom_jetstream_events_buffered") == during; }, 60s));

    rename_over(modules / "jetstream.so",
                read_file(modules / "jetstream.so") + std::string(1, '\0'));
    CHECK(wait_until(
        [&] { return server.metric("studio_module_generation", {"module=\"jetstream\""}) == 2; },
        60s));
    CHECK(
        wait_until([&] { return server.metric("studio_module_generations_retiring") == 0; }, 60s));
    const bool handed = server.process().wait_for_output(
        "30 unpublished events taken from the previous generation", 30s);
    if (!handed)
        MESSAGE(server.output());
    CHECK(handed);

    nats.start();
    CHECK(wait_until([&] { return server.metric(kPublished) == before + during; }, 60s));
    CHECK(server.metric(kDropped) == 0);
    NatsClient client(nats.url());
    const Read r = read_stream(client, "handoff-reader");
    CHECK(r.all_valid);
    CHECK(r.copies_by_id.size() == static_cast<std::size_t>(before + during));
    CHECK(r.ns.size() == static_cast<std::size_t>(before + during));
    CHECK(server.process().stop(SIGTERM) == 0);
}
