// The analytics sample plugin in the real server process, forwarding to a real local collector
// (a cpp-httplib server in this process that records every batch and answers as told).
#include <doctest/doctest.h>

#include <signal.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include <rapidjson/document.h>

#include "analytics_server.hpp"
#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

constexpr const char* kWriteKey = "wk_test";
constexpr const char* kBasicAuth = "Basic d2tfdGVzdDo=";  // base64("wk_test:")

// One request the collector received, and what it answered.
struct Received {
    std::string path, authorization, content_type, body;
    std::vector<std::string> message_ids;  // in batch order
    int status = 0;
    Clock::time_point at;
};

// A Segment-compatible collector: POST /v1/batch. `respond(n)` decides the status (and an
// optional Retry-After) of the n-th request (0-based); 200 by default.
class Collector {
  public:
    struct Answer {
        int status = 200;
        std::string retry_after;
    };
    // port 0: any free port (bound here, so no other process can take it first).
    explicit Collector(std::uint16_t port = 0) {
        server_.Post("/v1/batch", [this](const httplib::Request& req, httplib::Response& res) {
            Received r;
            r.path = req.path;
            r.authorization = req.get_header_value("Authorization");
            r.content_type = req.get_header_value("Content-Type");
            r.body = req.body;
            r.at = Clock::now();
            rapidjson::Document d;
            d.Parse(req.body.c_str());
            if (!d.HasParseError() && d.IsObject() && d.HasMember("batch") && d["batch"].IsArray())
                for (const auto& e : d["batch"].GetArray())
                    if (e.IsObject() && e.HasMember("messageId") && e["messageId"].IsString())
                        r.message_ids.push_back(e["messageId"].GetString());
            std::lock_guard lock(mutex_);
            const Answer a = respond_ ? respond_(received_.size()) : Answer{};
            r.status = a.status;
            res.status = a.status;
            if (!a.retry_after.empty())
                res.set_header("Retry-After", a.retry_after);
            res.set_content(a.status == 200 ? "{\"success\":true}" : "{\"error\":\"try later\"}",
                            "application/json");
            received_.push_back(std::move(r));
        });
        if (port == 0) {
            const int bound = server_.bind_to_any_port("127.0.0.1");
            REQUIRE(bound > 0);
            port_ = static_cast<std::uint16_t>(bound);
        } else {
            port_ = port;
            REQUIRE(server_.bind_to_port("127.0.0.1", port_));
        }
        thread_ = std::thread([this] { server_.listen_after_bind(); });
        REQUIRE(wait_until([&] { return server_.is_running(); }));
    }
    ~Collector() {
        server_.stop();
        thread_.join();
    }
    std::string endpoint() const { return "http://127.0.0.1:" + std::to_string(port_); }
    void respond(std::function<Answer(std::size_t)> fn) {
        std::lock_guard lock(mutex_);
        respond_ = std::move(fn);
    }
    std::vector<Received> received() const {
        std::lock_guard lock(mutex_);
        return received_;
    }
    // Distinct messageIds accepted with a 2xx.
    std::set<std::string> delivered_ids() const {
        std::set<std::string> ids;
        for (const auto& r : received())
            if (r.status == 200)
                ids.insert(r.message_ids.begin(), r.message_ids.end());
        return ids;
    }

  private:
    httplib::Server server_;
    std::uint16_t port_;
    std::thread thread_;
    mutable std::mutex mutex_;
    std::function<Answer(std::size_t)> respond_;
    std::vector<Received> received_;
};

