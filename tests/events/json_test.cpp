#include <doctest/doctest.h>

#include <string>

#include "events/json.hpp"

using namespace nk::events;

namespace {

nk::Status decode(std::string body, Event& out, const Options& limits = {},
                  const nk::JsonLimits& json = {}) {
    return decode_event_json(body, limits, json, out);
}

}  // namespace

TEST_CASE("decodes name, properties in order, timestamp and external") {
    Event e;
    const auto s = decode(R"({"name":"match_won","properties":{"b":"2","a":"1","esc":"q\"\u00e9"},)"
                          R"("timestamp":"2023-11-14T22:13:20.5Z","external":false})",
                          e);
    REQUIRE(s.is_ok());
    CHECK(e.name == "match_won");
    REQUIRE(e.properties.size() == 3);
    CHECK(e.properties[0] == std::pair<std::string, std::string>{"b", "2"});
    CHECK(e.properties[1] == std::pair<std::string, std::string>{"a", "1"});
    CHECK(e.properties[2].second == "q\"\xc3\xa9");
    CHECK(e.has_timestamp);
    CHECK(e.timestamp.seconds == 1700000000);
    CHECK(e.timestamp.nanos == 500000000);
    CHECK_FALSE(e.external);
}

TEST_CASE("empty body, empty object and nulls give an empty event") {
    for (const char* body :
         {"", "  \n", "{}",
          R"({"name":null,"properties":null,"timestamp":null,"external":null})"}) {
        Event e;
        CHECK(decode(body, e).is_ok());
        CHECK(e.name.empty());
        CHECK(e.properties.empty());
        CHECK_FALSE(e.has_timestamp);
    }
}

TEST_CASE("unknown members are ignored whatever their value") {
    Event e;
    const auto s = decode(
        R"({"x":1,"y":{"name":"no","properties":[1,{"a":2}]},"name":"ok","z":[["q"]],"w":null,"v":true,"u":"s"})",
        e);
    REQUIRE(s.is_ok());
    CHECK(e.name == "ok");
    CHECK(e.properties.empty());
}

TEST_CASE("nesting deeper than the JSON limit is refused, skipped values included") {
    int refused = 0;
    const nk::JsonLimits json{3, [&refused] { ++refused; }};
    Event e;
    CHECK(decode(R"({"name":"a","x":[[]]})", e, {}, json).is_ok());
    CHECK(decode(R"({"name":"a","properties":{"k":"v"}})", e, {}, json).is_ok());
    CHECK(refused == 0);
    const auto s = decode(R"({"name":"a","x":[[[]]]})", e, {}, json);
    CHECK(s.code() == nk::Code::invalid_argument);
    CHECK(s.message().find("socket.max_json_depth") != std::string::npos);
    // 60,000 levels under an unknown member overflowed the recursive parser.
    const std::string deep = "{\"x\":" + std::string(60000, '[') + std::string(60000, ']') + "}";
    CHECK_FALSE(decode(deep, e).is_ok());
    CHECK(refused == 1);
    CHECK_FALSE(decode("{\"name\":\"\xff\"}", e).is_ok());  // invalid UTF-8
}

TEST_CASE("wrong types, malformed JSON and bad timestamps are invalid arguments") {
    for (const char* body : {R"({"properties":{"a":1}})",
                             R"({"properties":{"a":null}})",
                             R"({"properties":{"a":{"b":"c"}}})",
                             R"({"properties":{"a":true}})",
                             R"({"properties":["a"]})",
                             R"({"properties":"a"})",
                             R"({"timestamp":1700000000})",
                             R"({"timestamp":"2023-11-14"})",
                             R"({"timestamp":"2023-02-29T00:00:00Z"})",
                             R"({"timestamp":"2023-11-14T22:13:20"})",
                             R"({"name":1})",
                             R"({"name":{}})",
                             R"({"external":"yes"})",
                             R"({"name":"a","name":"b"})",
                             R"({"properties":{"a":"1","a":"2"}})",
                             "{",
                             R"({"name":"a"} x)",
                             "[]",
                             "null",
                             "12",
                             "\"s\"",
                             "{\"name\":\"\xff\"}"}) {
        Event e;
        const auto s = decode(body, e);
        CHECK_MESSAGE(s.code() == nk::Code::invalid_argument, body);
        CHECK_MESSAGE(!s.message().empty(), body);
    }
}

