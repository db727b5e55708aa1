// Account, authenticate and session endpoints over real HTTP.
#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "account_test_fixture.hpp"

using namespace nk;
using namespace nk::test;

namespace {
const char* kJson = "application/json";
}

TEST_CASE("health endpoints") {
    AccountServer srv;
    auto c = srv.client();
    auto root = c.Get("/");
    REQUIRE(root);
    CHECK(root->status == 200);
    CHECK(root->body.empty());
    CHECK(root->get_header_value("Content-Type").rfind("text/plain", 0) == 0);
    auto hc = c.Get("/healthcheck");
    REQUIRE(hc);
    CHECK(hc->status == 200);
    CHECK(hc->body == "{}");
}

TEST_CASE("device authentication creates then finds the account") {
    AccountServer srv;
    auto c = srv.client();
    auto res = c.Post("/v2/account/authenticate/device?create=true&", basic(),
                      R"({"id":"device-id-0001"})", kJson);
    auto first = session_from(res);
    CHECK(first.created);
    CHECK(parse(res->body).MemberCount() == 3);
    auto payload = token_payload(first.token);
    CHECK(payload.HasMember("tid"));
    CHECK(payload.HasMember("iat"));
    CHECK(payload.HasMember("exp"));
    CHECK_FALSE(payload.HasMember("vrs"));
    const std::string username = payload["usn"].GetString();
    CHECK(username.size() == 10);

    auto again_res =
        c.Post("/v2/account/authenticate/device", basic(), R"({"id":"device-id-0001"})", kJson);
    auto again = session_from(again_res);
    CHECK_FALSE(again.created);
    CHECK(parse(again_res->body).MemberCount() == 2);  // "created" omitted when false
    CHECK(again.user_id == first.user_id);
    CHECK(std::string(token_payload(again.token)["usn"].GetString()) == username);

    // Vars travel into the token.
    auto with_vars =
        session_from(c.Post("/v2/account/authenticate/device?username=varsuser&", basic(),
                            R"({"id":"device-id-0002","vars":{"a":"b"}})", kJson));
    auto p = token_payload(with_vars.token);
    CHECK(std::string(p["vrs"]["a"].GetString()) == "b");
    CHECK(std::string(p["usn"].GetString()) == "varsuser");
}

TEST_CASE("server key checks") {
    AccountServer srv;
    auto c = srv.client();
    for (const char* path : {"/v2/account/authenticate/device", "/v2/account/authenticate/custom",
                             "/v2/account/authenticate/email", "/v2/account/session/refresh"}) {
        CAPTURE(path);
        check_error(c.Post(path, httplib::Headers{}, R"({"id":"device-id-0001"})", kJson), 401, 16,
                    "Server key required");
        check_error(c.Post(path, basic("wrongkey"), R"({"id":"device-id-0001"})", kJson), 401, 16,
                    "Server key invalid");
        check_error(c.Post(path, {{"Authorization", "Basic %%%"}}, R"({"id":"x"})", kJson), 401, 16,
                    "Server key invalid");
        check_error(c.Post(path, bearer("abc"), R"({"id":"x"})", kJson), 401, 16,
                    "Server key invalid");
    }
    auto res = c.Post("/v2/account/authenticate/device", httplib::Headers{}, "{}", kJson);
    REQUIRE(res);
    CHECK(res->get_header_value("WWW-Authenticate") == "Server key required");
}

