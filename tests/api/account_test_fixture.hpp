// A real server for the account endpoint suites: net::Server on 127.0.0.1:0,
// real Tokens, the store on a temp SQLite file (or, built with NK_TEST_POSTGRES, on a fresh
// database of the suite's PostgreSQL server) and a BlockingPool.
#pragma once

#include <doctest/doctest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <memory>
#include <string>

#include "api/account.hpp"
#include "api/health.hpp"
#include "api/services.hpp"
#include "api/storage.hpp"
#include "auth/base64.hpp"
#include "auth/tokens.hpp"
#include "core/blocking_pool.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "store/store.hpp"
#include "support/process.hpp"
#ifdef NK_TEST_POSTGRES
#include "support/postgres.hpp"
#endif

namespace nk::test {

struct AccountServerConfig {
    auth::Options auth;
    std::string db_path;  // empty = a file in `dir` (PostgreSQL: a fresh database)
    api::RuntimeBridge* runtime = nullptr;
};

struct AccountServer {
    using Config = AccountServerConfig;

    explicit AccountServer(std::shared_ptr<TempDir> directory, Config config = {})
        : dir(std::move(directory)), tokens(config.auth), store(open_test_store(config)), pool(4) {
        services.tokens = &tokens;
        services.accounts = store.get();
        services.pool = &pool;
        services.runtime = config.runtime;
        services.storage = store.get();
        api::register_account_routes(router, services);
        api::register_storage_routes(router, services);
        api::register_health_routes(router);
        net::Options net_options;
        net_options.address = "127.0.0.1";
        net_options.port = 0;
        net_options.io_threads = 2;
        server = std::make_unique<net::Server>(net_options, router);
        server->start();
    }
    explicit AccountServer(Config config = {})
        : AccountServer(std::make_shared<TempDir>(), std::move(config)) {}
    ~AccountServer() {
        pool.stop();
        server->shutdown(std::chrono::milliseconds(2000));
    }

    std::unique_ptr<store::Store> open_test_store(const Config& c) const {
        store::Options o;
        o.bcrypt_cost = 4;
#ifdef NK_TEST_POSTGRES
        // One database per `dir`, as one SQLite file per `dir`: a server restarted on the same
        // dir finds its accounts.
        o.address = c.db_path;
        if (o.address.empty()) {
            const std::string marker = (*dir / "postgres-address").string();
            std::ifstream in(marker);
            if (!std::getline(in, o.address)) {
                o.address = PostgresServer::shared().create_database();
                std::ofstream(marker) << o.address << "\n";
            }
        }
        store::migrate_up(o);
#else
        o.address = c.db_path.empty() ? (*dir / "accounts.db").string() : c.db_path;
#endif
        return store::open_store(o);
    }

    httplib::Client client() const {
        httplib::Client c("127.0.0.1", server->port());
        c.set_read_timeout(30, 0);
        c.set_connection_timeout(10, 0);
        c.set_tcp_nodelay(true);
        return c;
    }

    std::shared_ptr<TempDir> dir;
    auth::Tokens tokens;
    std::unique_ptr<store::Store> store;
    BlockingPool pool;
    api::Services services;
    net::Router router;
    std::unique_ptr<net::Server> server;
};

inline httplib::Headers basic(const std::string& key = "defaultkey") {
    return {{"Authorization", "Basic " + auth::base64_encode(key + ":")}};
}
inline httplib::Headers bearer(const std::string& token) {
    return {{"Authorization", "Bearer " + token}};
}

inline rapidjson::Document parse(const std::string& json) {
    rapidjson::Document d;
    d.Parse(json.c_str());
    REQUIRE_FALSE(d.HasParseError());
    return d;
}

// {"code":N,"message":"..."} check.
inline void check_error(const httplib::Result& res, int http, int code,
                        const std::string& message) {
    REQUIRE(res);
    CHECK(res->status == http);
    auto d = parse(res->body);
    REQUIRE(d.IsObject());
    CHECK(d.MemberCount() == 2);
    CHECK(d["code"].GetInt() == code);
    CHECK(std::string(d["message"].GetString()) == message);
}

inline rapidjson::Document token_payload(const std::string& token) {
    const auto a = token.find('.');
    const auto b = token.find('.', a + 1);
    auto json = auth::base64url_decode(token.substr(a + 1, b - a - 1));
    REQUIRE(json);
    return parse(*json);
}

struct Session {
    std::string token;
    std::string refresh_token;
    bool created = false;
    std::string user_id;
};

inline Session session_from(const httplib::Result& res) {
    REQUIRE(res);
    REQUIRE(res->status == 200);
    auto d = parse(res->body);
    Session s;
    s.token = d["token"].GetString();
    s.refresh_token = d["refresh_token"].GetString();
    s.created = d.HasMember("created") && d["created"].GetBool();
    if (d.HasMember("created"))
        CHECK(d["created"].GetBool());  // never written as false
    s.user_id = token_payload(s.token)["uid"].GetString();
    return s;
}

inline Session authenticate_device(httplib::Client& c, const std::string& id,
                                   const std::string& query = "create=true&") {
    return session_from(c.Post(("/v2/account/authenticate/device?" + query).c_str(), basic(),
                               "{\"id\":\"" + id + "\"}", "application/json"));
}

}  // namespace nk::test
