// The event archive in the real server process: a full disk is counted and logged (rate-limited)
// while the server keeps serving; and every producer's events (POST /v2/event, realtime
// session_start/session_end, events plugins emit) reach handlers with a unique, time-ordered id
// and their receive time.
#include <doctest/doctest.h>

#include <rapidjson/document.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <csignal>
#include <ctime>
#include <filesystem>
#include <map>
#include <regex>
#include <set>

#include "security_support.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// A runtime.path holding the event archive and, optionally, the events_good fixture (which
// re-emits "ping" as "pong" and session events as "saw_session_*" through nk.Event).
fs::path modules_dir(const TempDir& dir, bool with_emitter) {
    const fs::path modules = dir.path() / "modules-under-test";
    fs::create_directories(modules);
    fs::copy_file(build_dir() / "plugins" / "event_archive.so", modules / "event_archive.so");
    if (with_emitter)
        fs::copy_file(build_dir() / "fixtures" / "events_good" / "events_good.so",
                      modules / "events_good.so");
    return modules;
}

int post_event(const Nkhost& server, const std::string& token, const std::string& name) {
    auto c = server.client();
    c->set_bearer_token_auth(token);
    auto res = c->Post("/v2/event", "{\"name\":\"" + name + "\",\"properties\":{\"k\":\"v\"}}",
                       "application/json");
    return res ? res->status : 0;
}

std::size_t count(const std::string& text, const std::string& needle) {
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    return n;
}

// Opens a realtime socket, checks it answers, closes it (session_start, then session_end).
void open_and_close_socket(std::uint16_t port, const std::string& token) {
    namespace asio = boost::asio;
    namespace websocket = boost::beast::websocket;
    asio::io_context io;
    websocket::stream<asio::ip::tcp::socket> ws(io);
    asio::ip::tcp::resolver resolver(io);
    asio::connect(ws.next_layer(), resolver.resolve("127.0.0.1", std::to_string(port)));
    timeval tv{20, 0};
    ::setsockopt(ws.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ws.handshake("127.0.0.1", "/ws?format=json&token=" + token);
    ws.write(asio::buffer(std::string("{\"cid\":\"1\",\"ping\":{}}")));
    boost::beast::flat_buffer buf;
    ws.read(buf);
    CHECK(boost::beast::buffers_to_string(buf.data()).find("pong") != std::string::npos);
    ws.close(websocket::close_code::normal);
}

struct Line {
    std::string id, name, received_at;
};

// The archive's lines by event name (the last line of each name).
std::map<std::string, Line> lines_by_name(const fs::path& file, std::size_t& total) {
    std::map<std::string, Line> out;
    total = 0;
    std::error_code ec;
    if (!fs::exists(file, ec))
        return out;
    const std::string text = read_file(file);
    std::string::size_type start = 0;
    while (start < text.size()) {
        const auto end = text.find('\n', start);
        if (end == std::string::npos)
            break;  // an incomplete line would fail the count checks below
        rapidjson::Document d;
        d.Parse(text.data() + start, end - start);
        start = end + 1;
        ++total;
        if (d.HasParseError() || !d.IsObject() || !d["id"].IsString())
            continue;
        out[d["name"].GetString()] = {d["id"].GetString(), d["name"].GetString(),
                                      d["received_at"].GetString()};
    }
    return out;
}

// The unix milliseconds in a UUID v7's first 48 bits, as RFC 3339 with milliseconds.
std::string uuid_v7_instant(const std::string& id) {
    const std::string hex = id.substr(0, 8) + id.substr(9, 4);
    const long long ms = std::stoll(hex, nullptr, 16);
    std::time_t secs = static_cast<std::time_t>(ms / 1000);
    std::tm tm{};
    gmtime_r(&secs, &tm);
    char buf[80];  // room for any int the compiler cannot rule out
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03lldZ", tm.tm_year + 1900,
                  tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ms % 1000);
    return buf;
}

}  // namespace

TEST_CASE(
    "/dev/full: write errors are counted and logged once per 10 s; the server keeps serving") {
    TempDir dir;
    Nkhost server({"--runtime.path", modules_dir(dir, false).string(), "--runtime.env",
                   "EVENT_ARCHIVE_PATH=/dev/full", "--metrics.prefix", "studio"});
    const std::string token = server.device_token("archive-device-0001");
    const std::string errors = "studio_custom_event_archive_write_errors";

    CHECK(post_event(server, token, "first") == 200);
    CHECK(wait_until([&] { return server.metric(errors) >= 1; }, 30s));
    // A second flush with data fails too: counted again, but not logged again within 10 s.
    CHECK(post_event(server, token, "second") == 200);
    CHECK(wait_until([&] { return server.metric(errors) >= 2; }, 30s));
    CHECK(server.metric("studio_custom_event_archive_events_dropped", {"reason=\"write_error\""}) >=
          2);
    CHECK(count(server.output(), "event archive: cannot write to /dev/full") == 1);

    // Still serving: health, events, authentication.
    CHECK(server.client()->Get("/healthcheck")->status == 200);
    CHECK(post_event(server, token, "third") == 200);
    CHECK(server.device_token("archive-device-0002").size() > 20);
    CHECK(server.metric("studio_events_dropped") == 0);
    CHECK(server.metric("studio_events_processed") >= 3);

    // A graceful stop still works (the shutdown handler joins the writer).
    CHECK(server.process().stop(SIGTERM) == 0);
}

TEST_CASE("events from HTTP, realtime sessions and plugins carry unique, time-ordered ids") {
    TempDir dir;
    const fs::path file = dir.path() / "events.jsonl";
    Nkhost server({"--runtime.path", modules_dir(dir, true).string(), "--runtime.env",
                   "EVENT_ARCHIVE_PATH=" + file.string()});
    const std::string token = server.device_token("archive-device-0003");

    CHECK(post_event(server, token, "ping") == 200);  // HTTP; events_good emits "pong"
    open_and_close_socket(server.port(), token);      // session_start, session_end (+ saw_*)
    auto c = server.client();
    auto res = c->Post("/v2/rpc/emit?http_key=defaulthttpkey&unwrap", "from_rpc", "text/plain");
    REQUIRE(res);
    CHECK(res->status == 200);  // an event emitted by a plugin's RPC

    // after_auth: events_good's after-hook of the authentication above emits it.
    const std::vector<std::string> names = {
        "after_auth",        "ping",           "pong",    "session_start", "session_end",
        "saw_session_start", "saw_session_end", "from_rpc"};
    std::map<std::string, Line> lines;
    std::size_t total = 0;
    CHECK(wait_until(
        [&] {
            lines = lines_by_name(file, total);
            for (const auto& n : names)
                if (!lines.count(n))
                    return false;
            return true;
        },
        30s));
    CHECK(total == names.size());

    static const std::regex uuid_v7(
        "^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
    std::set<std::string> ids;
    for (const auto& n : names) {
        CAPTURE(n);
        const Line& l = lines[n];
        CHECK(std::regex_match(l.id, uuid_v7));
        // The id's time is the receive time.
        CHECK(uuid_v7_instant(l.id) == l.received_at);
        ids.insert(l.id);
    }
    CHECK(ids.size() == names.size());
    // What was received later has a larger id (text order is time order).
    CHECK(lines["after_auth"].id < lines["ping"].id);
    CHECK(lines["ping"].id < lines["pong"].id);
    CHECK(lines["session_start"].id < lines["session_end"].id);
    CHECK(lines["session_start"].id < lines["saw_session_start"].id);
    CHECK(lines["session_end"].id < lines["saw_session_end"].id);
    CHECK(lines["ping"].id < lines["session_start"].id);
}