TEST_CASE("device and custom id validation") {
    AccountServer srv;
    auto c = srv.client();
    auto post = [&](const char* kind, const std::string& body) {
        return c.Post((std::string("/v2/account/authenticate/") + kind).c_str(), basic(), body,
                      kJson);
    };
    check_error(post("device", R"({"id":""})"), 400, 3, "Device ID is required.");
    check_error(post("device", ""), 400, 3, "Device ID is required.");
    check_error(post("device", R"({"id":"short-id1"})"), 400, 3,
                "Device ID invalid, must be 10-128 bytes.");
    check_error(post("device", "{\"id\":\"" + std::string(129, 'a') + "\"}"), 400, 3,
                "Device ID invalid, must be 10-128 bytes.");
    CHECK(post("device", "{\"id\":\"" + std::string(128, 'a') + "\"}")->status == 200);
    check_error(post("device", R"({"id":"device id 0001"})"), 400, 3,
                "Device ID invalid, no spaces or control characters allowed.");
    check_error(post("device", R"({"id":"device\u0001id0001"})"), 400, 3,
                "Device ID invalid, no spaces or control characters allowed.");
    check_error(post("device", R"({"id":"device\tid0001"})"), 400, 3,
                "Device ID invalid, no spaces or control characters allowed.");

    check_error(post("custom", R"({"id":""})"), 400, 3, "Custom ID is required.");
    check_error(post("custom", R"({"id":"abcde"})"), 400, 3,
                "Custom ID invalid, must be 6-128 bytes.");
    check_error(post("custom", "{\"id\":\"" + std::string(129, 'c') + "\"}"), 400, 3,
                "Custom ID invalid, must be 6-128 bytes.");
    check_error(post("custom", R"({"id":"abc def"})"), 400, 3,
                "Custom ID invalid, no spaces or control characters allowed.");
    auto custom = session_from(post("custom", R"({"id":"abcdef","vars":{}})"));
    CHECK(custom.created);

    // Malformed JSON and wrong types.
    auto malformed = post("device", "{\"id\":");
    REQUIRE(malformed);
    CHECK(malformed->status == 400);
    CHECK(parse(malformed->body)["code"].GetInt() == 3);
    CHECK(post("device", R"({"id":42})")->status == 400);
    CHECK(post("device", R"({"id":"device-id-0009","vars":{"a":1}})")->status == 400);
    CHECK(post("device", R"([1])")->status == 400);
    // Unknown fields are ignored.
    CHECK(post("device", R"({"id":"device-id-0010","extra":true})")->status == 200);
}

TEST_CASE("username rules, duplicates and create=false") {
    AccountServer srv;
    auto c = srv.client();
    auto post = [&](const std::string& query, const std::string& id) {
        return c.Post(("/v2/account/authenticate/device?" + query).c_str(), basic(),
                      "{\"id\":\"" + id + "\"}", kJson);
    };
    CHECK(session_from(post("username=takenname", "device-user-01")).created);
    check_error(post("username=takenname", "device-user-02"), 409, 6,
                "Username is already in use.");
    // An existing account ignores the username parameter.
    CHECK_FALSE(session_from(post("username=othername", "device-user-01")).created);
    check_error(post("username=bad%0Aname", "device-user-03"), 400, 3,
                "Username invalid, no spaces or control characters allowed.");
    check_error(post("username=" + std::string(129, 'u'), "device-user-03"), 400, 3,
                "Username invalid, must be 1-128 bytes.");
    // A plain space is allowed (Nakama's regex only rejects control characters).
    auto spaced = session_from(post("username=with%20space", "device-user-04"));
    CHECK(std::string(token_payload(spaced.token)["usn"].GetString()) == "with space");

    check_error(post("create=false", "device-user-05"), 404, 5, "User account not found.");
    check_error(c.Post("/v2/account/authenticate/custom?create=false", basic(),
                       R"({"id":"custom-unknown"})", kJson),
                404, 5, "User account not found.");
    CHECK(post("create=false", "device-user-01")->status == 200);
    CHECK(post("create=0", "device-user-01")->status == 200);
    CHECK(post("create=maybe", "device-user-06")->status == 400);
}

