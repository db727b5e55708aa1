#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <cctype>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "log/log.hpp"
#include "log/rate_limit.hpp"
#include "support/process.hpp"

namespace {

// Console capture for init(): detaches the default logger before the stream goes away, since
// the logger's sink refers to it.
struct CapturedStream : std::ostringstream {
    CapturedStream() = default;
    CapturedStream(const CapturedStream&) = delete;
    CapturedStream& operator=(const CapturedStream&) = delete;
    ~CapturedStream() override {
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("detached"));
    }
};

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        lines.push_back(line);
    return lines;
}

rapidjson::Document parse_json(const std::string& line) {
    rapidjson::Document doc;
    doc.Parse(line.c_str(), line.size());
    REQUIRE_MESSAGE(!doc.HasParseError(), "not JSON: " << line);
    REQUIRE(doc.IsObject());
    return doc;
}

// Member names of a JSON object, in order.
std::vector<std::string> keys_of(const rapidjson::Document& doc) {
    std::vector<std::string> keys;
    for (const auto& m : doc.GetObject())
        keys.emplace_back(m.name.GetString(), m.name.GetStringLength());
    return keys;
}

std::string str(const rapidjson::Value& v) {
    return {v.GetString(), v.GetStringLength()};
}

// 2026-11-27T18:00:00.123Z
bool is_timestamp(const std::string& s) {
    const std::string shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s.size() != shape.size())
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(s[i])) : s[i] != shape[i]) {
            return false;
        }
    }
    return true;
}

// Splits a text line into its timestamp and the rest (after the space).
std::pair<std::string, std::string> split_text_line(const std::string& line) {
    const auto space = line.find(' ');
    if (space == std::string::npos)
        return {line, ""};
    return {line.substr(0, space), line.substr(space + 1)};
}

}  // namespace

TEST_CASE("json lines have level, ts, msg then fields") {
    CapturedStream out;
    nk::log::init({.level = "debug", .format = "json", .file = ""}, out);
    nk::log::write(spdlog::level::info, "module loaded", {{"module", "quickstart"}, {"n", "3"}});
    spdlog::warn("plain {} line", 42);
    nk::log::flush();

    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 2);
    auto first = parse_json(lines[0]);
    CHECK(keys_of(first) == std::vector<std::string>{"level", "ts", "msg", "module", "n"});
    CHECK(str(first["level"]) == "info");
    CHECK(is_timestamp(str(first["ts"])));
    CHECK(str(first["msg"]) == "module loaded");
    CHECK(str(first["module"]) == "quickstart");
    CHECK(str(first["n"]) == "3");

    auto second = parse_json(lines[1]);
    CHECK(keys_of(second) == std::vector<std::string>{"level", "ts", "msg"});
    CHECK(str(second["level"]) == "warn");
    CHECK(str(second["msg"]) == "plain 42 line");
}

// UTC "YYYY-MM-DDTHH:MM:SS" of now.
std::string utc_seconds_now() {
    const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
    return buf;
}

TEST_CASE("timestamps are the UTC time of the call") {
    CapturedStream out;
    nk::log::init({.level = "info", .format = "json", .file = ""}, out);
    const std::string before = utc_seconds_now();
    spdlog::info("now");
    const std::string after = utc_seconds_now();
    nk::log::flush();
    const auto ts = str(parse_json(lines_of(out.str()).at(0))["ts"]);
    REQUIRE(is_timestamp(ts));
    CHECK(ts.substr(0, 19) >= before);
    CHECK(ts.substr(0, 19) <= after);
}

TEST_CASE("json escaping keeps one valid object per line") {
    CapturedStream out;
    nk::log::init({.level = "info", .format = "json", .file = ""}, out);
    const std::string tricky = std::string("q\"b\\n\nt\tc") + '\x01' + "\x7f" + "é€😀";
    const std::string invalid_utf8 = std::string("a") + '\xff' + "b" + '\xc3';  // stray + truncated
    nk::log::write(spdlog::level::err, tricky, {{"k\"ey", tricky}, {"bad", invalid_utf8}});
    nk::log::flush();

    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].find('\t') == std::string::npos);
    auto doc = parse_json(lines[0]);
    CHECK(str(doc["level"]) == "error");
    CHECK(str(doc["msg"]) == tricky);
    CHECK(str(doc["k\"ey"]) == tricky);
    CHECK(str(doc["bad"]) ==
          "a\xef\xbf\xbd"
          "b\xef\xbf\xbd");  // U+FFFD for each bad byte
    CHECK(lines[0].find("\\u0001") != std::string::npos);
}

TEST_CASE("text lines: timestamp, level, message, key=value fields") {
    CapturedStream out;
    nk::log::init({.level = "info", .format = "text", .file = ""}, out);
    nk::log::write(spdlog::level::info, "Runtime event queue processor started",
                   {{"size", "65536"},
                    {"workers", "8"},
                    {"note", "two words"},
                    {"empty", ""},
                    {"quote", "a\"b"},
                    {"eq", "a=b"},
                    {"nl", "x\ny"}});
    spdlog::error("failed: {}", "boom");
    nk::log::flush();

    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 2);
    const auto [ts1, rest1] = split_text_line(lines[0]);
    CHECK(is_timestamp(ts1));
    CHECK(rest1 ==
          "info Runtime event queue processor started size=65536 workers=8 note=\"two words\" "
          "empty=\"\" quote=\"a\\\"b\" eq=\"a=b\" nl=\"x\\ny\"");
    const auto [ts2, rest2] = split_text_line(lines[1]);
    CHECK(is_timestamp(ts2));
    CHECK(rest2 == "error failed: boom");
}