void send_event(const Nkhost& host, const std::string& token, const std::string& name,
                const std::string& properties = "{}") {
    auto c = host.client();
    c->set_bearer_token_auth(token.c_str());
    auto res = c->Post("/v2/event", "{\"name\":\"" + name + "\",\"properties\":" + properties + "}",
                       "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
}

std::string user_id(const Nkhost& host, const std::string& token) {
    auto c = host.client();
    c->set_bearer_token_auth(token.c_str());
    auto res = c->Get("/v2/account");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    rapidjson::Document d;
    d.Parse(res->body.c_str());
    REQUIRE(d.IsObject());
    return d["user"]["id"].GetString();
}

// The analytics_stats RPC's reply, with the http key.
rapidjson::Document stats(const Nkhost& host) {
    auto c = host.client();
    auto res = c->Get("/v2/rpc/analytics_stats?http_key=defaulthttpkey&unwrap");
    rapidjson::Document d;
    if (!res || res->status != 200) {
        d.SetObject();
        return d;
    }
    d.Parse(res->body.c_str());
    if (d.HasParseError() || !d.IsObject())
        d.SetObject();
    return d;
}

// A number from the stats reply by path ("forwarder.delivered"); -1 when absent.
std::int64_t figure(const rapidjson::Value& root, const std::string& path) {
    const rapidjson::Value* v = &root;
    std::size_t at = 0;
    while (at <= path.size()) {
        const auto dot = std::min(path.find('.', at), path.size());
        const std::string key = path.substr(at, dot - at);
        if (!v->IsObject() || !v->HasMember(key.c_str()))
            return -1;
        v = &(*v)[key.c_str()];
        at = dot + 1;
    }
    return v->IsInt64() ? v->GetInt64() : -1;
}
std::int64_t figure(const Nkhost& host, const std::string& path) {
    return figure(stats(host), path);
}

// A realtime socket held open until close().
class Socket {
  public:
    Socket(std::uint16_t port, const std::string& token) : ws_(io_) {
        boost::asio::ip::tcp::resolver resolver(io_);
        boost::asio::connect(ws_.next_layer(), resolver.resolve("127.0.0.1", std::to_string(port)));
        timeval tv{10, 0};
        ::setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ws_.handshake("127.0.0.1", "/ws?format=json&token=" + token);
    }
    void close() {
        ws_.close(boost::beast::websocket::close_code::normal);
        boost::beast::flat_buffer buf;
        boost::system::error_code ec;
        while (!ec)
            ws_.read(buf, ec);  // until the server's close frame
    }

  private:
    boost::asio::io_context io_;
    boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
};

std::string endpoint_env(const Collector& c) {
    return "ANALYTICS_ENDPOINT=" + c.endpoint();
}

}  // namespace

TEST_CASE("batches arrive in the Segment batch format with Basic auth") {
    Collector collector;
    Server s({endpoint_env(collector), std::string("ANALYTICS_WRITE_KEY=") + kWriteKey,
              "ANALYTICS_BATCH_SIZE=5", "ANALYTICS_FLUSH_INTERVAL_MS=100"});
    const std::string alice = s.host->device_token("analytics-alice-0001");
    const std::string bob = s.host->device_token("analytics-bob-00001");
    const std::string alice_id = user_id(*s.host, alice), bob_id = user_id(*s.host, bob);
    for (int i = 0; i < 8; ++i)
        send_event(*s.host, alice, "level_up", "{\"level\":\"" + std::to_string(i) + "\"}");
    for (int i = 0; i < 4; ++i)
        send_event(*s.host, bob, "purchase", "{\"sku\":\"gem_pack\"}");

    REQUIRE(wait_until([&] { return collector.delivered_ids().size() == 12; }));
    // The host's event id: a UUID v7.
    const std::regex uuid("[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}");
    const std::regex rfc3339("\\d{4}-\\d{2}-\\d{2}T\\d{2}:\\d{2}:\\d{2}(\\.\\d+)?Z");
    std::map<std::string, int> by_user_event;
    std::set<std::string> levels;
    for (const auto& r : collector.received()) {
        CHECK(r.path == "/v1/batch");
        CHECK(r.authorization == kBasicAuth);
        CHECK(r.content_type == "application/json");
        rapidjson::Document d;
        d.Parse(r.body.c_str());
        REQUIRE(d.IsObject());
        REQUIRE(d["sentAt"].IsString());
        CHECK(std::regex_match(d["sentAt"].GetString(), rfc3339));
        REQUIRE(d["batch"].IsArray());
        CHECK(d["batch"].Size() >= 1);
        CHECK(d["batch"].Size() <= 5);
        for (const auto& e : d["batch"].GetArray()) {
            CHECK(std::string(e["type"].GetString()) == "track");
            CHECK(std::regex_match(e["messageId"].GetString(), uuid));
            CHECK(std::regex_match(e["timestamp"].GetString(), rfc3339));
            REQUIRE(e["properties"].IsObject());
            const std::string name = e["event"].GetString(), user = e["userId"].GetString();
            ++by_user_event[user + " " + name];
            if (name == "level_up")
                levels.insert(e["properties"]["level"].GetString());
            else
                CHECK(std::string(e["properties"]["sku"].GetString()) == "gem_pack");
            CHECK(e["properties"]["external"].GetBool());
        }
    }
    CHECK(by_user_event == std::map<std::string, int>{{alice_id + " level_up", 8},
                                                      {bob_id + " purchase", 4}});
    CHECK(levels.size() == 8);
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.delivered") == 12; }));
    const auto st = stats(*s.host);
    CHECK(figure(st, "forwarder.enqueued") == 12);
    CHECK(figure(st, "forwarder.dropped") == 0);
    CHECK(figure(st, "forwarder.rejected") == 0);
}

