// samples/inventory in the real server process: items in storage and gold in the wallet change
// together (nk.MultiUpdate), concurrent purchases never overspend, and clients can read their
// inventory but not write it. Built twice: on the SQLite default (test_inventory_sample) and on a
// PostgreSQL server the test starts (test_inventory_sample_postgres, NK_TEST_POSTGRES).
#include <doctest/doctest.h>

#include <httplib.h>
#include <rapidjson/document.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "security_support.hpp"
#ifdef NK_TEST_POSTGRES
#include "support/postgres.hpp"
#endif

using namespace nk::test;

namespace {

std::string sample_bytes(const std::string& name) {
    const auto path = build_dir() / "modules" / (name + ".so");
    REQUIRE(std::filesystem::is_regular_file(path));
    return read_file(path);
}

// The plugin directory, and on PostgreSQL a fresh migrated database.
std::vector<std::string> server_args() {
    static TempDir modules;
    write_file(modules.path() / "inventory.so", sample_bytes("inventory"));
    std::vector<std::string> args = {"--runtime.path", modules.path().string()};
#ifdef NK_TEST_POSTGRES
    const std::string address = PostgresServer::shared().create_database();
    const auto migrated = run_nkhost({"migrate", "up", "--database.address", address});
    REQUIRE(migrated.exit_code == 0);
    args.insert(args.end(), {"--database.address", address});
#endif
    return args;
}

// POST /v2/rpc/<id> with a JSON-string body; the status and the unwrapped payload (or body).
std::pair<int, std::string> rpc(httplib::Client& c, const std::string& token,
                                const std::string& id, const std::string& payload) {
    std::string body = "\"";
    for (char ch : payload)
        body += ch == '"' ? std::string("\\\"") : std::string(1, ch);
    body += "\"";
    auto r = c.Post(("/v2/rpc/" + id).c_str(), {{"Authorization", "Bearer " + token}}, body,
                    "application/json");
    REQUIRE(r);
    rapidjson::Document d;
    d.Parse(r->body.c_str());
    if (r->status == 200 && d.IsObject() && d.HasMember("payload"))
        return {200, d["payload"].GetString()};
    return {r->status, r->body};
}

std::string user_id_of(httplib::Client& c, const std::string& token) {
    auto r = c.Get("/v2/account", {{"Authorization", "Bearer " + token}});
    REQUIRE(r);
    rapidjson::Document d;
    d.Parse(r->body.c_str());
    return d["user"]["id"].GetString();
}

std::string wallet_of(httplib::Client& c, const std::string& token) {
    auto r = c.Get("/v2/account", {{"Authorization", "Bearer " + token}});
    REQUIRE(r);
    rapidjson::Document d;
    d.Parse(r->body.c_str());
    return d["wallet"].GetString();
}

}  // namespace

TEST_CASE("inventory sample: buy items with gold, in one transaction each") {
    Nkhost host(server_args());
    auto c = host.client();
    const std::string token = host.device_token("inventory-player-0001");
    CHECK(rpc(*c, token, "buy_item", R"({"item":"sword"})").first == 400);  // no gold yet
    CHECK(rpc(*c, token, "claim_welcome", "") == std::pair<int, std::string>{200, R"({"gold":100})"});
    CHECK(rpc(*c, token, "claim_welcome", "").first == 409);  // once
    CHECK(rpc(*c, token, "buy_item", R"({"item":"sword"})") ==
          std::pair<int, std::string>{200, R"({"item":"sword","count":1,"gold":70})"});
    CHECK(rpc(*c, token, "buy_item", R"({"item":"sword"})").second ==
          R"({"item":"sword","count":2,"gold":40})");
    CHECK(rpc(*c, token, "buy_item", R"({"item":"shield"})").second ==
          R"({"item":"shield","count":1,"gold":20})");
    // Not enough gold: nothing changes.
    auto poor = rpc(*c, token, "buy_item", R"({"item":"sword"})");
    CHECK(poor.first == 400);
    CHECK(poor.second.find("not enough gold") != std::string::npos);
    CHECK(rpc(*c, token, "inventory", "").second == R"({"shield":1,"sword":2})");
    CHECK(wallet_of(*c, token) == R"({"gold":20})");
    CHECK(rpc(*c, token, "buy_item", R"({"item":"dragon"})").first == 400);

    // The client reads its inventory from storage, but cannot write it.
    const std::string uid = user_id_of(*c, token);
    auto r = c->Get(("/v2/storage/inventory/" + uid + "?limit=10").c_str(),
                    {{"Authorization", "Bearer " + token}});
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body.find(R"("value":"{\"count\":2}")") != std::string::npos);
    r = c->Put("/v2/storage", {{"Authorization", "Bearer " + token}},
               R"({"objects":[{"collection":"inventory","key":"sword","value":"{\"count\":99}"}]})",
               "application/json");
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(r->body.find("Storage write rejected - permission denied.") != std::string::npos);
    CHECK(rpc(*c, token, "inventory", "").second == R"({"shield":1,"sword":2})");
}

TEST_CASE("inventory sample: concurrent purchases never overspend and never lose an item") {
    Nkhost host(server_args());
    const std::string token = host.device_token("inventory-racer-0001");
    {
        auto c = host.client();
        REQUIRE(rpc(*c, token, "claim_welcome", "").first == 200);  // 100 gold
    }
    // 12 buyers of a 30-gold sword at once: exactly 3 can pay.
    std::atomic<int> bought{0}, refused{0}, other{0};
    std::vector<std::thread> buyers;
    for (int i = 0; i < 12; ++i) {
        buyers.emplace_back([&] {
            auto c = host.client();
            const auto [status, body] = rpc(*c, token, "buy_item", R"({"item":"sword"})");
            if (status == 200)
                ++bought;
            else if (body.find("not enough gold") != std::string::npos)
                ++refused;
            else
                ++other;
        });
    }
    for (auto& t : buyers)
        t.join();
    CHECK(bought == 3);
    CHECK(refused == 9);
    CHECK(other == 0);
    auto c = host.client();
    CHECK(rpc(*c, token, "inventory", "").second == R"({"sword":3})");
    CHECK(wallet_of(*c, token) == R"({"gold":10})");
    // Two welcome claims racing: paid once.
    const std::string second = host.device_token("inventory-racer-0002");
    std::atomic<int> paid{0};
    std::vector<std::thread> claims;
    for (int i = 0; i < 6; ++i)
        claims.emplace_back([&] {
            auto cc = host.client();
            if (rpc(*cc, second, "claim_welcome", "").first == 200)
                ++paid;
        });
    for (auto& t : claims)
        t.join();
    CHECK(paid == 1);
    CHECK(wallet_of(*c, second) == R"({"gold":100})");
}