TEST_CASE("email authentication") {
    AccountServer srv;
    auto c = srv.client();
    auto post = [&](const std::string& body, const std::string& query = "") {
        return c.Post(("/v2/account/authenticate/email?" + query).c_str(), basic(), body, kJson);
    };
    auto created = session_from(post(
        R"({"email":"Player@Example.com","password":"password1","vars":{}})", "username=emailer"));
    CHECK(created.created);
    auto again = session_from(post(R"({"email":"player@example.COM","password":"password1"})"));
    CHECK_FALSE(again.created);
    CHECK(again.user_id == created.user_id);
    check_error(post(R"({"email":"player@example.com","password":"password2"})"), 401, 16,
                "Invalid credentials.");
    check_error(post(R"({"email":"nobody@example.com","password":"password1"})", "create=false"),
                404, 5, "User account not found.");
    // Username + password login when the email is empty.
    auto by_name = session_from(post(R"({"password":"password1"})", "username=emailer"));
    CHECK(by_name.user_id == created.user_id);
    check_error(post(R"({"password":"password9"})", "username=emailer"), 401, 16,
                "Invalid credentials.");
    check_error(post(R"({"email":"nul@example.com","password":"pass\u0000word1"})"), 400, 3,
                "Password must not contain NUL characters.");
    check_error(post(R"({"email":"","password":"password1"})"), 400, 3,
                "Username is required when email address is not supplied.");
    check_error(post(""), 400, 3, "Email address and password is required.");
    check_error(post(R"({"email":"a b@example.com","password":"password1"})"), 400, 3,
                "Invalid email address, no spaces or control characters allowed.");
    check_error(post(R"({"email":"playerexample.com","password":"password1"})"), 400, 3,
                "Invalid email address format.");
    check_error(post(R"({"email":"p@example","password":"password1"})"), 400, 3,
                "Invalid email address format.");
    check_error(post(R"({"email":"a@b.co","password":"password1"})"), 400, 3,
                "Invalid email address, must be 10-255 bytes.");
    check_error(post(R"({"email":"short@example.com","password":"1234567"})"), 400, 3,
                "Password must be at least 8 characters long.");

    auto account = c.Get("/v2/account", bearer(created.token));
    REQUIRE(account);
    CHECK(std::string(parse(account->body)["email"].GetString()) == "player@example.com");
}

TEST_CASE("bearer token checks on GET /v2/account") {
    AccountServer srv;
    auto c = srv.client();
    auto s = authenticate_device(c, "device-bearer-1");
    check_error(c.Get("/v2/account"), 401, 16, "Auth token required");
    auto res = c.Get("/v2/account");
    CHECK(res->get_header_value("WWW-Authenticate") == "Auth token required");
    check_error(c.Get("/v2/account", bearer("garbage")), 401, 16, "Auth token invalid");
    check_error(
        c.Get("/v2/account", {{"Authorization", "Basic " + auth::base64_encode("defaultkey:")}}),
        401, 16, "Auth token invalid");
    // The refresh token is not a session token.
    check_error(c.Get("/v2/account", bearer(s.refresh_token)), 401, 16, "Auth token invalid");

    const auto dot1 = s.token.find('.');
    const auto dot2 = s.token.rfind('.');
    SUBCASE("tampered signature") {
        std::string t = s.token;
        t[dot2 + 5] = t[dot2 + 5] == 'x' ? 'y' : 'x';
        check_error(c.Get("/v2/account", bearer(t)), 401, 16, "Auth token invalid");
    }
    SUBCASE("alg none") {
        const std::string t = auth::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." +
                              s.token.substr(dot1 + 1, dot2 - dot1 - 1) + ".";
        check_error(c.Get("/v2/account", bearer(t)), 401, 16, "Auth token invalid");
    }
    SUBCASE("expired token") {
        auth::TokenClaims claims;
        claims.token_id = auth::random_uuid_v4();
        claims.user_id = s.user_id;
        claims.username = "whoever";
        claims.issued_at = srv.tokens.now() - 100;
        claims.expires_at = srv.tokens.now() - 1;
        const std::string t = srv.tokens.sign(claims, auth::TokenKind::session);
        check_error(c.Get("/v2/account", bearer(t)), 401, 16, "Auth token invalid");
        claims.expires_at = srv.tokens.now() + 60;
        CHECK(c.Get("/v2/account", bearer(srv.tokens.sign(claims, auth::TokenKind::session)))
                  ->status == 200);
    }
    SUBCASE("case-insensitive scheme") {
        CHECK(c.Get("/v2/account", {{"Authorization", "bearer " + s.token}})->status == 200);
    }
}

TEST_CASE("a token with a 1 s lifetime expires") {
    AccountServer::Config config;
    config.auth.token_expiry_sec = 1;
    AccountServer srv(config);
    auto c = srv.client();
    auto s = authenticate_device(c, "device-expiry-1");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
        status = c.Get("/v2/account", bearer(s.token))->status;
        if (status == 401)
            break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK(status == 401);
}

