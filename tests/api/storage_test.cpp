// Storage objects over real HTTP (loopback) on a real SQLite file: Nakama's paths, shapes,
// defaults, error messages and permission rules (reference §9c), cursors, and the storage hooks
// of a real plugin loaded by the real runtime.
#include <doctest/doctest.h>

#include <httplib.h>

#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "account_test_fixture.hpp"
#include "runtime/runtime.hpp"

using namespace nk;
using namespace nk::test;

namespace {

namespace fs = std::filesystem;
const char* kJson = "application/json";

std::string ack_version(const httplib::Result& r) {
    REQUIRE(r);
    REQUIRE(r->status == 200);
    auto d = parse(r->body);
    REQUIRE(d.HasMember("acks"));
    return d["acks"][0]["version"].GetString();
}

std::set<std::string> keys_of(const httplib::Result& r) {
    REQUIRE(r);
    REQUIRE(r->status == 200);
    auto d = parse(r->body);
    std::set<std::string> out;
    if (d.HasMember("objects"))
        for (const auto& o : d["objects"].GetArray())
            out.insert(std::string(o["key"].GetString()) + "@" + o["user_id"].GetString());
    return out;
}

}  // namespace

TEST_CASE("storage REST: write, read, list and delete with Nakama's shapes") {
    AccountServer s;
    auto c = s.client();
    const Session alice = authenticate_device(c, "storage-alice-0001");
    const auto h = bearer(alice.token);

    auto r = c.Put("/v2/storage", h,
                   R"({"objects":[{"collection":"saves","key":"slot1","value":"{}"}]})", kJson);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == R"({"acks":[{"collection":"saves","key":"slot1","version":"99914b932bd37a50b983c5e7c90ae93b","user_id":")" +
                         alice.user_id + R"("}]})");

    r = c.Post("/v2/storage", h,
               R"({"object_ids":[{"collection":"saves","key":"slot1","user_id":")" +
                   alice.user_id + R"("},{"collection":"saves","key":"missing","user_id":")" +
                   alice.user_id + R"("}]})",
               kJson);
    REQUIRE(r);
    CHECK(r->status == 200);
    auto d = parse(r->body);
    REQUIRE(d["objects"].Size() == 1);  // the missing one is simply absent
    const auto& o = d["objects"][0];
    CHECK(std::string(o["value"].GetString()) == "{}");
    CHECK(std::string(o["version"].GetString()) == "99914b932bd37a50b983c5e7c90ae93b");
    CHECK(o["permission_read"].GetInt() == 1);  // client defaults: owner, owner
    CHECK(o["permission_write"].GetInt() == 1);
    CHECK(std::string(o["create_time"].GetString()).back() == 'Z');
    // Nothing found: {}.
    r = c.Post("/v2/storage", h,
               R"({"object_ids":[{"collection":"none","key":"none","user_id":")" + alice.user_id +
                   R"("}]})",
               kJson);
    REQUIRE(r);
    CHECK(r->body == "{}");

    // Conditional writes.
    const std::string v1 = ack_version(c.Put(
        "/v2/storage", h,
        R"({"objects":[{"collection":"saves","key":"slot1","value":"{\"hp\":3}","version":"99914b932bd37a50b983c5e7c90ae93b"}]})",
        kJson));
    check_error(c.Put("/v2/storage", h,
                      R"({"objects":[{"collection":"saves","key":"slot1","value":"{}","version":"*"}]})",
                      kJson),
                400, 3, "Storage write rejected - version check failed.");
    check_error(c.Put("/v2/storage", h,
                      R"({"objects":[{"collection":"saves","key":"slot1","value":"{}","version":"99914b932bd37a50b983c5e7c90ae93b"}]})",
                      kJson),
                400, 3, "Storage write rejected - version check failed.");

    // Delete with a wrong version, then with the right one; again: not found.
    check_error(c.Put("/v2/storage/delete", h,
                      R"({"object_ids":[{"collection":"saves","key":"slot1","version":"0000"}]})",
                      kJson),
                400, 3,
                "Storage delete rejected - not found, version check failed, or permission denied.");
    r = c.Put("/v2/storage/delete", h,
              R"({"object_ids":[{"collection":"saves","key":"slot1","version":")" + v1 + R"("}]})",
              kJson);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "{}");
    check_error(c.Put("/v2/storage/delete", h,
                      R"({"object_ids":[{"collection":"saves","key":"slot1"}]})", kJson),
                400, 3,
                "Storage delete rejected - not found, version check failed, or permission denied.");

    // A new account's wallet and metadata.
    r = c.Get("/v2/account", h);
    REQUIRE(r);
    d = parse(r->body);
    CHECK(std::string(d["wallet"].GetString()) == "{}");
    CHECK(std::string(d["user"]["metadata"].GetString()) == "{}");
    // No session: 401.
    r = c.Put("/v2/storage", R"({"objects":[]})", kJson);
    REQUIRE(r);
    CHECK(r->status == 401);
}

