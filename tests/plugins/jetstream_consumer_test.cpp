// samples/jetstream_consumer against a real nats-server fed by the jetstream plugin in the real
// server: two processes with one durable name see every event between them, the messages of one
// killed mid-batch are delivered again to the other, and a fleet (two nodes publishing under
// load, two consumers, a nats-server restart) delivers every acknowledged event once by id or
// counts it as dropped.
#include <doctest/doctest.h>

#include <rapidjson/document.h>

#include <csignal>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <string>

#include "nats_support.hpp"
#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

const std::string kPublished = "studio_custom_jetstream_events_published";
const std::string kDropped = "studio_custom_jetstream_events_dropped";

std::string consumer_binary() {
    return (build_dir() / "bin" / "jetstream_consumer").string();
}

// The ids of the JSON lines a consumer printed, with how often each was printed.
std::map<std::string, int> printed_ids(const std::string& out) {
    std::map<std::string, int> ids;
    std::istringstream in(out);
    std::string line;
    while (std::getline(in, line)) {
        rapidjson::Document d;
        d.Parse(line.data(), line.size());
        if (!d.HasParseError() && d.IsObject() && d.HasMember("id") && d["id"].IsString())
            ++ids[d["id"].GetString()];
    }
    return ids;
}

// The ids a consumer reported holding ("jetstream_consumer: holding <id>").
std::set<std::string> held_ids(const std::string& err) {
    std::set<std::string> ids;
    std::istringstream in(err);
    std::string line;
    const std::string tag = "jetstream_consumer: holding ";
    while (std::getline(in, line))
        if (line.rfind(tag, 0) == 0 && line.find("unacknowledged") == std::string::npos)
            ids.insert(line.substr(tag.size()));
    return ids;
}

// Every event id in the stream (read by a consumer of the test's own).
std::set<std::string> stream_ids(const std::string& url) {
    NatsClient client(url);
    std::set<std::string> ids;
    for (const StreamMessage& m : client.read_all("NKHOST_EVENTS", "test-check"))
        ids.insert(m.msg_id);
    return ids;
}

void post_events(const Nkhost& server, const std::string& token, int count) {
    for (int i = 0; i < count; ++i)
        REQUIRE(post_event(server, token, "\"work\"", i) == 200);
}

}  // namespace

TEST_CASE("two consumers with one durable name see every event once between them") {
    NatsServer nats;
    TempDir dir;
    const fs::path modules = jetstream_modules(dir);
    Nkhost server({"--runtime.path", modules.string(), "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--metrics.prefix", "studio"});

    const std::vector<std::string> args = {consumer_binary(), "workers", "--url",
                                           nats.url(),        "--batch", "10"};
    Program a(args);
    CHECK(wait_until([&] { return a.err().find("ready") != std::string::npos; }, 60s));
    Program b(args);
    CHECK(wait_until([&] { return b.err().find("ready") != std::string::npos; }, 60s));

    const int total = 300;
    post_events(server, server.device_token("consumer-device-0001"), total);
    CHECK(wait_until([&] { return server.metric(kPublished) == total; }, 60s));
    const auto all = stream_ids(nats.url());
    REQUIRE(all.size() == static_cast<std::size_t>(total));

    std::map<std::string, int> seen_a, seen_b;
    CHECK(wait_until(
        [&] {
            seen_a = printed_ids(a.out());
            seen_b = printed_ids(b.out());
            return seen_a.size() + seen_b.size() >= all.size();
        },
        60s));
    CHECK(a.stop(SIGTERM) == 0);
    CHECK(b.stop(SIGTERM) == 0);
    seen_a = printed_ids(a.out());
    seen_b = printed_ids(b.out());
    MESSAGE("consumer a processed " << seen_a.size() << ", b " << seen_b.size());
    std::set<std::string> both;
    for (const auto& [id, n] : seen_a) {
        CHECK(n == 1);
        both.insert(id);
    }
    for (const auto& [id, n] : seen_b) {
        CHECK(n == 1);
        CHECK(seen_a.count(id) == 0);  // acknowledged by one, never delivered to the other
        both.insert(id);
    }
    CHECK(both == all);
}