TEST_CASE("a collector answering 500 then recovering gets every event, retried with the same ids") {
    Collector collector;
    collector.respond([](std::size_t n) { return Collector::Answer{n < 3 ? 500 : 200, ""}; });
    Server s({endpoint_env(collector), std::string("ANALYTICS_WRITE_KEY=") + kWriteKey,
              "ANALYTICS_BATCH_SIZE=5", "ANALYTICS_FLUSH_INTERVAL_MS=50"});
    const std::string token = s.host->device_token("analytics-retry-0001");
    for (int i = 0; i < 20; ++i)
        send_event(*s.host, token, "match_end", "{\"n\":\"" + std::to_string(i) + "\"}");

    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.delivered") == 20; }, 60s));
    const auto received = collector.received();
    CHECK(collector.delivered_ids().size() == 20);
    // Every failed batch is sent again, unchanged; no event is accepted twice.
    std::set<std::vector<std::string>> failed, accepted_batches;
    std::multiset<std::string> accepted;
    for (const auto& r : received) {
        if (r.status == 500)
            failed.insert(r.message_ids);
        else {
            accepted_batches.insert(r.message_ids);
            accepted.insert(r.message_ids.begin(), r.message_ids.end());
        }
    }
    CHECK(failed.size() >= 1);
    for (const auto& batch : failed)
        CHECK(accepted_batches.count(batch) == 1);
    CHECK(accepted.size() == 20);
    const auto st = stats(*s.host);
    CHECK(figure(st, "forwarder.retries") == 3);
    CHECK(figure(st, "forwarder.dropped") == 0);
    CHECK(figure(st, "forwarder.buffered") == 0);
}

TEST_CASE("429 with Retry-After is honoured") {
    Collector collector;
    collector.respond([](std::size_t n) { return Collector::Answer{n == 0 ? 429 : 200, "1"}; });
    Server s({endpoint_env(collector), "ANALYTICS_BATCH_SIZE=3", "ANALYTICS_FLUSH_INTERVAL_MS=50"});
    const std::string token = s.host->device_token("analytics-429-00001");
    for (int i = 0; i < 3; ++i)
        send_event(*s.host, token, "ad_shown");

    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.delivered") == 3; }));
    const auto received = collector.received();
    REQUIRE(received.size() >= 2);
    CHECK(received[0].status == 429);
    CHECK(received[1].message_ids == received[0].message_ids);
    // The retry came no earlier than Retry-After said (the backoff alone would be ~0.1 s).
    CHECK(received[1].at - received[0].at >= 950ms);
}