TEST_CASE("storage REST: every validation message") {
    AccountServer s;
    auto c = s.client();
    const auto h = bearer(authenticate_device(c, "storage-valid-0001").token);
    auto put = [&](const std::string& object) {
        return c.Put("/v2/storage", h, "{\"objects\":[" + object + "]}", kJson);
    };
    check_error(put(R"({"collection":"c","key":"k","value":"[1]"})"), 400, 3,
                "Value must be a JSON object.");
    check_error(put(R"({"collection":"c","key":"k","value":"{not json"})"), 400, 3,
                "Value must be a JSON object.");
    check_error(put(R"({"collection":"","key":"k","value":"{}"})"), 400, 3,
                "Invalid collection or key value supplied. They must be set.");
    check_error(put(R"({"collection":"c","key":"","value":"{}"})"), 400, 3,
                "Invalid collection or key value supplied. They must be set.");
    // A NUL byte (decoded from \u0000 or percent-decoded from %00), on both engines.
    const std::string nul = "Invalid collection or key value supplied. They must not contain NUL "
                            "characters.";
    check_error(put(R"({"collection":"c\u0000","key":"k","value":"{}"})"), 400, 3, nul);
    check_error(c.Post("/v2/storage", h, R"({"object_ids":[{"collection":"c","key":"k\u0000"}]})",
                       kJson),
                400, 3, nul);
    check_error(c.Put("/v2/storage/delete", h,
                      R"({"object_ids":[{"collection":"c\u0000","key":"k"}]})", kJson),
                400, 3, nul);
    check_error(c.Get("/v2/storage/c%00x", h), 400, 3, nul);
    check_error(put(R"({"collection":"c","key":"k","value":"{}","permission_read":3})"), 400, 3,
                "Invalid Read permission supplied. It must be either 0, 1 or 2.");
    check_error(put(R"({"collection":"c","key":"k","value":"{}","permission_write":2})"), 400, 3,
                "Invalid Write permission supplied. It must be either 0 or 1.");
    // Written with permission_write 0: accepted, then only the server may change it.
    auto r = put(R"({"collection":"c","key":"locked","value":"{}","permission_write":0})");
    REQUIRE(r);
    CHECK(r->status == 200);
    check_error(put(R"({"collection":"c","key":"locked","value":"{\"a\":1}"})"), 400, 3,
                "Storage write rejected - permission denied.");
    check_error(c.Get("/v2/storage/c?limit=101", h), 400, 3,
                "Invalid limit - limit must be between 1 and 100.");
    check_error(c.Get("/v2/storage/c?user_id=not-a-uuid", h), 400, 3,
                "Invalid user ID - make sure user ID is a valid UUID.");
    // An empty batch is a no-op, as in Nakama.
    r = c.Put("/v2/storage", h, R"({"objects":[]})", kJson);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "{}");
    // Nesting beyond socket.max_json_depth is refused before anything is stored.
    std::string deep;
    for (int i = 0; i < 100; ++i)
        deep += "[";
    r = c.Put("/v2/storage", h, "{\"objects\":" + deep, kJson);
    REQUIRE(r);
    CHECK(r->status == 400);
}

