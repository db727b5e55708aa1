// core/json_read.hpp and the SDK's nk/json_read.hpp under it: the depth limit, its counting,
// UTF-8 validation, and sdk.hpp's own parse using the same code.
#include <doctest/doctest.h>

#include <string>

#include "core/json_read.hpp"
#include "nk/sdk.hpp"

namespace {

std::string arrays(std::size_t depth) {
    return std::string(depth, '[') + std::string(depth, ']');
}

}  // namespace

TEST_CASE("a document at the limit parses; one level deeper is refused and counted") {
    int refused = 0;
    const nk::JsonLimits limits{4, [&refused] { ++refused; }};
    rapidjson::Document doc;
    CHECK(nk::parse_json(R"({"a":{"b":[[]]}})", doc, limits).is_ok());
    CHECK(doc.IsObject());
    CHECK(nk::parse_json(arrays(4), doc, limits).is_ok());
    CHECK(nk::parse_json("17", doc, limits).is_ok());  // a scalar has depth 0
    CHECK(refused == 0);

    const nk::Status s = nk::parse_json(R"({"a":{"b":[[{}]]}})", doc, limits);
    CHECK(s.code() == nk::Code::invalid_argument);
    CHECK(s.message().find("socket.max_json_depth") != std::string::npos);
    CHECK(refused == 1);
    CHECK(doc.IsInt());  // the previous value is kept
    // Depth is nesting, not the count of containers.
    CHECK(nk::parse_json("[[],[],[[],[[]]],{}]", doc, limits).is_ok());
}

TEST_CASE("a million nested arrays are refused without recursion") {
    int refused = 0;
    const nk::JsonLimits limits{nk::json_read::kDefaultMaxDepth, [&refused] { ++refused; }};
    rapidjson::Document doc;
    CHECK_FALSE(nk::parse_json(arrays(1000000), doc, limits).is_ok());
    CHECK_FALSE(nk::parse_json(std::string(1000000, '['), doc, limits).is_ok());  // unclosed
    CHECK(refused == 2);
}

TEST_CASE("malformed JSON and invalid UTF-8 are syntax errors, not counted as depth") {
    int refused = 0;
    const nk::JsonLimits limits{8, [&refused] { ++refused; }};
    rapidjson::Document doc;
    const nk::Status bad = nk::parse_json("{\"a\":", doc, limits);
    CHECK(bad.code() == nk::Code::invalid_argument);
    CHECK(bad.message().rfind("proto: syntax error (offset ", 0) == 0);
    CHECK_FALSE(nk::parse_json("{\"id\":\"\xff\xfe\"}", doc, limits).is_ok());
    CHECK_FALSE(nk::parse_json("{\"id\":\"\xc3\x28\"}", doc, limits).is_ok());
    CHECK_FALSE(nk::parse_json(R"({"id":"\ud800"})", doc, limits).is_ok());  // lone surrogate
    CHECK(nk::parse_json("{\"id\":\"caf\xc3\xa9\"}", doc, limits).is_ok());
    CHECK_FALSE(nk::parse_json("", doc, limits).is_ok());
    CHECK(refused == 0);
}

TEST_CASE("sdk.hpp's parse refuses documents deeper than its fixed limit") {
    const unsigned max = nk::json_read::kDefaultMaxDepth;
    const std::string at_limit =
        "{\"name\":\"e\",\"x\":" + arrays(max - 1) + "}";
    const std::string too_deep = "{\"name\":\"e\",\"x\":" + arrays(max) + "}";
    nk::Event e;
    CHECK(nk::json::parse(nk_str_from(at_limit.data(), at_limit.size()), e));
    CHECK(e.name == "e");
    nk::Event deep;
    CHECK_FALSE(nk::json::parse(nk_str_from(too_deep.data(), too_deep.size()), deep));
    const std::string bomb = arrays(500000);
    CHECK_FALSE(nk::json::parse(nk_str_from(bomb.data(), bomb.size()), deep));
    const std::string bad_utf8 = "{\"name\":\"\xff\"}";
    CHECK_FALSE(nk::json::parse(nk_str_from(bad_utf8.data(), bad_utf8.size()), deep));
}