TEST_CASE("a collector down longer than the buffer holds: the drops are counted exactly") {
    Collector collector;
    std::atomic<bool> down{true};
    collector.respond([&](std::size_t) { return Collector::Answer{down ? 503 : 200, ""}; });
    Server s({endpoint_env(collector), "ANALYTICS_BATCH_SIZE=4", "ANALYTICS_FLUSH_INTERVAL_MS=50",
              "ANALYTICS_BUFFER_LIMIT=16"});
    const std::string token = s.host->device_token("analytics-drop-0001");
    constexpr int kSent = 60;
    for (int i = 0; i < kSent; ++i)
        send_event(*s.host, token, "tick", "{\"i\":\"" + std::to_string(i) + "\"}");
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.enqueued") == kSent; }));
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.dropped") > 0; }));
    CHECK(figure(*s.host, "forwarder.delivered") == 0);

    down = false;
    REQUIRE(wait_until(
        [&] {
            const auto st = stats(*s.host);
            return figure(st, "forwarder.buffered") == 0 && figure(st, "forwarder.in_flight") == 0;
        },
        60s));
    const auto st = stats(*s.host);
    const auto delivered = figure(st, "forwarder.delivered"), dropped = figure(st, "forwarder.dropped");
    CHECK(delivered + dropped == kSent);
    CHECK(dropped >= kSent - 16 - 4);  // at most the buffer and one batch in flight survive
    CHECK(figure(st, "forwarder.rejected") == 0);
    CHECK(static_cast<std::int64_t>(collector.delivered_ids().size()) == delivered);
}

TEST_CASE("a 400 is counted as rejected and not retried") {
    Collector collector;
    collector.respond([](std::size_t n) { return Collector::Answer{n == 0 ? 400 : 200, ""}; });
    // Batches go by size only: two events each.
    Server s({endpoint_env(collector), "ANALYTICS_BATCH_SIZE=2",
              "ANALYTICS_FLUSH_INTERVAL_MS=600000"});
    const std::string token = s.host->device_token("analytics-400-00001");
    send_event(*s.host, token, "bad_one");
    send_event(*s.host, token, "bad_two");
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.rejected") == 2; }));
    send_event(*s.host, token, "good_one");
    send_event(*s.host, token, "good_two");
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.delivered") == 2; }));
    const auto received = collector.received();
    REQUIRE(received.size() == 2);
    CHECK(received[0].status == 400);
    CHECK(received[0].message_ids.size() == 2);
    std::set<std::string> first(received[0].message_ids.begin(), received[0].message_ids.end());
    for (const auto& id : received[1].message_ids)
        CHECK(first.count(id) == 0);
    CHECK(figure(*s.host, "forwarder.retries") == 0);
}

TEST_CASE("shutdown (SIGTERM) sends what is buffered") {
    Collector collector;
    // Neither the batch size nor the interval would send these before shutdown.
    Server s({endpoint_env(collector), "ANALYTICS_BATCH_SIZE=1000",
              "ANALYTICS_FLUSH_INTERVAL_MS=600000"});
    const std::string token = s.host->device_token("analytics-bye-00001");
    for (int i = 0; i < 7; ++i)
        send_event(*s.host, token, "quit_menu");
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.buffered") == 7; }));
    CHECK(collector.received().empty());

    CHECK(s.host->process().stop(SIGTERM) == 0);
    CHECK(collector.delivered_ids().size() == 7);
    CHECK(s.host->output().find("analytics: forwarder stopped") != std::string::npos);
}