TEST_CASE("storage REST: permissions between users, listing and cursors") {
    AccountServer s;
    auto c = s.client();
    const Session owner = authenticate_device(c, "storage-owner-0001");
    const Session other = authenticate_device(c, "storage-other-0001");
    auto r = c.Put(
        "/v2/storage", bearer(owner.token),
        R"({"objects":[{"collection":"deck","key":"a","value":"{}","permission_read":1},{"collection":"deck","key":"b","value":"{}","permission_read":2},{"collection":"deck","key":"c","value":"{}","permission_read":2},{"collection":"deck","key":"d","value":"{}","permission_read":0}]})",
        kJson);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    r = c.Put("/v2/storage", bearer(other.token),
              R"({"objects":[{"collection":"deck","key":"b","value":"{}","permission_read":2}]})",
              kJson);
    REQUIRE(r->status == 200);
    // Reading two of the owner's ids as another user: only the public one.
    r = c.Post("/v2/storage", bearer(other.token),
               R"({"object_ids":[{"collection":"deck","key":"a","user_id":")" + owner.user_id +
                   R"("},{"collection":"deck","key":"b","user_id":")" + owner.user_id + R"("}]})",
               kJson);
    CHECK(keys_of(r) == std::set<std::string>{"b@" + owner.user_id});
    // Listing the owner's collection: the owner sees a, b, c (not d: read 0); the other user b, c.
    CHECK(keys_of(c.Get(("/v2/storage/deck/" + owner.user_id + "?limit=100").c_str(),
                        bearer(owner.token))) ==
          std::set<std::string>{"a@" + owner.user_id, "b@" + owner.user_id,
                                "c@" + owner.user_id});
    CHECK(keys_of(c.Get(("/v2/storage/deck?user_id=" + owner.user_id + "&limit=100").c_str(),
                        bearer(other.token))) ==
          std::set<std::string>{"b@" + owner.user_id, "c@" + owner.user_id});
    // Without a user: public objects of every user.
    CHECK(keys_of(c.Get("/v2/storage/deck?limit=100", bearer(other.token))) ==
          std::set<std::string>{"b@" + owner.user_id, "b@" + other.user_id,
                                "c@" + owner.user_id});
    // The default limit is 1 (Nakama's); pages follow the cursor, in key then user order.
    std::vector<std::string> seen;
    std::string cursor;
    for (int page = 0; page < 10; ++page) {
        std::string path = "/v2/storage/deck?limit=1";
        if (!cursor.empty())
            path += "&cursor=" + cursor;
        r = c.Get(path.c_str(), bearer(other.token));
        REQUIRE(r);
        REQUIRE(r->status == 200);
        auto d = parse(r->body);
        if (d.HasMember("objects"))
            seen.push_back(d["objects"][0]["key"].GetString());
        if (!d.HasMember("cursor"))
            break;
        cursor = d["cursor"].GetString();
    }
    CHECK(seen == std::vector<std::string>{"b", "b", "c"});
    // A client's writes and deletes touch only its own objects.
    r = c.Put("/v2/storage/delete", bearer(other.token),
              R"({"object_ids":[{"collection":"deck","key":"c","user_id":")" + owner.user_id +
                  R"("}]})",
              kJson);
    REQUIRE(r);
    CHECK(r->status == 400);  // other has no "c"
    CHECK(keys_of(c.Get(("/v2/storage/deck/" + owner.user_id + "?limit=100").c_str(),
                        bearer(owner.token)))
              .count("c@" + owner.user_id) == 1);
}

TEST_CASE("storage REST: before- and after-hooks of a real plugin") {
    auto dir = std::make_shared<TempDir>();
    const auto modules = *dir / "modules";
    fs::create_directories(modules);
    fs::copy_file(build_dir() / "fixtures/storage_hooks/storage_hooks.so",
                  modules / "storage_hooks.so");
    runtime::Options ro;
    ro.path = modules.string();
    ro.data_dir = (*dir / "data").string();
    runtime::Runtime rt(ro, runtime::Dependencies{});
    REQUIRE(rt.load_all().is_ok());
    AccountServerConfig config;
    config.runtime = &rt;
    AccountServer s(dir, config);
    auto c = s.client();
    const Session u = authenticate_device(c, "storage-hooks-0001");
    check_error(c.Put("/v2/storage", bearer(u.token),
                      R"({"objects":[{"collection":"forbidden","key":"k","value":"{}"}]})", kJson),
                403, 7, "writes to forbidden are closed");
    auto r = c.Put("/v2/storage", bearer(u.token),
                   R"({"objects":[{"collection":"open","key":"k","value":"{}"}]})", kJson);
    REQUIRE(r);
    CHECK(r->status == 200);
    for (int i = 0; i < 3; ++i) {
        r = c.Post("/v2/storage", bearer(u.token),
                   R"({"object_ids":[{"collection":"open","key":"k","user_id":")" + u.user_id +
                       R"("}]})",
                   kJson);
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    std::string out;
    REQUIRE(rt.rpc("storage_hook_reads", RequestContext{}, "", out).is_ok());
    CHECK(out == "3");
}