TEST_CASE("session refresh") {
    AccountServer srv;
    auto c = srv.client();
    auto s = session_from(c.Post("/v2/account/authenticate/device?username=refresher", basic(),
                                 R"({"id":"device-refresh-1","vars":{"k":"v"}})", kJson));
    auto refresh = [&](const std::string& body, const httplib::Headers& h) {
        return c.Post("/v2/account/session/refresh?", h, body, kJson);
    };
    auto res = refresh("{\"token\":\"" + s.refresh_token + "\"}", basic());
    auto r = session_from(res);
    CHECK_FALSE(r.created);
    CHECK(parse(res->body).MemberCount() == 2);
    auto before = token_payload(s.token);
    auto after = token_payload(r.token);
    CHECK(std::string(after["tid"].GetString()) == before["tid"].GetString());
    CHECK(after["iat"].GetInt64() == before["iat"].GetInt64());
    CHECK(std::string(after["vrs"]["k"].GetString()) == "v");  // kept when not given
    // An empty map is no map in protobuf JSON: nakama-js always sends "vars":{}, vars are kept.
    auto empty_vars = session_from(refresh("{\"token\":\"" + s.refresh_token + "\",\"vars\":{}}", basic()));
    CHECK(std::string(token_payload(empty_vars.token)["vrs"]["k"].GetString()) == "v");
    CHECK(std::string(after["usn"].GetString()) == "refresher");
    CHECK(c.Get("/v2/account", bearer(r.token))->status == 200);
    CHECK(std::string(token_payload(r.refresh_token)["tid"].GetString()) ==
          before["tid"].GetString());

    auto replaced = session_from(
        refresh("{\"token\":\"" + s.refresh_token + "\",\"vars\":{\"n\":\"m\"}}", basic()));
    auto p = token_payload(replaced.token);
    CHECK(std::string(p["vrs"]["n"].GetString()) == "m");
    CHECK_FALSE(p["vrs"].HasMember("k"));

    // The username is read from the store, so a rename shows up.
    REQUIRE(c.Put("/v2/account", bearer(r.token), R"({"username":"renamed"})", kJson)->status ==
            200);
    auto renamed = session_from(refresh("{\"token\":\"" + s.refresh_token + "\"}", basic()));
    CHECK(std::string(token_payload(renamed.token)["usn"].GetString()) == "renamed");

    check_error(refresh("{}", basic()), 400, 3, "Refresh token is required.");
    check_error(refresh("", basic()), 400, 3, "Refresh token is required.");
    check_error(refresh("{\"token\":\"" + s.token + "\"}", basic()), 401, 16,
                "Refresh token invalid or expired.");
    check_error(refresh(R"({"token":"a.b.c"})", basic()), 401, 16,
                "Refresh token invalid or expired.");
    check_error(refresh("{\"token\":\"" + s.refresh_token + "\"}", {}), 401, 16,
                "Server key required");

    auth::TokenClaims claims;
    claims.token_id = auth::random_uuid_v4();
    claims.user_id = s.user_id;
    claims.issued_at = srv.tokens.now() - 7200;
    claims.expires_at = srv.tokens.now() - 10;
    check_error(refresh("{\"token\":\"" + srv.tokens.sign(claims, auth::TokenKind::refresh) + "\"}",
                        basic()),
                401, 16, "Refresh token invalid or expired.");
}

