// Accounts on either engine (test_database.hpp): find-or-create, bans, profile updates, deletes,
// and one account for one id however many calls race for it.
#include <doctest/doctest.h>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_database.hpp"

using namespace nk;
using namespace nk::store;

TEST_CASE("device authentication: find or create") {
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
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
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
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
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
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
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
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

TEST_CASE("accounts persist across reopening the store") {
    test::TestDatabase db;
    std::string id;
    {
        auto owned = db.open();
        Store& store = *owned;
        AuthResult r;
        REQUIRE(store.authenticate_email("persist@example.com", "password1", "keeper", true, r)
                    .is_ok());
        id = r.user_id;
        AccountUpdate u;
        u.display_name = "Kept";
        REQUIRE(store.update_account(id, u).is_ok());
    }
    auto owned = db.open();
    Store& store = *owned;
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

TEST_CASE("200 concurrent find-or-creates of one id create exactly one account") {
    constexpr int kRacers = 200;
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
    for (auto kind : {0, 1, 2}) {
        std::vector<std::thread> threads;
        std::vector<AuthResult> results(kRacers);
        std::vector<Status> statuses(kRacers);
        for (int i = 0; i < kRacers; ++i) {
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
        for (int i = 0; i < kRacers; ++i) {
            CHECK(statuses[i].is_ok());
            ids.insert(results[i].user_id);
            created += results[i].created ? 1 : 0;
        }
        CHECK(ids.size() == 1);
        CHECK(created == 1);
    }
}

TEST_CASE("concurrent creation of distinct ids") {
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
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
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
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


TEST_CASE("text with a NUL byte is refused with 400 on both engines, never a database error") {
    test::TestDatabase db;
    auto owned = db.open();
    Store& store = *owned;
    AuthResult r;
    using namespace std::string_literals;
    const std::string nul = "a\0b"s;
    // A password crypt() would cut at the NUL: refused, not shortened.
    Status s = store.authenticate_email("nul@example.com", "password"s + nul, "nuluser", true, r);
    CHECK(s.code() == Code::invalid_argument);
    CHECK(s.message() == "Password must not contain NUL characters.");
    REQUIRE(store.authenticate_device("device-nul-0001", "nulupd", true, r).is_ok());

    AccountUpdate u;
    u.display_name = "fine";
    u.location = nul;
    s = store.update_account(r.user_id, u);
    CHECK(s.code() == Code::invalid_argument);
    CHECK(s.message() == "Invalid location value supplied. It must not contain NUL characters.");
    Account a;
    REQUIRE(store.get_account(r.user_id, a).is_ok());
    CHECK(a.display_name.empty());  // nothing of the refused update was written
    u.location.reset();
    REQUIRE(store.update_account(r.user_id, u).is_ok());
    REQUIRE(store.get_account(r.user_id, a).is_ok());
    CHECK(a.display_name == "fine");
}
