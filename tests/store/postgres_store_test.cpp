// What only the PostgreSQL engine has: `nkhost migrate up` semantics, refusing an unmigrated or
// newer schema, addresses in Nakama's form, and a server that goes away and comes back.
#include <doctest/doctest.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "metrics/registry.hpp"
#include "store/postgres_store.hpp"
#include "store/store.hpp"
#include "support/postgres.hpp"

using namespace nk;
using namespace nk::store;
using nk::test::PostgresServer;

namespace {

Options options_for(const std::string& address) {
    Options o;
    o.address = address;
    o.bcrypt_cost = 4;
    return o;
}

std::string message_of(const std::function<void()>& f) {
    try {
        f();
    } catch (const std::exception& e) {
        return e.what();
    }
    return "(no exception)";
}

// A migrated fresh database on the shared server, a store on it counting into `registry`, and
// one account in it.
struct Restartable {
    Restartable() {
        Options o = options_for(server.create_database());
        migrate_up(o);
        store = open_store(o, &registry);
        AuthResult r;
        REQUIRE(store->authenticate_device("device-restart-0001", "restarter", true, r).is_ok());
        id = r.user_id;
    }
    PostgresServer& server = PostgresServer::shared();
    metrics::Registry registry{"nk", "node"};
    std::unique_ptr<Store> store;
    std::string id;  // the account's user id
};

}  // namespace

TEST_CASE("database.address in Nakama's form and as a URL") {
    CHECK(is_server_address("root@localhost:26257"));
    CHECK(is_server_address("user:pw@db.example:5432/game"));
    CHECK(is_server_address("postgres://u@h/d"));
    CHECK(is_server_address("db:5432"));
    CHECK_FALSE(is_server_address("data/nkhost.db"));
    CHECK_FALSE(is_server_address(":memory:"));
    CHECK_FALSE(is_server_address("/srv/c:d.db"));
    CHECK(PostgresStore::conninfo("root@localhost:26257") ==
          "postgresql://root@localhost:26257/nakama");
    CHECK(PostgresStore::conninfo("u:p@h:1/game") == "postgresql://u:p@h:1/game");
    CHECK(PostgresStore::conninfo("u@h:1?sslmode=disable") ==
          "postgresql://u@h:1/nakama?sslmode=disable");
    CHECK(PostgresStore::conninfo("postgres://u@h/d?x=y") == "postgres://u@h/d?x=y");
}

TEST_CASE("migrate up: a fresh database, an already migrated one, a newer schema") {
    auto& server = PostgresServer::shared();
    const std::string address = server.create_database();
    const Options o = options_for(address);

    // Unmigrated: the store refuses to open and says what to run.
    const std::string refused = message_of([&] { PostgresStore store(o); });
    CHECK(refused.find("schema is at version 0") != std::string::npos);
    CHECK(refused.find("nkhost migrate up") != std::string::npos);

    const MigrateResult first = migrate_up(o);
    CHECK(first.from == 0);
    CHECK(first.to >= 2);
    const MigrateResult again = migrate_up(o);
    CHECK(again.from == first.to);
    CHECK(again.to == first.to);
    auto store = open_store(o);
    CHECK(store->engine() == "postgresql");
    CHECK(store->schema_version() == first.to);
    store.reset();

    PostgresServer::exec(address, "INSERT INTO schema_version (version) VALUES (99)");
    const std::string newer = message_of([&] { migrate_up(o); });
    CHECK(newer.find("schema version 99 is newer than this nkhost supports") != std::string::npos);
    CHECK(message_of([&] { open_store(o); }).find("newer") != std::string::npos);
}

TEST_CASE("several nodes migrating at once: one schema") {
    auto& server = PostgresServer::shared();
    const Options o = options_for(server.create_database());
    std::vector<std::thread> nodes;
    std::vector<std::string> errors(4);
    for (int i = 0; i < 4; ++i)
        nodes.emplace_back([&, i] { errors[i] = message_of([&] { migrate_up(o); }); });
    for (auto& t : nodes)
        t.join();
    for (const auto& e : errors)
        CHECK(e == "(no exception)");
    CHECK(open_store(o)->schema_version() >= 2);
}

TEST_CASE("an unreachable server: startup refuses with the reason, calls answer 503 quickly") {
    Options o = options_for("nkhost@127.0.0.1:1/none");
    const std::string refused = message_of([&] { open_store(o); });
    CHECK(refused.find("cannot connect to the database") != std::string::npos);
}

TEST_CASE("the server goes away and comes back: 503 meanwhile, counted; service resumes") {
    Restartable f;
    auto& server = f.server;
    auto& store = f.store;
    const std::string& id = f.id;

    server.stop();
    // The pooled connection broke: its next use fails, and so does opening a new one.
    bool saw_unavailable = false;
    for (int i = 0; i < 3; ++i) {
        const auto started = std::chrono::steady_clock::now();
        UserRef u;
        const Status s = store->find_user(id, u);
        CHECK_FALSE(s.is_ok());
        if (s.code() == Code::unavailable)
            saw_unavailable = true;
        // No call waits for a timeout: the server's port refuses at once.
        CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
    }
    CHECK(saw_unavailable);
    CHECK(f.registry.counter("database_errors", "", {{"operation", "open_connection"}}).value() >=
          1);

    server.start();
    // Service resumes by itself (after the reconnect backoff).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    Status s = Status::unavailable("");
    while (!s.is_ok() && std::chrono::steady_clock::now() < deadline) {
        UserRef u;
        s = store->find_user(id, u);
        if (!s.is_ok())
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    CHECK_MESSAGE(s.is_ok(), s.message());
    AuthResult r;
    REQUIRE(store->authenticate_device("device-after-1", "after", true, r).is_ok());
}

TEST_CASE("a server restart while connections sit idle: the first call after it succeeds") {
    Restartable f;
    auto& server = f.server;
    auto& store = f.store;
    const std::string& id = f.id;
    // Several connections in the pool: calls at once open one each.
    {
        std::vector<std::thread> threads;
        for (int i = 0; i < 4; ++i)
            threads.emplace_back([&] {
                UserRef u;
                for (int k = 0; k < 20; ++k)
                    CHECK(store->find_user(id, u).is_ok());
            });
        for (auto& t : threads)
            t.join();
    }

    server.stop();
    server.start();
    // Every pooled connection died with the old server; none of them reaches a caller.
    for (int i = 0; i < 8; ++i) {
        UserRef u;
        const Status s = store->find_user(id, u);
        CHECK_MESSAGE(s.is_ok(), s.message());
        CHECK(u.user_id == id);
    }
    CHECK(f.registry.counter("database_errors", "", {{"operation", "find_user"}}).value() == 0);
}