TEST_CASE("limits are enforced with a message naming them") {
    Options limits;
    limits.max_properties = 2;
    limits.max_name_bytes = 4;
    limits.max_key_bytes = 3;
    limits.max_value_bytes = 5;
    Event e;
    auto s = decode(R"({"properties":{"a":"1","b":"2","c":"3"}})", e, limits);
    CHECK(s.code() == nk::Code::invalid_argument);
    CHECK(s.message() == "Event has too many properties (max 2).");
    e = {};
    s = decode(R"({"name":"12345"})", e, limits);
    CHECK(s.message() == "Event name is too long (max 4 bytes).");
    e = {};
    s = decode(R"({"properties":{"abcd":"1"}})", e, limits);
    CHECK(s.message() == "Event property key is too long (max 3 bytes).");
    e = {};
    s = decode(R"({"properties":{"abc":"123456"}})", e, limits);
    CHECK(s.message() == "Event property value is too long (max 5 bytes).");
    e = {};
    CHECK(decode(R"({"name":"1234","properties":{"abc":"12345","d":""}})", e, limits).is_ok());
}

TEST_CASE("RFC 3339 parsing and formatting") {
    auto ts = parse_rfc3339("1970-01-01T00:00:00Z");
    REQUIRE(ts);
    CHECK(ts->seconds == 0);
    ts = parse_rfc3339("2023-11-15T00:13:20+02:00");
    REQUIRE(ts);
    CHECK(ts->seconds == 1700000000);
    ts = parse_rfc3339("0001-01-01T00:00:00Z");
    REQUIRE(ts);
    CHECK(ts->seconds == -62135596800);
    CHECK_FALSE(parse_rfc3339("0000-12-31T23:59:59Z"));
    CHECK_FALSE(parse_rfc3339("2023-11-14T22:13:20.1234567891Z"));
    CHECK_FALSE(parse_rfc3339("2023-11-14t22:13:20Z"));
    CHECK_FALSE(parse_rfc3339("2023-11-14T24:00:00Z"));
    CHECK(format_rfc3339({1700000000, 0}) == "2023-11-14T22:13:20Z");
    CHECK(format_rfc3339({1700000000, 500000000}) == "2023-11-14T22:13:20.500Z");
    CHECK(format_rfc3339({1700000000, 1000}) == "2023-11-14T22:13:20.000001Z");
    CHECK(format_rfc3339({-1, 1}) == "1969-12-31T23:59:59.000000001Z");
}

TEST_CASE("encode round-trips through decode") {
    Event e;
    e.name = "n\"1";
    e.properties = {{"k", "v"}, {"a", ""}};
    e.has_timestamp = true;
    e.timestamp = {1700000000, 250000000};
    e.external = true;
    const std::string json = encode_event_json(e);
    CHECK(
        json ==
        R"({"name":"n\"1","properties":{"k":"v","a":""},"timestamp":"2023-11-14T22:13:20.250Z","external":true})");
    Event back;
    REQUIRE(decode(json, back).is_ok());
    CHECK(back.name == e.name);
    CHECK(back.properties == e.properties);
    CHECK(back.timestamp.nanos == e.timestamp.nanos);
    CHECK(back.external);
    CHECK(encode_event_json(Event{}) == "{}");
}

TEST_CASE("a raw NUL byte is refused, and a body ending inside a UTF-8 sequence is never read past its end") {
    Event e;
    using namespace std::string_literals;
    const auto nul = decode("{\"name\":\"a\"}\0{\"name\":\"b\"}"s, e);
    CHECK(nul.code() == nk::Code::invalid_argument);
    CHECK(nul.message() == "proto: syntax error (offset 12): Invalid value.");
    // Found by fuzzing: a string whose last byte is a 3-byte UTF-8 lead (0xED) made the
    // validating in-situ reader read two bytes beyond the body (ASan: heap-buffer-overflow).
    const std::string cut = "\"vnanae:l" + std::string(70, 'n') + "\xed";
    CHECK_FALSE(decode(cut, e).is_ok());
    CHECK_FALSE(decode("{\"name\":\"\xed", e).is_ok());
    CHECK_FALSE(decode("{\"name\":\"\xf0\x9f", e).is_ok());
}