TEST_CASE("logout revokes the named tokens") {
    AccountServer srv;
    auto c = srv.client();
    auto a = authenticate_device(c, "device-logout-1");
    auto b = authenticate_device(c, "device-logout-1");
    auto other = authenticate_device(c, "device-logout-2");

    check_error(c.Post("/v2/session/logout", httplib::Headers{}, "{}", kJson), 401, 16,
                "Auth token required");
    check_error(
        c.Post("/v2/session/logout", bearer(a.token), "{\"token\":\"" + other.token + "\"}", kJson),
        400, 3, "Session token invalid.");
    check_error(c.Post("/v2/session/logout", bearer(a.token),
                       "{\"refresh_token\":\"" + a.token + "\"}", kJson),
                400, 3, "Refresh token invalid.");

    auto res = c.Post(
        "/v2/session/logout?", bearer(a.token),
        "{\"token\":\"" + a.token + "\",\"refresh_token\":\"" + a.refresh_token + "\"}", kJson);
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "{}");
    check_error(c.Get("/v2/account", bearer(a.token)), 401, 16, "Auth token invalid");
    check_error(c.Post("/v2/account/session/refresh", basic(),
                       "{\"token\":\"" + a.refresh_token + "\"}", kJson),
                401, 16, "Refresh token invalid or expired.");
    // Another session of the same user is untouched.
    CHECK(c.Get("/v2/account", bearer(b.token))->status == 200);
    CHECK(c.Get("/v2/account", bearer(other.token))->status == 200);
}

TEST_CASE("logout with an empty body revokes every session of the user") {
    AccountServer srv;
    auto c = srv.client();
    auto a = authenticate_device(c, "device-logout-3");
    auto b = authenticate_device(c, "device-logout-3");
    auto other = authenticate_device(c, "device-logout-4");
    auto res = c.Post("/v2/session/logout", bearer(a.token), "{}", kJson);
    REQUIRE(res);
    CHECK(res->status == 200);
    check_error(c.Get("/v2/account", bearer(a.token)), 401, 16, "Auth token invalid");
    check_error(c.Get("/v2/account", bearer(b.token)), 401, 16, "Auth token invalid");
    check_error(c.Post("/v2/account/session/refresh", basic(),
                       "{\"token\":\"" + b.refresh_token + "\"}", kJson),
                401, 16, "Refresh token invalid or expired.");
    CHECK(c.Get("/v2/account", bearer(other.token))->status == 200);
    // Signing in again right away works (same second as the invalidation).
    auto fresh = authenticate_device(c, "device-logout-3");
    CHECK(c.Get("/v2/account", bearer(fresh.token))->status == 200);
}

TEST_CASE("GET /v2/account shape") {
    AccountServer srv;
    auto c = srv.client();
    auto s = authenticate_device(c, "device-shape-1", "username=shaper&");
    auto res = c.Get("/v2/account?", bearer(s.token));
    REQUIRE(res);
    REQUIRE(res->status == 200);
    auto d = parse(res->body);
    std::set<std::string> top;
    for (const auto& m : d.GetObject())
        top.insert(m.name.GetString());
    CHECK(top == std::set<std::string>{"user", "wallet", "devices"});
    CHECK(std::string(d["wallet"].GetString()) == "{}");
    REQUIRE(d["devices"].IsArray());
    REQUIRE(d["devices"].Size() == 1);
    CHECK(d["devices"][0].MemberCount() == 1);
    CHECK(std::string(d["devices"][0]["id"].GetString()) == "device-shape-1");
    const auto& user = d["user"];
    std::set<std::string> keys;
    for (const auto& m : user.GetObject())
        keys.insert(m.name.GetString());
    CHECK(keys == std::set<std::string>{"id", "username", "lang_tag", "metadata", "create_time",
                                        "update_time"});
    CHECK(std::string(user["id"].GetString()) == s.user_id);
    CHECK(std::string(user["username"].GetString()) == "shaper");
    CHECK(std::string(user["lang_tag"].GetString()) == "en");
    CHECK(std::string(user["metadata"].GetString()) == "{}");
    const std::string created = user["create_time"].GetString();
    CHECK(created.size() == 20);
    CHECK(created[4] == '-');
    CHECK(created[10] == 'T');
    CHECK(created.back() == 'Z');

    auto custom = session_from(
        c.Post("/v2/account/authenticate/custom", basic(), R"({"id":"custom-shape"})", kJson));
    auto cd = parse(c.Get("/v2/account", bearer(custom.token))->body);
    CHECK(std::string(cd["custom_id"].GetString()) == "custom-shape");
    CHECK_FALSE(cd.HasMember("devices"));
    CHECK_FALSE(cd.HasMember("email"));
}

