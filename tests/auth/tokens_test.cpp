#include <doctest/doctest.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include <atomic>
#include <memory>
#include <random>
#include <stdexcept>
#include <thread>

#include "auth/base64.hpp"
#include "auth/tokens.hpp"

using namespace nk::auth;

namespace {

Options test_options() {
    Options o;
    o.encryption_key = "session-key-for-tests";
    o.refresh_encryption_key = "refresh-key-for-tests";
    return o;
}

struct FakeClock {
    std::shared_ptr<std::atomic<std::int64_t>> t =
        std::make_shared<std::atomic<std::int64_t>>(1'700'000'000);
    Tokens::Clock fn() const {
        auto p = t;
        return [p] { return p->load(); };
    }
};

std::string payload_json(const std::string& token) {
    const auto a = token.find('.');
    const auto b = token.find('.', a + 1);
    return *base64url_decode(std::string_view(token).substr(a + 1, b - a - 1));
}

// HMAC-SHA256 through the EVP_MAC interface: independent of the one-shot HMAC() tokens.cpp uses.
std::string evp_mac_sha256(const std::string& key, const std::string& data) {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    REQUIRE(mac);
    EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    REQUIRE(EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                         params) == 1);
    REQUIRE(EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(data.data()), data.size()) ==
            1);
    unsigned char out[64];
    size_t len = 0;
    REQUIRE(EVP_MAC_final(ctx, out, &len, sizeof out) == 1);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return std::string(reinterpret_cast<char*>(out), len);
}

}  // namespace

TEST_CASE("options: keys must be set and differ") {
    CHECK(Tokens::validate(test_options()).is_ok());
    CHECK(Tokens::validate(Options{}).is_ok());  // Nakama's defaults differ
    Options same = test_options();
    same.refresh_encryption_key = same.encryption_key;
    CHECK_FALSE(Tokens::validate(same).is_ok());
    CHECK_THROWS_AS(Tokens{same}, std::invalid_argument);
    Options empty = test_options();
    empty.encryption_key.clear();
    CHECK_THROWS_AS(Tokens{empty}, std::invalid_argument);
    Options zero = test_options();
    zero.token_expiry_sec = 0;
    CHECK_THROWS_AS(Tokens{zero}, std::invalid_argument);
}

