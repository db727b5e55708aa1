#include <doctest/doctest.h>
#include <rapidjson/document.h>

#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "log/log.hpp"

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
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
    for (const auto& m : doc.GetObject()) keys.emplace_back(m.name.GetString(), m.name.GetStringLength());
    return keys;
}

std::string str(const rapidjson::Value& v) { return {v.GetString(), v.GetStringLength()}; }

const std::regex timestamp_re(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z)");

struct TempDir {
    std::filesystem::path path;
    TempDir() {
        path = std::filesystem::temp_directory_path() /
               ("nk_test_log_" + std::to_string(::getpid()) + "_" +
                std::to_string(reinterpret_cast<std::uintptr_t>(this)));
        std::filesystem::create_directories(path);
    }
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path, ec);
    }
};

}  // namespace

TEST_CASE("json lines have level, ts, msg then fields") {
    std::ostringstream out;
    nk::log::init({.level = "debug", .format = "json", .file = ""}, out);
    nk::log::write(spdlog::level::info, "module loaded", {{"module", "quickstart"}, {"n", "3"}});
    spdlog::warn("plain {} line", 42);
    nk::log::flush();

    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 2);
    auto first = parse_json(lines[0]);
    CHECK(keys_of(first) == std::vector<std::string>{"level", "ts", "msg", "module", "n"});
    CHECK(str(first["level"]) == "info");
    CHECK(std::regex_match(str(first["ts"]), timestamp_re));
    CHECK(str(first["msg"]) == "module loaded");
    CHECK(str(first["module"]) == "quickstart");
    CHECK(str(first["n"]) == "3");

    auto second = parse_json(lines[1]);
    CHECK(keys_of(second) == std::vector<std::string>{"level", "ts", "msg"});
    CHECK(str(second["level"]) == "warn");
    CHECK(str(second["msg"]) == "plain 42 line");
}

TEST_CASE("json escaping keeps one valid object per line") {
    std::ostringstream out;
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
    CHECK(str(doc["bad"]) == "a\xef\xbf\xbd" "b\xef\xbf\xbd");  // U+FFFD for each bad byte
    CHECK(lines[0].find("\\u0001") != std::string::npos);
}

TEST_CASE("text lines: timestamp, level, message, key=value fields") {
    std::ostringstream out;
    nk::log::init({.level = "info", .format = "text", .file = ""}, out);
    nk::log::write(spdlog::level::info, "Runtime event queue processor started",
                   {{"size", "65536"}, {"workers", "8"}, {"note", "two words"}, {"empty", ""},
                    {"quote", "a\"b"}, {"eq", "a=b"}, {"nl", "x\ny"}});
    spdlog::error("failed: {}", "boom");
    nk::log::flush();

    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 2);
    const std::regex first_re(
        R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z info Runtime event queue processor started)"
        R"( size=65536 workers=8 note="two words" empty="" quote="a\\"b" eq="a=b" nl="x\\ny")");
    CHECK_MESSAGE(std::regex_match(lines[0], first_re), lines[0]);
    const std::regex second_re(R"(\S+Z error failed: boom)");
    CHECK_MESSAGE(std::regex_match(lines[1], second_re), lines[1]);
}

TEST_CASE("text message with a newline stays on one line") {
    std::ostringstream out;
    nk::log::init({.level = "info", .format = "text", .file = ""}, out);
    spdlog::info("line one\nline two");
    nk::log::flush();
    const auto lines = lines_of(out.str());
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].ends_with(" info line one\\nline two"));
}

TEST_CASE("level filtering follows logger.level") {
    for (const auto& [level, expected] :
         std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"debug", {"debug", "info", "warn", "error"}},
             {"info", {"info", "warn", "error"}},
             {"warn", {"warn", "error"}},
             {"error", {"error"}}}) {
        CAPTURE(level);
        std::ostringstream out;
        nk::log::init({.level = level, .format = "json", .file = ""}, out);
        spdlog::trace("t");
        spdlog::debug("d");
        nk::log::write(spdlog::level::info, "i", {{"k", "v"}});
        spdlog::warn("w");
        nk::log::write(spdlog::level::err, "e", {});
        nk::log::flush();
        std::vector<std::string> got;
        for (const auto& line : lines_of(out.str())) got.push_back(str(parse_json(line)["level"]));
        CHECK(got == expected);
    }
}

TEST_CASE("init rejects bad level and format") {
    std::ostringstream out;
    CHECK_THROWS_AS(nk::log::init({.level = "verbose", .format = "text", .file = ""}, out),
                    std::invalid_argument);
    CHECK_THROWS_AS(nk::log::init({.level = "info", .format = "xml", .file = ""}, out),
                    std::invalid_argument);
    CHECK(nk::log::parse_level("warn") == spdlog::level::warn);
    CHECK(!nk::log::parse_level("warning"));
}

TEST_CASE("logger.file receives the same lines as the console") {
    TempDir dir;
    const auto file = (dir.path / "nk.log").string();
    std::ostringstream out;
    nk::log::init({.level = "info", .format = "json", .file = file}, out);
    nk::log::write(spdlog::level::info, "to both", {{"module", "m"}});
    nk::log::flush();
    std::ifstream in(file);
    std::stringstream contents;
    contents << in.rdbuf();
    CHECK(contents.str() == out.str());
    auto doc = parse_json(lines_of(contents.str()).at(0));
    CHECK(str(doc["module"]) == "m");

    std::ostringstream again;
    // A regular file where a directory should be: the log file cannot be created.
    const auto blocked = (dir.path / "nk.log" / "inner.log").string();
    CHECK_THROWS_AS(nk::log::init({.level = "info", .format = "json", .file = blocked}, again),
                    std::runtime_error);
}

TEST_CASE("concurrent writers produce whole lines with their own fields") {
    std::ostringstream out;
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
    for (auto& w : workers) w.join();
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
