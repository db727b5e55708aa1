// samples/jetstream_consumer against a real nats-server fed by the jetstream plugin in the real
// server: two processes with one durable name see every event between them, and the messages
// of one killed mid-batch are delivered again to the other.
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
    auto c = server.client();
    c->set_bearer_token_auth(token);
    for (int i = 0; i < count; ++i) {
        auto res = c->Post(
            "/v2/event", "{\"name\":\"work\",\"properties\":{\"n\":\"" + std::to_string(i) + "\"}}",
            "application/json");
        REQUIRE(res);
        REQUIRE(res->status == 200);
    }
}

}  // namespace

TEST_CASE("two consumers with one durable name see every event once between them") {
    NatsServer nats;
    TempDir dir;
    const fs::path modules = dir.path() / "modules";
    fs::create_directories(modules);
    fs::copy_file(build_dir() / "plugins" / "jetstream.so", modules / "jetstream.so");
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
    const fs::path modules = dir.path() / "modules";
    fs::create_directories(modules);
    fs::copy_file(build_dir() / "plugins" / "jetstream.so", modules / "jetstream.so");
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
