#include <doctest/doctest.h>
#include <sqlite3.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <set>
#include <thread>
#include <vector>

#include "metrics/registry.hpp"
#include "store/sqlite_account_store.hpp"
#include "temp_dir.hpp"

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
    const std::string path = dir.file("a.db");
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
    const std::string path = dir.file("n.db");
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

TEST_CASE("device authentication: find or create") {
    test::TempDir dir;
    SqliteAccountStore store(options_for(dir.file("d.db")));
    AuthResult r;
    CHECK(store.authenticate_device("device-0001", "alice", false, r).code() == Code::not_found);
    CHECK(store.authenticate_device("device-0001", "alice", false, r).message() ==
          "User account not found.");
    REQUIRE(store.authenticate_device("device-0001", "alice", true, r).is_ok());
    CHECK(r.created);
    CHECK(r.username == "alice");
    const std::string id = r.user_id;
    AuthResult again;
    REQUIRE(store.authenticate_device("device-0001", "ignored", true, again).is_ok());
    CHECK_FALSE(again.created);
    CHECK(again.user_id == id);
    CHECK(again.username == "alice");
    AuthResult clash;
    auto s = store.authenticate_device("device-0002", "alice", true, clash);
    CHECK(s.code() == Code::already_exists);
    CHECK(s.message() == "Username is already in use.");
    // The failed create left nothing behind.
    CHECK(store.authenticate_device("device-0002", "x", false, clash).code() == Code::not_found);
}

TEST_CASE("custom and email authentication") {
    test::TempDir dir;
    SqliteAccountStore store(options_for(dir.file("c.db")));
    AuthResult r;
    REQUIRE(store.authenticate_custom("custom-1", "cu", true, r).is_ok());
    CHECK(r.created);
    AuthResult r2;
    REQUIRE(store.authenticate_custom("custom-1", "other", true, r2).is_ok());
    CHECK(r2.user_id == r.user_id);
    CHECK_FALSE(r2.created);

    AuthResult e;
    CHECK(store.authenticate_email("Me@Example.com", "password1", "em", false, e).code() ==
          Code::not_found);
    REQUIRE(store.authenticate_email("Me@Example.com", "password1", "em", true, e).is_ok());
    CHECK(e.created);
    AuthResult e2;
    REQUIRE(store.authenticate_email("me@example.COM", "password1", "zz", true, e2).is_ok());
    CHECK(e2.user_id == e.user_id);
    CHECK(e2.username == "em");
    CHECK_FALSE(e2.created);
    auto bad = store.authenticate_email("me@example.com", "password2", "zz", true, e2);
    CHECK(bad.code() == Code::unauthenticated);
    CHECK(bad.message() == "Invalid credentials.");
    // Username + password login.
    AuthResult u;
    REQUIRE(store.authenticate_email("", "password1", "em", true, u).is_ok());
    CHECK(u.user_id == e.user_id);
    CHECK(store.authenticate_email("", "password2", "em", true, u).code() == Code::unauthenticated);
    CHECK(store.authenticate_email("", "password1", "nobody", true, u).code() == Code::not_found);
    // Accounts without a password cannot log in by username.
    CHECK(store.authenticate_email("", "password1", "cu", true, u).code() == Code::unauthenticated);

    Account a;
    REQUIRE(store.get_account(e.user_id, a).is_ok());
    CHECK(a.email == "me@example.com");
}

TEST_CASE("banned users cannot authenticate or refresh") {
    test::TempDir dir;
    SqliteAccountStore store(options_for(dir.file("b.db")));
    AuthResult r;
    REQUIRE(store.authenticate_device("device-ban-1", "banned", true, r).is_ok());
    REQUIRE(store.set_disabled(r.user_id, true).is_ok());
    auto s = store.authenticate_device("device-ban-1", "banned", true, r);
    CHECK(s.code() == Code::permission_denied);
    CHECK(s.message() == "User account banned.");
    UserRef u;
    CHECK(store.find_user(r.user_id, u).code() == Code::permission_denied);
    REQUIRE(store.set_disabled(r.user_id, false).is_ok());
    CHECK(store.find_user(r.user_id, u).is_ok());
    CHECK(u.username == "banned");
}