TEST_CASE("text message with a newline stays on one line") {
    CapturedStream out;
    nk::log::init({.level = "info", .format = "text", .file = ""}, out);
    spdlog::info("line one\nline two");
    nk::log::flush();
    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].ends_with(" info line one\\nline two"));
}

TEST_CASE("text lines escape control bytes from client data in the message, keys and values") {
    CapturedStream out;
    nk::log::init({.level = "info", .format = "text", .file = ""}, out);
    // An ANSI sequence that would recolour or clear a terminal, a BEL, a tab and a DEL.
    nk::log::write(spdlog::level::warn, "user \x1b[2Jname\a\tx\x7f",
                   {{"device\x1b", "id\x1b]0;title\x07"}});
    nk::log::flush();
    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 1);
    for (const char ch : lines[0]) {
        const auto c = static_cast<unsigned char>(ch);
        CHECK_MESSAGE((c >= 0x20 && c != 0x7F), "raw control byte " << int(c) << " in " << lines[0]);
    }
    CHECK(lines[0].find(" warn user \\x1b[2Jname\\x07\\tx\\x7f ") != std::string::npos);
    CHECK(lines[0].ends_with(" device_=\"id\\x1b]0;title\\x07\""));
}

TEST_CASE("RateLimit lets one line per interval through and counts the rest") {
    using namespace std::chrono;
    nk::log::RateLimit limit(seconds(1));
    const auto t0 = nk::log::RateLimit::Clock::time_point{} + hours(1);
    const auto first = limit.allow(t0);
    REQUIRE(first.has_value());
    CHECK(*first == 0);
    for (int i = 0; i < 5; ++i)
        CHECK_FALSE(limit.allow(t0 + milliseconds(100 * i)).has_value());
    CHECK_FALSE(limit.allow(t0 + milliseconds(999)).has_value());
    const auto next = limit.allow(t0 + seconds(1));
    REQUIRE(next.has_value());
    CHECK(*next == 6);  // the six held back since the first
    const auto later = limit.allow(t0 + seconds(5));
    REQUIRE(later.has_value());
    CHECK(*later == 0);
}

TEST_CASE("level filtering follows logger.level") {
    for (const auto& [level, expected] :
         std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"debug", {"debug", "info", "warn", "error"}},
             {"info", {"info", "warn", "error"}},
             {"warn", {"warn", "error"}},
             {"error", {"error"}}}) {
        CAPTURE(level);
        CapturedStream out;
        nk::log::init({.level = level, .format = "json", .file = ""}, out);
        spdlog::trace("t");
        spdlog::debug("d");
        nk::log::write(spdlog::level::info, "i", {{"k", "v"}});
        spdlog::warn("w");
        nk::log::write(spdlog::level::err, "e", {});
        nk::log::flush();
        std::vector<std::string> got;
        for (const auto& line : lines_of(out.str()))
            got.push_back(str(parse_json(line)["level"]));
        CHECK(got == expected);
    }
}

TEST_CASE("init rejects bad level and format") {
    CapturedStream out;
    CHECK_THROWS_AS(nk::log::init({.level = "verbose", .format = "text", .file = ""}, out),
                    std::invalid_argument);
    CHECK_THROWS_AS(nk::log::init({.level = "info", .format = "xml", .file = ""}, out),
                    std::invalid_argument);
    CHECK(nk::log::parse_level("warn") == spdlog::level::warn);
    CHECK(!nk::log::parse_level("warning"));
}

TEST_CASE("logger.file receives the same lines as the console") {
    nk::test::TempDir dir;
    const auto file = (dir / "nk.log").string();
    CapturedStream out;
    nk::log::init({.level = "info", .format = "json", .file = file}, out);
    nk::log::write(spdlog::level::info, "to both", {{"module", "m"}});
    nk::log::flush();
    std::ifstream in(file);
    std::stringstream contents;
    contents << in.rdbuf();
    CHECK(contents.str() == out.str());
    auto doc = parse_json(lines_of(contents.str()).at(0));
    CHECK(str(doc["module"]) == "m");

    CapturedStream again;
    // A regular file where a directory should be: the log file cannot be created.
    const auto blocked = (dir / "nk.log" / "inner.log").string();
    CHECK_THROWS_AS(nk::log::init({.level = "info", .format = "json", .file = blocked}, again),
                    std::runtime_error);
}

TEST_CASE("concurrent writers produce whole lines with their own fields") {
    CapturedStream out;
    nk::log::init({.level = "info", .format = "json", .file = ""}, out);
    constexpr int threads = 4;
    constexpr int per_thread = 200;
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([t] {
            for (int i = 0; i < per_thread; ++i) {
                if (i % 2 == 0) {
                    nk::log::write(spdlog::level::info, "event",
                                   {{"thread", std::to_string(t)}, {"i", std::to_string(i)}});
                } else {
                    spdlog::info("plain {} {}", t, i);
                }
            }
        });
    }
    for (auto& w : workers)
        w.join();
    nk::log::flush();

    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == threads * per_thread);
    int with_fields = 0;
    for (const auto& line : lines) {
        auto doc = parse_json(line);
        if (str(doc["msg"]) == "event") {
            ++with_fields;
            CHECK(doc.HasMember("thread"));
            CHECK(doc.HasMember("i"));
        } else {
            CHECK(!doc.HasMember("thread"));
        }
    }
    CHECK(with_fields == threads * per_thread / 2);
}
