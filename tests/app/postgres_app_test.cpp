// The real nkhost binary on PostgreSQL: `nkhost migrate up`, the refusal to start on an
// unmigrated or newer schema, and a server whose accounts live in PostgreSQL.
#include <doctest/doctest.h>
#include <httplib.h>
#include <signal.h>

#include <string>
#include <vector>

#include "support/postgres.hpp"
#include "support/process.hpp"

using nk::test::PostgresServer;
using nk::test::ServerProcess;
using nk::test::TempDir;

TEST_CASE("nkhost migrate up: fresh, already current, newer; the server refuses an unmigrated "
          "database and serves a migrated one") {
    auto& pg = PostgresServer::shared();
    const std::string address = pg.create_database();
    TempDir dir;
    const auto port = nk::test::free_port();
    const std::vector<std::string> server_args = {
        "--socket.address", "127.0.0.1", "--socket.port", std::to_string(port), "--data_dir",
        dir.path().string(), "--database.address", address, "--database.bcrypt_cost", "4"};

    // Unmigrated: one line saying what to run, exit 1.
    const auto refused = nk::test::run_nkhost(server_args);
    CHECK(refused.exit_code == 1);
    CHECK(refused.output.find("Startup failed: database schema is at version 0") !=
          std::string::npos);
    CHECK(refused.output.find("run `nkhost migrate up`") != std::string::npos);

    const auto first = nk::test::run_nkhost({"migrate", "up", "--database.address", address});
    CHECK(first.exit_code == 0);
    CHECK(first.output.find("migrate up: schema version 0 -> ") != std::string::npos);
    const auto again = nk::test::run_nkhost({"migrate", "up", "--database.address", address});
    CHECK(again.exit_code == 0);
    CHECK(again.output.find("(already current)") != std::string::npos);
    CHECK(nk::test::run_nkhost({"migrate", "sideways"}).exit_code == 2);

    {
        ServerProcess server(server_args);
        REQUIRE(server.wait_ready(port));
        CHECK(server.output().find("engine=postgresql") != std::string::npos);
        httplib::Client cli("127.0.0.1", port);
        cli.set_basic_auth("defaultkey", "");
        const auto created = cli.Post("/v2/account/authenticate/device?create=true",
                                      R"({"id":"device-on-postgres-1"})", "application/json");
        REQUIRE(created);
        CHECK(created->status == 200);
        CHECK(created->body.find("\"created\":true") != std::string::npos);
        CHECK(server.stop(SIGTERM) == 0);
    }
    // The account outlives the server: it is in PostgreSQL.
    {
        ServerProcess server(server_args);
        REQUIRE(server.wait_ready(port));
        httplib::Client cli("127.0.0.1", port);
        cli.set_basic_auth("defaultkey", "");
        const auto found = cli.Post("/v2/account/authenticate/device?create=false",
                                    R"({"id":"device-on-postgres-1"})", "application/json");
        REQUIRE(found);
        CHECK(found->status == 200);
        CHECK(server.stop(SIGTERM) == 0);
    }

    PostgresServer::exec(address, "INSERT INTO schema_version (version) VALUES (99)");
    const auto newer = nk::test::run_nkhost({"migrate", "up", "--database.address", address});
    CHECK(newer.exit_code == 1);
    CHECK(newer.output.find("schema version 99 is newer than this nkhost supports") !=
          std::string::npos);
    const auto newer_start = nk::test::run_nkhost(server_args);
    CHECK(newer_start.exit_code == 1);
    CHECK(newer_start.output.find("newer than this nkhost supports") != std::string::npos);
}