TEST_CASE("get, update and delete an account") {
    test::TempDir dir;
    SqliteAccountStore store(options_for(dir.file("u.db")));
    AuthResult r;
    REQUIRE(store.authenticate_device("device-upd-1", "upd", true, r).is_ok());
    Account a;
    REQUIRE(store.get_account(r.user_id, a).is_ok());
    CHECK(a.id == r.user_id);
    CHECK(a.username == "upd");
    CHECK(a.lang_tag == "en");
    CHECK(a.metadata == "{}");
    CHECK(a.wallet == "{}");
    CHECK(a.devices == std::vector<std::string>{"device-upd-1"});
    CHECK(a.display_name.empty());
    CHECK(a.create_time > 0);

    CHECK(store.update_account(r.user_id, {}).message() == "No fields to update.");
    AccountUpdate u;
    u.display_name = "Display";
    u.location = "Here";
    u.username = "upd2";
    REQUIRE(store.update_account(r.user_id, u).is_ok());
    REQUIRE(store.get_account(r.user_id, a).is_ok());
    CHECK(a.display_name == "Display");
    CHECK(a.location == "Here");
    CHECK(a.username == "upd2");
    CHECK(a.timezone.empty());

    AccountUpdate clear;
    clear.display_name = "";
    clear.lang_tag = "";
    REQUIRE(store.update_account(r.user_id, clear).is_ok());
    REQUIRE(store.get_account(r.user_id, a).is_ok());
    CHECK(a.display_name.empty());
    CHECK(a.lang_tag.empty());
    CHECK(a.location == "Here");

    AccountUpdate too_long;
    too_long.display_name = std::string(256, 'x');
    auto s = store.update_account(r.user_id, too_long);
    CHECK(s.code() == Code::internal);
    CHECK(s.message() == "Error while trying to update account.");
    AccountUpdate avatar;
    avatar.avatar_url = std::string(512, 'x');
    CHECK(store.update_account(r.user_id, avatar).is_ok());
    avatar.avatar_url = std::string(513, 'x');
    CHECK(store.update_account(r.user_id, avatar).code() == Code::internal);
    AccountUpdate lang;
    lang.lang_tag = std::string(19, 'x');
    CHECK(store.update_account(r.user_id, lang).code() == Code::internal);

    AuthResult other;
    REQUIRE(store.authenticate_device("device-upd-2", "taken", true, other).is_ok());
    AccountUpdate dup;
    dup.username = "taken";
    CHECK(store.update_account(r.user_id, dup).code() == Code::already_exists);

    REQUIRE(store.delete_account(r.user_id).is_ok());
    CHECK(store.get_account(r.user_id, a).code() == Code::not_found);
    CHECK(store.get_account(r.user_id, a).message() == "Account not found.");
    CHECK(store.authenticate_device("device-upd-1", "x", false, r).code() == Code::not_found);
    CHECK(store.delete_account(r.user_id).is_ok());
    // The device id is free again.
    REQUIRE(store.authenticate_device("device-upd-1", "reborn", true, r).is_ok());
    CHECK(r.created);
}

TEST_CASE("accounts persist across reopening the file") {
    test::TempDir dir;
    const std::string path = dir.file("p.db");
    std::string id;
    {
        SqliteAccountStore store(options_for(path));
        AuthResult r;
        REQUIRE(store.authenticate_email("persist@example.com", "password1", "keeper", true, r)
                    .is_ok());
        id = r.user_id;
        AccountUpdate u;
        u.display_name = "Kept";
        REQUIRE(store.update_account(id, u).is_ok());
    }
    SqliteAccountStore store(options_for(path));
    AuthResult r;
    REQUIRE(store.authenticate_email("persist@example.com", "password1", "x", false, r).is_ok());
    CHECK(r.user_id == id);
    Account a;
    REQUIRE(store.get_account(id, a).is_ok());
    CHECK(a.display_name == "Kept");
}

TEST_CASE("generated usernames are 10 letters") {
    std::set<std::string> seen;
    for (int i = 0; i < 100; ++i) {
        const std::string u = generate_username();
        CHECK(u.size() == 10);
        for (char c : u)
            CHECK(((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')));
        seen.insert(u);
    }
    CHECK(seen.size() > 95);
}

TEST_CASE("concurrent find-or-create of one id creates exactly one account") {
    test::TempDir dir;
    SqliteAccountStore store(options_for(dir.file("race.db")));
    for (auto kind : {0, 1, 2}) {
        std::vector<std::thread> threads;
        std::vector<AuthResult> results(50);
        std::vector<Status> statuses(50);
        for (int i = 0; i < 50; ++i) {
            threads.emplace_back([&, i] {
                const std::string name = generate_username();
                if (kind == 0) {
                    statuses[i] =
                        store.authenticate_device("same-device-id", name, true, results[i]);
                } else if (kind == 1) {
                    statuses[i] = store.authenticate_custom("same-custom", name, true, results[i]);
                } else {
                    statuses[i] = store.authenticate_email("same@example.com", "password1", name,
                                                           true, results[i]);
                }
            });
        }
        for (auto& t : threads)
            t.join();
        std::set<std::string> ids;
        int created = 0;
        for (int i = 0; i < 50; ++i) {
            CHECK(statuses[i].is_ok());
            ids.insert(results[i].user_id);
            created += results[i].created ? 1 : 0;
        }
        CHECK(ids.size() == 1);
        CHECK(created == 1);
    }
}

TEST_CASE("concurrent creation of distinct ids") {
    test::TempDir dir;
    SqliteAccountStore store(options_for(dir.file("many.db")));
    std::vector<std::thread> threads;
    std::vector<AuthResult> results(200);
    std::atomic<int> ok{0};
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&, t] {
            for (int i = t; i < 200; i += 8) {
                if (store
                        .authenticate_device("distinct-device-" + std::to_string(i),
                                             generate_username(), true, results[i])
                        .is_ok()) {
                    ok.fetch_add(1);
                }
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(ok.load() == 200);
    std::set<std::string> ids;
    for (const auto& r : results)
        ids.insert(r.user_id);
    CHECK(ids.size() == 200);
}

TEST_CASE("email authentication refuses passwords over 72 bytes with 400, never 500") {
    test::TempDir dir;
    SqliteAccountStore store(options_for(dir.file("p.db")));
    AuthResult r;
    const std::string base(72, 'p');
    REQUIRE(store.authenticate_email("long@example.com", base, "long", true, r).is_ok());
    for (const std::string& longer : {base + "a", base + "b", std::string(1000, 'p')}) {
        const Status s = store.authenticate_email("long@example.com", longer, "", false, r);
        CHECK(s.code() == Code::invalid_argument);
        CHECK(s.message() == "Password must be at most 72 bytes.");
        CHECK(store.authenticate_email("new@example.com", longer, "newuser", true, r).code() ==
              Code::invalid_argument);
    }
}

TEST_CASE("database failures are counted by operation; the client gets Nakama's 500") {
    test::TempDir dir;
    metrics::Registry registry("nk", "node");
    Options o = options_for(dir.file("full.db"));
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
    const std::string path = dir.file("w.db");
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