TEST_CASE("analytics_stats: counts by name, top events, a session with its length, DAU") {
    Server s;  // forwarding off
    const std::string a = s.host->device_token("analytics-stats-a01");
    const std::string b = s.host->device_token("analytics-stats-b01");
    const std::string c = s.host->device_token("analytics-stats-c01");
    for (int i = 0; i < 5; ++i)
        send_event(*s.host, a, "level_up");
    send_event(*s.host, b, "purchase");
    send_event(*s.host, b, "purchase");
    send_event(*s.host, c, "level_up");

    const auto opened = Clock::now();
    {
        Socket socket(s.host->port(), a);
        REQUIRE(wait_until([&] { return figure(*s.host, "sessions.active") == 1; }));
        std::this_thread::sleep_for(100ms);  // the session's length (not a synchronisation)
        socket.close();
    }
    REQUIRE(wait_until([&] { return figure(*s.host, "sessions.length_ms.count") == 1; }));
    const auto bound = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - opened);

    const auto st = stats(*s.host);
    CHECK(figure(st, "events.total") == 10);
    CHECK(figure(st, "events.by_name.level_up.total") == 6);
    CHECK(figure(st, "events.by_name.purchase.total") == 2);
    CHECK(figure(st, "events.by_name.session_start.total") == 1);
    CHECK(figure(st, "events.by_name.session_end.total") == 1);
    CHECK(figure(st, "events.by_name.level_up.last_hour") == 6);
    std::int64_t per_minute = 0;
    for (const auto& n : st["events"]["per_minute"].GetArray())
        per_minute += n.GetInt64();
    CHECK(per_minute == 10);
    CHECK(st["events"]["per_minute"].Size() == 60);

    const auto& top = st["top_events"];
    REQUIRE(top.Size() == 4);
    CHECK(std::string(top[0]["name"].GetString()) == "level_up");
    CHECK(top[0]["count"].GetInt64() == 6);
    CHECK(std::string(top[1]["name"].GetString()) == "purchase");

    CHECK(figure(st, "sessions.active") == 0);
    CHECK(figure(st, "sessions.started") == 1);
    CHECK(figure(st, "sessions.ended") == 1);
    const auto max = figure(st, "sessions.length_ms.max");
    CHECK(max >= 100);
    CHECK(max <= bound.count());
    // One session: p50 and p95 are its length within the histogram's 9% error.
    CHECK(figure(st, "sessions.length_ms.p50") >= max * 0.91);
    CHECK(figure(st, "sessions.length_ms.p95") <= max);

    REQUIRE(st["daily_active_users"].Size() >= 1);
    CHECK(st["daily_active_users"][0]["users"].GetInt64() == 3);

    // The same figures as plugin metrics on the Prometheus endpoint.
    CHECK(s.host->metric("nkhost_custom_analytics_events", {"name=\"level_up\""}) == 6);
    CHECK(s.host->metric("nkhost_custom_analytics_events", {"name=\"session_end\""}) == 1);
    CHECK(s.host->metric("nkhost_custom_analytics_events") == 10);
    CHECK(s.host->metric("nkhost_custom_analytics_sessions_active") == 0);
    CHECK(s.host->metrics_text().find("nkhost_custom_analytics_sessions_active") !=
          std::string::npos);
    CHECK(figure(st, "forwarder.enabled") == -1);  // a bool, not a number
    CHECK(st["forwarder"]["enabled"].GetBool() == false);

    // With a session token too.
    auto client = s.host->client();
    client->set_bearer_token_auth(b.c_str());
    auto res = client->Post("/v2/rpc/analytics_stats", "\"\"", "application/json");
    REQUIRE(res);
    CHECK(res->status == 200);
}

TEST_CASE("hot reload hands counters, an open session and the unsent buffer to the new generation") {
    Collector collector;
    std::atomic<bool> down{true};
    collector.respond([&](std::size_t) { return Collector::Answer{down ? 503 : 200, ""}; });
    Server s({endpoint_env(collector), "ANALYTICS_BATCH_SIZE=4", "ANALYTICS_FLUSH_INTERVAL_MS=50",
              "ANALYTICS_BUFFER_LIMIT=1000"});
    const std::string token = s.host->device_token("analytics-reload-01");
    Socket socket(s.host->port(), token);
    for (int i = 0; i < 10; ++i)
        send_event(*s.host, token, "craft", "{\"i\":\"" + std::to_string(i) + "\"}");
    // 10 custom events and the session_start, none delivered while the collector is down.
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.enqueued") == 11; }));
    REQUIRE(wait_until([&] { return !collector.received().empty(); }));

    // A new build of the same plugin (different bytes), picked up by SIGHUP.
    const fs::path file = s.modules.path() / "analytics.so";
    const fs::path tmp = s.modules.path() / ".analytics.so.tmp";
    fs::copy_file(file, tmp);
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::app);
        out << "another build";
    }
    fs::rename(tmp, file);
    REQUIRE(::kill(s.host->process().pid(), SIGHUP) == 0);
    REQUIRE(wait_until([&] {
        return s.host->metric("nkhost_module_handoffs", {"result=\"taken\""}) == 1 &&
               s.host->metric("nkhost_module_generations_retiring") == 0;
    }));

    auto st = stats(*s.host);
    CHECK(figure(st, "events.total") == 11);
    CHECK(figure(st, "events.by_name.craft.total") == 10);
    CHECK(figure(st, "sessions.active") == 1);
    CHECK(figure(st, "forwarder.enqueued") == 11);
    CHECK(figure(st, "forwarder.delivered") == 0);
    CHECK(figure(st, "forwarder.dropped") == 0);
    CHECK(figure(st, "forwarder.buffered") + figure(st, "forwarder.in_flight") == 11);
    CHECK(st["daily_active_users"][0]["users"].GetInt64() == 1);

    down = false;
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.delivered") == 11; }, 60s));
    CHECK(collector.delivered_ids().size() == 11);
    // What was attempted before the reload went out after it with the same messageIds.
    std::set<std::string> attempted;
    for (const auto& r : collector.received())
        if (r.status == 503)
            attempted.insert(r.message_ids.begin(), r.message_ids.end());
    const auto delivered = collector.delivered_ids();
    CHECK(!attempted.empty());
    for (const auto& id : attempted)
        CHECK(delivered.count(id) == 1);

    // The session opened under the old generation ends under the new one, with its length.
    socket.close();
    REQUIRE(wait_until([&] { return figure(*s.host, "sessions.length_ms.count") == 1; }));
    CHECK(figure(*s.host, "sessions.active") == 0);
}