TEST_CASE("a consumer killed mid-batch: its unacknowledged messages go to the other") {
    NatsServer nats;
    TempDir dir;
    const fs::path modules = jetstream_modules(dir);
    Nkhost server({"--runtime.path", modules.string(), "--runtime.env",
                   "JETSTREAM_URL=" + nats.url(), "--metrics.prefix", "studio"});

    const int total = 200;
    post_events(server, server.device_token("consumer-device-0002"), total);
    CHECK(wait_until([&] { return server.metric(kPublished) == total; }, 60s));
    const auto all = stream_ids(nats.url());
    REQUIRE(all.size() == static_cast<std::size_t>(total));

    // A processes and acknowledges 50, then half of its next batch, and holds the rest: killed
    // there, as a process dying mid-batch.
    const std::vector<std::string> common = {"workers", "--url",         nats.url(), "--batch",
                                             "20",      "--ack-wait-ms", "2000"};
    std::vector<std::string> args_a = {consumer_binary()};
    args_a.insert(args_a.end(), common.begin(), common.end());
    args_a.insert(args_a.end(), {"--hold-after", "50"});
    Program a(args_a);
    CHECK(wait_until([&] { return a.err().find("unacknowledged messages") != std::string::npos; },
                     60s));
    CHECK(a.stop(SIGKILL) == 128 + SIGKILL);
    const auto seen_a = printed_ids(a.out());
    const auto held = held_ids(a.err());
    REQUIRE(held.size() > 0);
    CHECK(seen_a.size() >= 50);

    std::vector<std::string> args_b = {consumer_binary()};
    args_b.insert(args_b.end(), common.begin(), common.end());
    Program b(args_b);
    std::map<std::string, int> seen_b;
    CHECK(wait_until(
        [&] {
            seen_b = printed_ids(b.out());
            return seen_a.size() + seen_b.size() >= all.size();
        },
        60s));
    CHECK(b.stop(SIGTERM) == 0);
    seen_b = printed_ids(b.out());

    for (const auto& id : held)
        CHECK(seen_b.count(id) == 1);  // redelivered after the ack wait, to b
    std::set<std::string> both;
    for (const auto& [id, n] : seen_a)
        both.insert(id);
    for (const auto& [id, n] : seen_b) {
        CHECK(n == 1);
        CHECK(seen_a.count(id) == 0);  // what a acknowledged is not delivered again
        both.insert(id);
    }
    CHECK(both == all);
}

