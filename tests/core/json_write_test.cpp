#include <doctest/doctest.h>

#include <map>
#include <string>

#include "core/json_write.hpp"
#include "store/account_json.hpp"

TEST_CASE("JsonObjectWriter: commas between members, escaping, empty strings left out") {
    std::string out;
    nk::JsonObjectWriter o(out);
    o.string_if_set("skipped", "");
    o.string("a", "x\"y\n");
    o.string_if_set("b", "2");
    nk::append_json_string_map(o.key("m"), {{"k\"", "v"}, {"a", ""}});
    o.key("n") += "7";
    o.close();
    CHECK(out == R"({"a":"x\"y\n","b":"2","m":{"a":"","k\"":"v"},"n":7})");

    std::string empty;
    nk::JsonObjectWriter e(empty);
    e.close();
    CHECK(empty == "{}");
    std::string map;
    nk::append_json_string_map(map, {});
    CHECK(map == "{}");
}

TEST_CASE("account_json: Nakama's shape, zero values left out") {
    nk::store::Account a;
    a.id = "u1";
    a.username = "alice";
    a.metadata = R"({"k":1})";
    a.create_time = 86400;
    a.wallet = "{}";
    a.devices = {"d1", "d\"2"};
    a.custom_id = "c";
    CHECK(nk::store::account_json(a) ==
          R"({"user":{"id":"u1","username":"alice","metadata":"{\"k\":1}",)"
          R"("create_time":"1970-01-02T00:00:00Z"},"wallet":"{}",)"
          R"("devices":[{"id":"d1"},{"id":"d\"2"}],"custom_id":"c"})");
    nk::store::Account none;
    CHECK(nk::store::account_json(none) == R"({"user":{"metadata":"{}"},"wallet":"{}"})");
}