TEST_CASE("bounds: event names beyond ANALYTICS_MAX_EVENT_NAMES count as (other); sessions beyond "
          "ANALYTICS_MAX_OPEN_SESSIONS count as active but untracked") {
    // One event worker: one shard of counts by name, so the bound is exact.
    Server s({"ANALYTICS_MAX_EVENT_NAMES=2", "ANALYTICS_MAX_OPEN_SESSIONS=0",
              "--runtime.event_queue_workers", "1"});
    const std::string token = s.host->device_token("analytics-bound-01");
    send_event(*s.host, token, "first");
    send_event(*s.host, token, "second");
    send_event(*s.host, token, "third");
    send_event(*s.host, token, "fourth");
    send_event(*s.host, token, "first");
    REQUIRE(wait_until([&] { return figure(*s.host, "events.total") == 5; }));
    auto st = stats(*s.host);
    CHECK(figure(st, "events.by_name.first.total") == 2);
    CHECK(figure(st, "events.by_name.second.total") == 1);
    CHECK(figure(st, "events.by_name.(other).total") == 2);
    CHECK(figure(st, "events.by_name.third.total") == -1);

    {
        Socket socket(s.host->port(), token);
        REQUIRE(wait_until([&] { return figure(*s.host, "sessions.active") == 1; }));
        CHECK(figure(*s.host, "sessions.untracked") == 1);
        socket.close();
    }
    REQUIRE(wait_until([&] { return figure(*s.host, "sessions.ended") == 1; }));
    st = stats(*s.host);
    CHECK(figure(st, "sessions.active") == 0);
    CHECK(figure(st, "sessions.length_ms.count") == 0);
    CHECK(figure(st, "sessions.unmatched_ends") == 0);
}

TEST_CASE("a malformed ANALYTICS_* value stops the load with the key named") {
    TempDir modules, data;
    fs::copy_file(build_dir() / "modules" / "analytics.so", modules.path() / "analytics.so");
    const auto r = run_nkhost({"--data_dir", data.path().string(), "--socket.port",
                               std::to_string(free_port()), "--runtime.path",
                               modules.path().string(), "--runtime.env",
                               "ANALYTICS_BATCH_SIZE=lots"});
    CHECK(r.exit_code != 0);
    CHECK(r.output.find("ANALYTICS_BATCH_SIZE must be an integer from 1 to 2000") !=
          std::string::npos);
}

