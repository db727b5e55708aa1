#include <doctest/doctest.h>
#include <sqlite3.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <vector>

#include "metrics/registry.hpp"
#include "store/sqlite_account_store.hpp"
#include "support/process.hpp"

using namespace nk;
using namespace nk::store;

namespace {

Options options_for(const std::string& path) {
    Options o;
    o.address = path;
    o.bcrypt_cost = 4;
    return o;
}

}  // namespace

TEST_CASE("schema is created with a version and the file is in WAL mode") {
    test::TempDir dir;
    const std::string path = (dir / "a.db").string();
    {
        SqliteAccountStore store(options_for(path));
        CHECK(store.schema_version() == 2);
    }
    SqliteAccountStore again(options_for(path));
    CHECK(again.schema_version() == 2);
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, nullptr);
    REQUIRE(sqlite3_step(s) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, 0))) == "wal");
    sqlite3_finalize(s);
    sqlite3_close(db);
}

TEST_CASE("a newer schema than supported is refused") {
    test::TempDir dir;
    const std::string path = (dir / "n.db").string();
    { SqliteAccountStore store(options_for(path)); }
    sqlite3* db = nullptr;
    sqlite3_open(path.c_str(), &db);
    sqlite3_exec(db, "INSERT INTO schema_version VALUES (99)", nullptr, nullptr, nullptr);
    sqlite3_close(db);
    CHECK_THROWS_AS(SqliteAccountStore(options_for(path)), std::runtime_error);
}

TEST_CASE("bad addresses throw") {
    CHECK_THROWS_AS(SqliteAccountStore(options_for("")), std::invalid_argument);
    CHECK_THROWS_AS(SqliteAccountStore(options_for("/nonexistent-dir/x/y.db")), std::runtime_error);
}

TEST_CASE("database failures are counted by operation; the client gets Nakama's 500") {
    test::TempDir dir;
    metrics::Registry registry("nk", "node");
    Options o = options_for((dir / "full.db").string());
    o.max_size_bytes = 64 * 1024;  // a small "disk"
    SqliteAccountStore store(o, &registry);
    AuthResult r;
    int created = 0;
    Status failure;
    for (int i = 0; i < 5000 && failure.is_ok(); ++i) {
        failure = store.authenticate_device("device-" + std::to_string(100000 + i), "user" + std::to_string(i), true, r);
        created += failure.is_ok();
    }
    REQUIRE_FALSE(failure.is_ok());
    CHECK(created > 10);
    CHECK(failure.code() == Code::internal);
    CHECK(failure.message() == "Error finding or creating user account.");
    auto& errors = registry.counter("database_errors", "", {{"operation", "authenticate_device"}});
    CHECK(errors.value() == 1);
    CHECK(store.authenticate_device("device-another-one", "another", true, r).code() == Code::internal);
    CHECK(errors.value() == 2);
    // Reads still work on a full database.
    CHECK(store.authenticate_device("device-100000", "", false, r).is_ok());
}

TEST_CASE("the checkpointer empties the -wal file after a burst of writes") {
    test::TempDir dir;
    const std::string path = (dir / "w.db").string();
    Options o = options_for(path);
    o.wal_checkpoint_interval_ms = 50;
    SqliteAccountStore store(o);
    AuthResult r;
    for (int i = 0; i < 200; ++i)
        REQUIRE(store.authenticate_custom("custom-" + std::to_string(i), "u" + std::to_string(i), true, r).is_ok());
    const std::filesystem::path wal = path + "-wal";
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::filesystem::file_size(wal) > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(std::filesystem::file_size(wal) == 0);
}