TEST_CASE("PUT /v2/account field rules") {
    AccountServer srv;
    auto c = srv.client();
    auto s = authenticate_device(c, "device-put-1", "username=putter&");
    authenticate_device(c, "device-put-2", "username=occupied&");
    auto put = [&](const std::string& body) {
        return c.Put("/v2/account?", bearer(s.token), body, kJson);
    };
    auto user = [&] { return parse(c.Get("/v2/account", bearer(s.token))->body); };

    check_error(put("{}"), 400, 3, "No fields to update.");
    check_error(put(""), 400, 3, "No fields to update.");
    check_error(put(R"({"unknown":"x"})"), 400, 3, "No fields to update.");
    check_error(put(R"({"username":""})"), 400, 3, "Username invalid, must be 1-128 bytes.");
    check_error(put("{\"username\":\"" + std::string(129, 'n') + "\"}"), 400, 3,
                "Username invalid, must be 1-128 bytes.");
    check_error(put(R"({"username":"a\u0007b"})"), 400, 3,
                "Username invalid, no spaces or control characters allowed.");
    check_error(put(R"({"username":"occupied"})"), 409, 6, "Username is already in use.");
    // A NUL decoded from \u0000: 400 on both engines (PostgreSQL's text cannot hold it).
    check_error(put(R"({"display_name":"a\u0000b"})"), 400, 3,
                "Invalid display_name value supplied. It must not contain NUL characters.");
    CHECK(put(R"({"display_name":5})")->status == 400);
    CHECK(put(R"({"display_name":)")->status == 400);

    auto ok = put(R"({"display_name":"Shown","avatar_url":"http://a/b.png","lang_tag":"fr",)"
                  R"("location":"Paris","timezone":"CET"})");
    REQUIRE(ok);
    CHECK(ok->status == 200);
    CHECK(ok->body == "{}");
    auto u = user();
    CHECK(std::string(u["user"]["display_name"].GetString()) == "Shown");
    CHECK(std::string(u["user"]["avatar_url"].GetString()) == "http://a/b.png");
    CHECK(std::string(u["user"]["lang_tag"].GetString()) == "fr");
    CHECK(std::string(u["user"]["location"].GetString()) == "Paris");
    CHECK(std::string(u["user"]["timezone"].GetString()) == "CET");

    // Absent = untouched, "" = cleared, null = absent.
    REQUIRE(put(R"({"display_name":"","timezone":null})")->status == 200);
    u = user();
    CHECK_FALSE(u["user"].HasMember("display_name"));
    CHECK(std::string(u["user"]["timezone"].GetString()) == "CET");
    CHECK(std::string(u["user"]["location"].GetString()) == "Paris");
    // The same values again is still a 200.
    CHECK(put(R"({"location":"Paris"})")->status == 200);

    check_error(put("{\"display_name\":\"" + std::string(256, 'd') + "\"}"), 400, 3,
                "Invalid display_name, must be at most 255 characters.");
    check_error(put("{\"lang_tag\":\"" + std::string(19, 'l') + "\"}"), 400, 3,
                "Invalid lang_tag, must be at most 18 characters.");
    check_error(put("{\"avatar_url\":\"" + std::string(513, 'a') + "\"}"), 400, 3,
                "Invalid avatar_url, must be at most 512 characters.");
    CHECK(put("{\"location\":\"" + std::string(255, 'p') + "\"}")->status == 200);

    REQUIRE(put(R"({"username":"putter2"})")->status == 200);
    CHECK(std::string(user()["user"]["username"].GetString()) == "putter2");
    check_error(c.Put("/v2/account", httplib::Headers{}, R"({"location":"x"})", kJson), 401, 16,
                "Auth token required");
}

TEST_CASE("DELETE /v2/account deletes the account and revokes its sessions") {
    AccountServer srv;
    auto c = srv.client();
    auto a = authenticate_device(c, "device-delete-1");
    auto b = authenticate_device(c, "device-delete-1");
    auto res = c.Delete("/v2/account?", bearer(a.token));
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "{}");
    check_error(c.Get("/v2/account", bearer(a.token)), 401, 16, "Auth token invalid");
    check_error(c.Get("/v2/account", bearer(b.token)), 401, 16, "Auth token invalid");
    check_error(c.Delete("/v2/account", bearer(a.token)), 401, 16, "Auth token invalid");
    check_error(c.Post("/v2/account/session/refresh", basic(),
                       "{\"token\":\"" + a.refresh_token + "\"}", kJson),
                401, 16, "Refresh token invalid or expired.");
    check_error(c.Post("/v2/account/authenticate/device?create=false", basic(),
                       R"({"id":"device-delete-1"})", kJson),
                404, 5, "User account not found.");
    auto reborn = authenticate_device(c, "device-delete-1");
    CHECK(reborn.created);
    CHECK(reborn.user_id != a.user_id);
}