TEST_CASE(
    "a fleet: two nodes publish under load, two consumers, a nats-server restart; every "
    "acknowledged event is delivered once by id or counted as dropped") {
    NatsServer nats;
    TempDir dir;
    const fs::path modules = jetstream_modules(dir);
    // A small buffer, so the outage may overflow it; a short ack timeout, so publishes in flight
    // when the server goes are retried (the retries carry the same Nats-Msg-Id).
    const std::vector<std::string> node_args = {
        "--runtime.path", modules.string(), "--runtime.env", "JETSTREAM_URL=" + nats.url(),
        "--runtime.env", "JETSTREAM_BUFFER=300", "--runtime.env", "JETSTREAM_ACK_TIMEOUT_MS=1000",
        "--metrics.prefix", "studio"};
    Nkhost node_a(node_args);
    Nkhost node_b(node_args);

    const std::vector<std::string> consumer_args = {consumer_binary(), "fleet",         "--url",
                                                    nats.url(),        "--batch",       "50",
                                                    "--ack-wait-ms",   "3000"};
    Program consumer_1(consumer_args);
    CHECK(wait_until([&] { return consumer_1.err().find("ready") != std::string::npos; }, 60s));
    Program consumer_2(consumer_args);
    CHECK(wait_until([&] { return consumer_2.err().find("ready") != std::string::npos; }, 60s));

    struct Node {
        Nkhost& server;
        std::string name;  // the event name this node's poster sends
        Poster poster;
    };
    Node nodes[] = {
        {node_a, "node_a", Poster(node_a, node_a.device_token("fleet-device-node-a"), "\"node_a\"")},
        {node_b, "node_b", Poster(node_b, node_b.device_token("fleet-device-node-b"), "\"node_b\"")},
    };
    for (Node& n : nodes)
        CHECK(wait_until([&] { return n.server.metric(kPublished) >= 200; }, 60s));

    nats.stop();
    for (Node& n : nodes) {
        CHECK(n.server.process().wait_for_output("jetstream: disconnected from NATS", 60s));
        const std::size_t at = n.poster.acked();
        CHECK(wait_until([&] { return n.poster.acked() >= at + 200; }, 60s));  // accepted meanwhile
    }
    nats.start();
    for (Node& n : nodes) {
        CHECK(n.server.process().wait_for_output("jetstream: reconnected to NATS", 60s));
        const double at = n.server.metric(kPublished);
        CHECK(wait_until([&] { return n.server.metric(kPublished) >= at + 200; }, 60s));
    }
    for (Node& n : nodes)
        n.poster.stop();

    // Every acknowledged event is published or counted as dropped, on its node.
    std::size_t published_total = 0;
    std::map<std::string, std::set<int>> acked;
    std::map<std::string, std::size_t> dropped;
    for (Node& n : nodes) {
        acked[n.name] = n.poster.acked_set();
        CHECK(wait_until(
            [&] {
                return n.server.metric(kPublished) + n.server.metric(kDropped) ==
                       acked[n.name].size();
            },
            60s));
        published_total += static_cast<std::size_t>(n.server.metric(kPublished));
        dropped[n.name] = static_cast<std::size_t>(n.server.metric(kDropped));
        CHECK(n.server.metric(kDropped, {"reason=\"buffer_full\""}) == dropped[n.name]);
    }
    CHECK(stream_ids(nats.url()).size() == published_total);  // JetStream deduped the retries

    // The consumers together see every published event at least once.
    std::map<std::string, int> seen_1, seen_2;
    const auto distinct = [&] {
        std::set<std::string> ids;
        for (const auto* seen : {&seen_1, &seen_2})
            for (const auto& [id, copies] : *seen)
                ids.insert(id);
        return ids.size();
    };
    CHECK(wait_until(
        [&] {
            seen_1 = printed_ids(consumer_1.out());
            seen_2 = printed_ids(consumer_2.out());
            return distinct() >= published_total;
        },
        120s));
    CHECK(consumer_1.stop(SIGTERM) == 0);
    CHECK(consumer_2.stop(SIGTERM) == 0);

    // By id, exactly once: each delivered id is one acknowledged event of one node, and no event
    // arrived under two ids.
    std::map<std::string, std::pair<std::string, int>> event_of;  // id -> (node, n)
    std::size_t redelivered = 0;
    for (const std::string& out : {consumer_1.out(), consumer_2.out()}) {
        std::istringstream in(out);
        std::string line;
        while (std::getline(in, line)) {
            rapidjson::Document d;
            d.Parse(line.data(), line.size());
            REQUIRE_FALSE(d.HasParseError());
            const std::pair<std::string, int> event{d["name"].GetString(),
                                                    std::stoi(d["properties"]["n"].GetString())};
            const auto [at, inserted] = event_of.emplace(d["id"].GetString(), event);
            if (!inserted) {
                ++redelivered;  // at least once: an ack lost in the restart
                CHECK(at->second == event);
            }
        }
    }
    std::map<std::string, std::set<int>> delivered;
    for (const auto& [id, event] : event_of) {
        CAPTURE(id);
        REQUIRE(acked.count(event.first) == 1);
        CHECK(acked[event.first].count(event.second) == 1);
        delivered[event.first].insert(event.second);
    }
    CHECK(event_of.size() == published_total);
    for (Node& n : nodes) {
        CAPTURE(n.name);
        // delivered + counted drops = acknowledged
        CHECK(delivered[n.name].size() + dropped[n.name] == acked[n.name].size());
        MESSAGE(n.name << ": acknowledged " << acked[n.name].size() << ", delivered "
                       << delivered[n.name].size() << ", dropped " << dropped[n.name]);
        CHECK(n.server.process().stop(SIGTERM) == 0);
    }
    MESSAGE("consumer 1 processed " << seen_1.size() << ", consumer 2 " << seen_2.size()
                                    << "; delivered again after the restart: " << redelivered);
}