TEST_CASE("issued tokens carry Nakama's claims and verify") {
    FakeClock clock;
    Tokens tokens(test_options(), clock.fn());
    const std::string uid = random_uuid_v4();
    auto s = tokens.issue(uid, "alice", {});
    CHECK(payload_json(s.token).find("\"vrs\"") == std::string::npos);
    CHECK(payload_json(s.token).rfind("{\"tid\":\"", 0) == 0);
    auto c = tokens.verify_session(s.token);
    REQUIRE(c);
    CHECK(c->user_id == uid);
    CHECK(c->username == "alice");
    CHECK(is_uuid(c->token_id));
    CHECK(c->token_id[14] == '4');
    CHECK(c->issued_at == 1'700'000'000);
    CHECK(c->expires_at == 1'700'000'060);
    auto r = tokens.verify_refresh(s.refresh_token);
    REQUIRE(r);
    CHECK(r->token_id == c->token_id);
    CHECK(r->expires_at == 1'700'003'600);
    // Keys are separate: neither token passes as the other kind.
    CHECK_FALSE(tokens.verify_session(s.refresh_token));
    CHECK_FALSE(tokens.verify_refresh(s.token));

    auto v = tokens.issue(uid, "alice", {{"k", "v"}, {"a", "\"q\""}});
    CHECK(payload_json(v.token).find("\"vrs\":{\"a\":\"\\\"q\\\"\",\"k\":\"v\"}") !=
          std::string::npos);
    auto cv = tokens.verify_session(v.token);
    REQUIRE(cv);
    CHECK(cv->vars.at("a") == "\"q\"");
}

TEST_CASE("expiry is enforced") {
    FakeClock clock;
    Tokens tokens(test_options(), clock.fn());
    auto s = tokens.issue(random_uuid_v4(), "bob", {});
    clock.t->store(1'700'000'059);
    CHECK(tokens.verify_session(s.token));
    clock.t->store(1'700'000'060);
    CHECK_FALSE(tokens.verify_session(s.token));
    CHECK(tokens.verify_refresh(s.refresh_token));
    clock.t->store(1'700'003'600);
    CHECK_FALSE(tokens.verify_refresh(s.refresh_token));

    TokenClaims past;
    past.token_id = random_uuid_v4();
    past.user_id = random_uuid_v4();
    past.expires_at = 5;
    CHECK_FALSE(tokens.parse(tokens.sign(past, TokenKind::session), TokenKind::session));
}

TEST_CASE("interop: a token signed independently (Python hmac) verifies") {
    // Computed once with Python: hmac.new(key, header + "." + payload, sha256), urlsafe_b64 without
    // '='.
    const std::string token =
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
        "eyJ0aWQiOiI2ZjFjMmE4ZS0zYjRkLTRlNWYtOGE5Yi0wYzFkMmUzZjRhNWIiLCJ1aWQiOiJiMTk0NmFjOS0yZjZlLT"
        "RjNmUtOWExYi0zYzVkN2U5ZjFhMmIiLCJ1c24iOiJpbnRlcm9wdXNlciIsInZycyI6eyJrIjoidiJ9LCJleHAiOjQx"
        "MDI0NDQ4MDAsImlhdCI6MTcwMDAwMDAwMH0."
        "pOA1MulHCk4D7mm9Jdyy9sf-kCPzlhTFqakZrbm_PwM";
    Options o = test_options();
    o.encryption_key = "interop-test-key-0123";
    Tokens tokens(o);
    auto c = tokens.verify_session(token);
    REQUIRE(c);
    CHECK(c->token_id == "6f1c2a8e-3b4d-4e5f-8a9b-0c1d2e3f4a5b");
    CHECK(c->user_id == "b1946ac9-2f6e-4c6e-9a1b-3c5d7e9f1a2b");
    CHECK(c->username == "interopuser");
    CHECK(c->vars.at("k") == "v");
    CHECK(c->expires_at == 4102444800);
    CHECK(c->issued_at == 1700000000);
    Options other = o;
    other.encryption_key = "interop-test-key-0124";
    CHECK_FALSE(Tokens(other).verify_session(token));
}

TEST_CASE("interop: our signature equals an independent HMAC-SHA256") {
    Tokens tokens(test_options());
    auto s = tokens.issue(random_uuid_v4(), "carol", {{"x", "y"}});
    for (auto [token, key] : {std::pair{s.token, test_options().encryption_key},
                              std::pair{s.refresh_token, test_options().refresh_encryption_key}}) {
        const auto dot2 = token.rfind('.');
        const std::string signing_input = token.substr(0, dot2);
        const std::string expected = evp_mac_sha256(key, signing_input);
        CHECK(*base64url_decode(token.substr(dot2 + 1)) == expected);
        const auto dot1 = token.find('.');
        CHECK(*base64url_decode(token.substr(0, dot1)) == R"({"alg":"HS256","typ":"JWT"})");
    }
}

TEST_CASE("tampering, other algorithms and alg none are rejected") {
    Tokens tokens(test_options());
    auto s = tokens.issue(random_uuid_v4(), "dave", {});
    const auto dot1 = s.token.find('.');
    const auto dot2 = s.token.rfind('.');
    SUBCASE("flipped signature character") {
        for (std::size_t i = dot2 + 1; i < s.token.size(); ++i) {
            std::string t = s.token;
            t[i] = t[i] == 'A' ? 'B' : 'A';
            CHECK_FALSE(tokens.verify_session(t));
        }
    }
    SUBCASE("payload changed, signature kept") {
        std::string claims = payload_json(s.token);
        claims.replace(claims.find("dave"), 4, "evee");
        const std::string t =
            s.token.substr(0, dot1 + 1) + base64url_encode(claims) + s.token.substr(dot2);
        CHECK_FALSE(tokens.verify_session(t));
    }
    SUBCASE("alg none") {
        const std::string header = base64url_encode(R"({"alg":"none","typ":"JWT"})");
        const std::string body = s.token.substr(dot1 + 1, dot2 - dot1 - 1);
        CHECK_FALSE(tokens.verify_session(header + "." + body + "."));
        CHECK_FALSE(tokens.verify_session(header + "." + body + s.token.substr(dot2)));
    }
    SUBCASE("other alg with a correct HS256 MAC over it") {
        for (const char* h : {R"({"alg":"HS512","typ":"JWT"})", R"({"alg":"RS256"})",
                              R"({"typ":"JWT"})", R"({"alg":null})", R"([])"}) {
            const std::string input =
                base64url_encode(h) + "." + s.token.substr(dot1 + 1, dot2 - dot1 - 1);
            const std::string t =
                input + "." +
                base64url_encode(evp_mac_sha256(test_options().encryption_key, input));
            CHECK_FALSE(tokens.verify_session(t));
        }
    }
    SUBCASE("a differently written HS256 header with a correct MAC is accepted") {
        const std::string input = base64url_encode(R"({"typ":"JWT","alg":"HS256"})") + "." +
                                  s.token.substr(dot1 + 1, dot2 - dot1 - 1);
        const std::string t =
            input + "." + base64url_encode(evp_mac_sha256(test_options().encryption_key, input));
        CHECK(tokens.verify_session(t));
    }
}

TEST_CASE("malformed input never crashes") {
    Tokens tokens(test_options());
    const std::string valid = tokens.issue(random_uuid_v4(), "erin", {}).token;
    std::mt19937 rng(12345);
    const std::string alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ \x01\xff";
    for (const char* s : {"", ".", "..", "...", "a.b.c", "a.b", "....", "eyJ.eyJ.", "\0\0"}) {
        CHECK_FALSE(tokens.verify_session(s));
    }
    for (int i = 0; i < 20000; ++i) {
        std::string t;
        if (i % 3 == 0) {
            // Mutate a valid token.
            t = valid;
            const int edits = 1 + static_cast<int>(rng() % 4);
            for (int e = 0; e < edits; ++e)
                t[rng() % t.size()] = alphabet[rng() % alphabet.size()];
        } else if (i % 3 == 1) {
            // Three segments of random JSON-ish text.
            auto seg = [&] {
                static const char* parts[] = {"{",
                                              "}",
                                              "\"exp\":",
                                              "\"uid\":",
                                              "1e400",
                                              "[",
                                              "\"x\"",
                                              ",",
                                              "null",
                                              "-9223372036854775809",
                                              "\"vrs\":{\"a\":1}",
                                              "\"alg\":\"HS256\""};
                std::string j;
                for (int k = 0, n = static_cast<int>(rng() % 8); k < n; ++k)
                    j += parts[rng() % 12];
                return base64url_encode(j);
            };
            t = seg() + "." + seg() + "." + seg();
        } else {
            const int n = static_cast<int>(rng() % 200);
            for (int k = 0; k < n; ++k)
                t.push_back(alphabet[rng() % alphabet.size()]);
        }
        auto c = tokens.verify_session(t);
        if (c)
            CHECK(t == valid);  // only an unchanged token can pass
    }
    CHECK_FALSE(tokens.verify_session(std::string(100000, 'a')));
}

TEST_CASE("revocation through Tokens") {
    FakeClock clock;
    Tokens tokens(test_options(), clock.fn());
    const std::string uid = random_uuid_v4();
    auto a = tokens.issue(uid, "frank", {});
    auto b = tokens.issue(uid, "frank", {});
    tokens.revoke_session(*tokens.verify_session(a.token));
    CHECK_FALSE(tokens.verify_session(a.token));
    CHECK(tokens.verify_refresh(a.refresh_token));
    CHECK(tokens.verify_session(b.token));
    // Refresh re-validates the session id.
    auto refreshed = tokens.reissue(*tokens.verify_refresh(a.refresh_token), "frank", {});
    CHECK(tokens.verify_session(refreshed.token));
    CHECK(refreshed.session.issued_at == 1'700'000'000);

    tokens.revoke_user(uid);
    CHECK_FALSE(tokens.verify_session(b.token));
    CHECK_FALSE(tokens.verify_refresh(b.refresh_token));
    auto c = tokens.issue(uid, "frank", {});  // same second as the invalidation
    CHECK(tokens.verify_session(c.token));
    clock.t->fetch_add(1);
    auto d = tokens.issue(uid, "frank", {});
    CHECK(tokens.verify_session(d.token));
}

TEST_CASE("single_session invalidates earlier sessions on each new one") {
    FakeClock clock;
    Options o = test_options();
    o.single_session = true;
    Tokens tokens(o, clock.fn());
    const std::string uid = random_uuid_v4();
    auto a = tokens.issue(uid, "gina", {});
    clock.t->fetch_add(1);
    auto b = tokens.issue(uid, "gina", {});
    CHECK_FALSE(tokens.verify_session(a.token));
    CHECK(tokens.verify_session(b.token));
}

TEST_CASE("server key and http key checks") {
    Options o = test_options();
    o.server_key = "sk";
    Tokens tokens(o);
    CHECK(tokens.check_server_key("Basic " + base64_encode("sk:")).is_ok());
    CHECK(tokens.check_server_key("basic " + base64_encode("sk:ignored")).is_ok());
    const auto required = tokens.check_server_key("");
    CHECK(required.code() == nk::Code::unauthenticated);
    CHECK(required.message() == "Server key required");
    for (std::string bad :
         {"Basic " + base64_encode("wrong:"), "Basic " + base64_encode("sk"),
          std::string("Basic !!!"), std::string("Bearer abc"), std::string("Basic"),
          "Basic " + base64_encode("skx:"), "Basic " + base64_encode(":sk")}) {
        const auto s = tokens.check_server_key(bad);
        CHECK(s.code() == nk::Code::unauthenticated);
        CHECK(s.message() == "Server key invalid");
    }
    CHECK(tokens.check_http_key("defaulthttpkey"));
    CHECK_FALSE(tokens.check_http_key("defaulthttpke"));
    CHECK_FALSE(tokens.check_http_key(""));
}

TEST_CASE("concurrent issue and verify") {
    Tokens tokens(test_options());
    std::atomic<int> ok{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            const std::string uid = random_uuid_v4();
            for (int i = 0; i < 500; ++i) {
                auto s = tokens.issue(uid, "user", {{"i", std::to_string(i)}});
                if (tokens.verify_session(s.token))
                    ok.fetch_add(1);
                if (i % 50 == 0)
                    tokens.revoke_session(s.session);
            }
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(ok.load() == 2000);
}