TEST_CASE("the chart page: no secret in the page, Chart.js embedded, data behind the http key") {
    Server s;
    const std::string token = s.host->device_token("analytics-chart-01");
    send_event(*s.host, token, "chart_check");
    REQUIRE(wait_until([&] { return figure(*s.host, "events.total") == 1; }));
    auto c = s.host->client();

    auto page = c->Get("/plugins/analytics?http_key=defaulthttpkey");
    REQUIRE(page);
    CHECK(page->status == 200);
    CHECK(page->get_header_value("Content-Type").rfind("text/html", 0) == 0);
    CHECK(page->body.find("defaulthttpkey") == std::string::npos);
    CHECK(page->body.find("id=\"events-total\"") != std::string::npos);
    CHECK(page->body.find("/plugins/analytics/chart.js") != std::string::npos);

    auto js = c->Get("/plugins/analytics/chart.js");
    REQUIRE(js);
    CHECK(js->status == 200);
    const fs::path chartjs = "/usr/share/javascript/chart.js/chart.min.js";
    if (fs::exists(chartjs))
        CHECK(js->body == read_file(chartjs));  // embedded byte for byte
    CHECK(js->body.find("Chart.js v3.9") != std::string::npos);

    auto denied = c->Get("/plugins/analytics/stats");
    REQUIRE(denied);
    CHECK(denied->status == 401);
    auto data = c->Get("/plugins/analytics/stats?http_key=defaulthttpkey");
    REQUIRE(data);
    CHECK(data->status == 200);
    rapidjson::Document d;
    d.Parse(data->body.c_str());
    REQUIRE(d.IsObject());
    CHECK(figure(d, "events.by_name.chart_check.total") == 1);
}

// Holds a loopback port bound but not listening: connecting to it is refused, and no other
// process can bind it, until a socket that also sets SO_REUSEPORT (httplib's listener does)
// binds it too and listens.
class PortReservation {
  public:
    PortReservation() {
        fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        REQUIRE(fd_ >= 0);
        int yes = 1;
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        ::setsockopt(fd_, SOL_SOCKET, SO_REUSEPORT, &yes, sizeof yes);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
        socklen_t len = sizeof a;
        REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
        port_ = ntohs(a.sin_port);
    }
    ~PortReservation() { ::close(fd_); }
    std::uint16_t port() const { return port_; }

  private:
    int fd_ = -1;
    std::uint16_t port_ = 0;
};

TEST_CASE("an unreachable collector: network errors are retried until it listens") {
    PortReservation reserved;  // nothing listens here yet, and nobody else takes the port
    const std::uint16_t port = reserved.port();
    auto s = std::make_unique<Server>(std::vector<std::string>{
        "ANALYTICS_ENDPOINT=http://127.0.0.1:" + std::to_string(port), "ANALYTICS_BATCH_SIZE=5",
        "ANALYTICS_FLUSH_INTERVAL_MS=50", "ANALYTICS_TIMEOUT_MS=1000"});
    const std::string token = s->host->device_token("analytics-net-0001");
    for (int i = 0; i < 5; ++i)
        send_event(*s->host, token, "offline_try");
    REQUIRE(wait_until([&] { return figure(*s->host, "forwarder.failed_requests") >= 2; }));
    CHECK(stats(*s->host)["forwarder"]["last_error"].GetString() != std::string());
    CHECK(figure(*s->host, "forwarder.delivered") == 0);

    Collector collector(port);
    REQUIRE(wait_until([&] { return figure(*s->host, "forwarder.delivered") == 5; }, 60s));
    CHECK(collector.delivered_ids().size() == 5);
    s.reset();  // stops the server while the collector still listens
}

TEST_CASE("shutdown with the collector down gives up within the grace and says what is unsent") {
    Collector collector;
    collector.respond([](std::size_t) { return Collector::Answer{503, ""}; });
    Server s({endpoint_env(collector), "ANALYTICS_BATCH_SIZE=1000",
              "ANALYTICS_FLUSH_INTERVAL_MS=600000", "--shutdown_grace_sec", "2"});
    const std::string token = s.host->device_token("analytics-grace-01");
    for (int i = 0; i < 3; ++i)
        send_event(*s.host, token, "never_delivered");
    REQUIRE(wait_until([&] { return figure(*s.host, "forwarder.buffered") == 3; }));

    CHECK(s.host->process().stop(SIGTERM) == 0);
    const std::string out = s.host->output();
    CHECK(out.find("analytics: shutdown grace over with 3 events unsent") != std::string::npos);
    CHECK(out.find("shutdown handler still running") == std::string::npos);  // it returned in time
    CHECK(!collector.received().empty());  // it did try
    CHECK(collector.delivered_ids().empty());
}
