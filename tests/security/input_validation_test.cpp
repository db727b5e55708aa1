// Client input the store cannot hold is refused up front with 400 code 3: over-long profile
// fields, session vars too large for a token, passwords bcrypt would truncate.
#include <doctest/doctest.h>

#include <string>

#include "security_support.hpp"

using nk::test::Nkhost;

namespace {

struct Answer {
    int status = 0;
    std::string body;
};

Answer put_account(const Nkhost& server, const std::string& token, const std::string& body) {
    auto c = server.client();
    c->set_bearer_token_auth(token);
    auto res = c->Put("/v2/account", body, "application/json");
    return res ? Answer{res->status, res->body} : Answer{};
}

Answer post_basic(const Nkhost& server, const std::string& path, const std::string& body) {
    auto c = server.client();
    c->set_basic_auth("defaultkey", "");
    auto res = c->Post(path, body, "application/json");
    return res ? Answer{res->status, res->body} : Answer{};
}

bool is_code_3(const Answer& a) {
    return a.status == 400 && a.body.find("\"code\":3") != std::string::npos;
}

std::string json_member(const std::string& body, const std::string& name) {
    const std::string key = "\"" + name + "\":\"";
    auto at = body.find(key);
    if (at == std::string::npos)
        return {};
    at += key.size();
    return body.substr(at, body.find('"', at) - at);
}

}  // namespace

TEST_CASE("over-long account fields answer 400 naming the field, not 500") {
    Nkhost server;
    const std::string token = server.device_token("fields-device-1");
    const struct {
        const char* field;
        std::size_t max;
    } fields[] = {{"display_name", 255}, {"avatar_url", 512}, {"lang_tag", 18},
                  {"location", 255},     {"timezone", 255}};
    for (const auto& f : fields) {
        CAPTURE(f.field);
        const Answer over =
            put_account(server, token, "{\"" + std::string(f.field) + "\":\"" +
                                           std::string(f.max + 1, 'x') + "\"}");
        CHECK(is_code_3(over));
        CHECK(over.body.find(std::string("Invalid ") + f.field + ", must be at most " +
                             std::to_string(f.max) + " characters.") != std::string::npos);
        // At the limit, and in characters rather than bytes (é is two bytes).
        std::string at_limit;
        for (std::size_t i = 0; i < f.max; ++i)
            at_limit += "\xc3\xa9";
        const Answer ok =
            put_account(server, token, "{\"" + std::string(f.field) + "\":\"" + at_limit + "\"}");
        CHECK(ok.status == 200);
    }
    CHECK(server.metric("nkhost_database_errors") == 0);
}

TEST_CASE("session vars too large for a token are refused on authenticate and refresh") {
    Nkhost server;
    const std::string big(3000, 'v');  // over session.max_vars_bytes (2048)
    const Answer auth = post_basic(server, "/v2/account/authenticate/device?create=true",
                                   "{\"id\":\"vars-device-1\",\"vars\":{\"k\":\"" + big + "\"}}");
    CHECK(is_code_3(auth));
    CHECK(auth.body.find("Session vars too large") != std::string::npos);

    // Vars within the bound make a token the server accepts.
    const std::string fits(1900, 'v');
    const Answer ok = post_basic(server, "/v2/account/authenticate/device?create=true",
                                 "{\"id\":\"vars-device-1\",\"vars\":{\"k\":\"" + fits + "\"}}");
    REQUIRE(ok.status == 200);
    const std::string token = json_member(ok.body, "token");
    const std::string refresh = json_member(ok.body, "refresh_token");
    auto c = server.client();
    c->set_bearer_token_auth(token);
    auto account = c->Get("/v2/account");
    REQUIRE(account);
    CHECK(account->status == 200);

    const Answer refreshed =
        post_basic(server, "/v2/account/session/refresh",
                   "{\"token\":\"" + refresh + "\",\"vars\":{\"k\":\"" + big + "\"}}");
    CHECK(is_code_3(refreshed));
    CHECK(refreshed.body.find("Session vars too large") != std::string::npos);
}

TEST_CASE("session.max_vars_bytes is lowered to what fits in socket.max_header_size_bytes") {
    Nkhost server({"--socket.max_header_size_bytes", "2500", "--session.max_vars_bytes", "100000"});
    // (2500 - 1724) / 4 * 3 = 582 bytes of vars at most.
    const Answer over = post_basic(server, "/v2/account/authenticate/device?create=true",
                                   "{\"id\":\"vars-device-2\",\"vars\":{\"k\":\"" +
                                       std::string(700, 'v') + "\"}}");
    CHECK(is_code_3(over));
    const Answer ok = post_basic(server, "/v2/account/authenticate/device?create=true",
                                 "{\"id\":\"vars-device-2\",\"vars\":{\"k\":\"" +
                                     std::string(500, 'v') + "\"}}");
    REQUIRE(ok.status == 200);
    auto c = server.client();
    c->set_bearer_token_auth(json_member(ok.body, "token"));
    auto account = c->Get("/v2/account");
    REQUIRE(account);
    CHECK(account->status == 200);  // not 431
}

TEST_CASE("passwords over 72 bytes are refused, not truncated by bcrypt") {
    Nkhost server;
    const std::string base(72, 'p');
    const Answer created = post_basic(server, "/v2/account/authenticate/email?create=true",
                                      "{\"email\":\"long@example.com\",\"password\":\"" + base +
                                          "\"}");
    REQUIRE(created.status == 200);
    for (const std::string& longer : {base + "a", base + "zzzz", std::string(1000, 'p')}) {
        const Answer a = post_basic(server, "/v2/account/authenticate/email?create=true",
                                    "{\"email\":\"long@example.com\",\"password\":\"" + longer +
                                        "\"}");
        CHECK(is_code_3(a));
        CHECK(a.body.find("Password must be at most 72 bytes.") != std::string::npos);
    }
    const Answer fresh = post_basic(server, "/v2/account/authenticate/email?create=true",
                                    "{\"email\":\"fresh@example.com\",\"password\":\"" +
                                        std::string(1000, 'p') + "\"}");
    CHECK(is_code_3(fresh));
    CHECK(server.metric("nkhost_database_errors") == 0);
}