TEST_CASE("endpoints without their services answer 501") {
    api::Services empty;
    net::Router router;
    api::register_account_routes(router, empty);
    net::Options o;
    o.address = "127.0.0.1";
    o.port = 0;
    o.io_threads = 1;
    net::Server server(o, router);
    server.start();
    httplib::Client c("127.0.0.1", server.port());
    check_error(
        c.Post("/v2/account/authenticate/device", basic(), R"({"id":"device-id-0001"})", kJson),
        501, 12, "Accounts are not available on this server.");
    CHECK(c.Get("/v2/account", bearer("x"))->status == 501);
    server.shutdown(std::chrono::milliseconds(1000));
}

TEST_CASE("accounts persist across a server restart") {
    auto dir = std::make_shared<TempDir>();
    std::string user_id;
    {
        AccountServer srv(dir);
        auto c = srv.client();
        user_id =
            session_from(c.Post("/v2/account/authenticate/email", basic(),
                                R"({"email":"keep@example.com","password":"password1"})", kJson))
                .user_id;
        auto s = authenticate_device(c, "device-persist-1");
        REQUIRE(c.Put("/v2/account", bearer(s.token), R"({"display_name":"Persisted"})", kJson)
                    ->status == 200);
    }
    AccountServer srv(dir);
    auto c = srv.client();
    auto again =
        session_from(c.Post("/v2/account/authenticate/email?create=false", basic(),
                            R"({"email":"keep@example.com","password":"password1"})", kJson));
    CHECK(again.user_id == user_id);
    auto s = authenticate_device(c, "device-persist-1", "create=false&");
    CHECK_FALSE(s.created);
    auto d = parse(c.Get("/v2/account", bearer(s.token))->body);
    CHECK(std::string(d["user"]["display_name"].GetString()) == "Persisted");
}

TEST_CASE("200 parallel authentications of distinct devices") {
    AccountServer srv;
    std::vector<std::thread> threads;
    std::vector<std::string> ids(200);
    std::atomic<int> ok{0};
    for (int t = 0; t < 10; ++t) {
        threads.emplace_back([&, t] {
            auto c = srv.client();
            for (int i = t; i < 200; i += 10) {
                auto res = c.Post("/v2/account/authenticate/device", basic(),
                                  "{\"id\":\"parallel-device-" + std::to_string(i) + "\"}", kJson);
                if (res && res->status == 200) {
                    ok.fetch_add(1);
                    ids[i] =
                        token_payload(parse(res->body)["token"].GetString())["uid"].GetString();
                }
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(ok.load() == 200);
    CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == 200);
}

TEST_CASE("50 parallel authentications of one new device create one account") {
    AccountServer srv;
    std::vector<std::thread> threads;
    std::vector<std::string> ids(50);
    std::vector<int> statuses(50, 0);
    std::atomic<int> created{0};
    for (int i = 0; i < 50; ++i) {
        threads.emplace_back([&, i] {
            auto c = srv.client();
            auto res = c.Post("/v2/account/authenticate/device", basic(),
                              R"({"id":"the-same-device"})", kJson);
            if (!res)
                return;
            statuses[i] = res->status;
            if (res->status != 200)
                return;
            auto d = parse(res->body);
            if (d.HasMember("created"))
                created.fetch_add(1);
            ids[i] = token_payload(d["token"].GetString())["uid"].GetString();
        });
    }
    for (auto& t : threads)
        t.join();
    for (int s : statuses)
        CHECK(s == 200);
    CHECK(created.load() == 1);
    CHECK(std::set<std::string>(ids.begin(), ids.end()).size() == 1);
}
