// Storage objects and wallets on either engine (test_database.hpp): conditional writes under concurrency,
// atomic batches, the permissions matrix, list order and cursors, limits, wallets under
// concurrency and their ledger.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "test_database.hpp"

using namespace nk;
using namespace nk::store;

namespace {

struct Fixture {
    Fixture() {
        db.options.max_open_conns = 8;
        store = db.open();
    }
    std::string user(const std::string& device) {
        AuthResult r;
        REQUIRE(store->authenticate_device(device, generate_username(), true, r).is_ok());
        return r.user_id;
    }
    test::TestDatabase db;
    std::unique_ptr<Store> store;
};

StorageWrite write_of(std::string collection, std::string key, std::string value,
                      std::string version = "", int read = 1, int write = 1,
                      std::string user_id = "") {
    StorageWrite w;
    w.collection = std::move(collection);
    w.key = std::move(key);
    w.value = std::move(value);
    w.version = std::move(version);
    w.permission_read = read;
    w.permission_write = write;
    w.user_id = std::move(user_id);
    return w;
}

std::vector<StorageObject> read_one(Store& s, std::string_view caller,
                                    const std::string& collection, const std::string& key,
                                    const std::string& owner) {
    std::vector<StorageObject> out;
    REQUIRE(s.storage_read(caller, {{collection, key, owner, ""}}, out).is_ok());
    return out;
}

}  // namespace

TEST_CASE("storage write: version is the value's MD5; conditional writes; owner forced for clients") {
    Fixture f;
    const std::string alice = f.user("device-alice-0001");
    std::vector<StorageAck> acks;
    REQUIRE(f.store->storage_write(alice, {write_of("saves", "slot1", "{}")}, acks).is_ok());
    REQUIRE(acks.size() == 1);
    CHECK(acks[0].version == "99914b932bd37a50b983c5e7c90ae93b");  // MD5 of "{}" (Nakama)
    CHECK(acks[0].user_id == alice);
    // "*": only if absent.
    Status st = f.store->storage_write(alice, {write_of("saves", "slot1", "{\"a\":1}", "*")}, acks);
    CHECK(st.code() == Code::invalid_argument);
    CHECK(st.message() == "Storage write rejected - version check failed.");
    // A stale version, then the current one.
    st = f.store->storage_write(alice, {write_of("saves", "slot1", "{\"a\":1}", "deadbeef")}, acks);
    CHECK(st.message() == "Storage write rejected - version check failed.");
    REQUIRE(f.store
                ->storage_write(alice,
                                {write_of("saves", "slot1", "{\"a\":1}",
                                          "99914b932bd37a50b983c5e7c90ae93b")},
                                acks)
                .is_ok());
    const auto objs = read_one(*f.store, alice, "saves", "slot1", alice);
    REQUIRE(objs.size() == 1);
    CHECK(objs[0].value == "{\"a\":1}");  // stored as given
    CHECK(objs[0].version == acks[0].version);
    CHECK(objs[0].create_time > 0);
    // A client's user_id is always its own.
    REQUIRE(f.store->storage_write(alice, {write_of("saves", "x", "{}", "", 1, 1, "someone-else")},
                                   acks)
                .is_ok());
    CHECK(acks[0].user_id == alice);
}

TEST_CASE("100 concurrent writers with the same version: exactly one wins") {
    Fixture f;
    const std::string u = f.user("device-race-00001");
    std::vector<StorageAck> acks;
    REQUIRE(f.store->storage_write(u, {write_of("race", "k", "{\"n\":0}")}, acks).is_ok());
    const std::string v0 = acks[0].version;
    std::atomic<int> won{0}, lost{0}, other{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 100; ++i) {
        threads.emplace_back([&, i] {
            std::vector<StorageAck> a;
            const Status st = f.store->storage_write(
                u, {write_of("race", "k", "{\"n\":" + std::to_string(i + 1) + "}", v0)}, a);
            if (st.is_ok())
                ++won;
            else if (st.message() == "Storage write rejected - version check failed.")
                ++lost;
            else
                ++other;
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(won == 1);
    CHECK(lost == 99);
    CHECK(other == 0);
    // And with "*" on an absent object.
    won = lost = other = 0;
    threads.clear();
    for (int i = 0; i < 100; ++i) {
        threads.emplace_back([&] {
            std::vector<StorageAck> a;
            const Status st = f.store->storage_write(u, {write_of("race", "new", "{}", "*")}, a);
            st.is_ok() ? ++won : ++lost;
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(won == 1);
    CHECK(lost == 99);
}

TEST_CASE("a batch with one failing condition writes nothing") {
    Fixture f;
    const std::string u = f.user("device-batch-0001");
    std::vector<StorageAck> acks;
    REQUIRE(f.store->storage_write(u, {write_of("inv", "sword", "{\"n\":1}")}, acks).is_ok());
    const Status st = f.store->storage_write(
        u,
        {write_of("inv", "shield", "{\"n\":1}"), write_of("inv", "bow", "{\"n\":1}"),
         write_of("inv", "sword", "{\"n\":2}", "*")},
        acks);
    CHECK(st.message() == "Storage write rejected - version check failed.");
    CHECK(acks.empty());
    CHECK(read_one(*f.store, u, "inv", "shield", u).empty());
    CHECK(read_one(*f.store, u, "inv", "bow", u).empty());
    CHECK(read_one(*f.store, u, "inv", "sword", u)[0].value == "{\"n\":1}");
    // Deletes too: one missing object refuses the whole batch.
    CHECK(f.store->storage_delete(u, {{"inv", "sword", "", ""}, {"inv", "nothing", "", ""}})
              .message() ==
          "Storage delete rejected - not found, version check failed, or permission denied.");
    CHECK(read_one(*f.store, u, "inv", "sword", u).size() == 1);
}

TEST_CASE("permissions: reads, writes and deletes as Nakama's client rules; the server bypasses them") {
    Fixture f;
    const std::string owner = f.user("device-owner-0001");
    const std::string other = f.user("device-other-0001");
    std::vector<StorageAck> acks;
    REQUIRE(f.store
                ->storage_write(owner,
                                {write_of("p", "none", "{}", "", 0, 1),
                                 write_of("p", "own", "{}", "", 1, 1),
                                 write_of("p", "public", "{}", "", 2, 1),
                                 write_of("p", "locked", "{}", "", 2, 0)},
                                acks)
                .is_ok());
    struct Case {
        const char* key;
        bool owner_reads, other_reads;
    };
    for (const Case c : {Case{"none", false, false}, Case{"own", true, false},
                         Case{"public", true, true}, Case{"locked", true, true}}) {
        CAPTURE(c.key);
        CHECK(read_one(*f.store, owner, "p", c.key, owner).size() == (c.owner_reads ? 1u : 0u));
        CHECK(read_one(*f.store, other, "p", c.key, owner).size() == (c.other_reads ? 1u : 0u));
        CHECK(read_one(*f.store, "", "p", c.key, owner).size() == 1u);  // the server reads all
    }
    // A write of permission 0 is accepted; afterwards only the server changes the object.
    CHECK(f.store->storage_write(owner, {write_of("p", "locked", "{\"x\":1}")}, acks).message() ==
          "Storage write rejected - permission denied.");
    CHECK(f.store->storage_delete(owner, {{"p", "locked", "", ""}}).code() ==
          Code::invalid_argument);
    REQUIRE(f.store->storage_write("", {write_of("p", "locked", "{\"x\":2}", "", 2, 0, owner)}, acks)
                .is_ok());
    CHECK(read_one(*f.store, owner, "p", "locked", owner)[0].value == "{\"x\":2}");
    // Another user cannot delete the owner's objects (a client deletes its own only).
    REQUIRE(f.store->storage_write(other, {write_of("p", "own", "{}")}, acks).is_ok());
    REQUIRE(f.store->storage_delete(other, {{"p", "own", owner, ""}}).is_ok());  // its own "own"
    CHECK(read_one(*f.store, owner, "p", "own", owner).size() == 1);
    CHECK(read_one(*f.store, other, "p", "own", other).empty());
    // System objects: the server writes them; clients read them when public.
    REQUIRE(f.store->storage_write("", {write_of("config", "shop", "{\"sale\":true}", "", 2, 0)},
                                   acks)
                .is_ok());
    CHECK(acks[0].user_id == std::string(kSystemUserId));
    const auto sys = read_one(*f.store, other, "config", "shop", std::string(kSystemUserId));
    REQUIRE(sys.size() == 1);
    CHECK(sys[0].value == "{\"sale\":true}");
    // A delete with the wrong version is refused; with the right one it goes.
    const std::string v = read_one(*f.store, owner, "p", "public", owner)[0].version;
    CHECK_FALSE(f.store->storage_delete(owner, {{"p", "public", "", "0000"}}).is_ok());
    CHECK(f.store->storage_delete(owner, {{"p", "public", "", v}}).is_ok());
    CHECK(read_one(*f.store, "", "p", "public", owner).empty());
}

TEST_CASE("list: by key then user, public-only for others, stable cursors across inserts") {
    Fixture f;
    const std::string a = f.user("device-list-a-001");
    const std::string b = f.user("device-list-b-001");
    std::vector<StorageAck> acks;
    for (int i = 0; i < 10; ++i) {
        const std::string key = "k" + std::to_string(i);
        REQUIRE(f.store->storage_write(a, {write_of("col", key, "{}", "", i % 2 == 0 ? 2 : 1)}, acks)
                    .is_ok());
    }
    REQUIRE(f.store->storage_write(b, {write_of("col", "k5", "{}", "", 2)}, acks).is_ok());
    // The owner pages through its own 10 objects, 3 at a time; an insert behind the cursor is
    // not seen, one ahead of it is, nothing is repeated or skipped.
    std::vector<std::string> seen;
    StoragePage page;
    REQUIRE(f.store->storage_list(a, a, "col", 3, "", page).is_ok());
    for (const auto& o : page.objects)
        seen.push_back(o.key);
    REQUIRE_FALSE(page.cursor.empty());
    REQUIRE(f.store->storage_write(a, {write_of("col", "k0a", "{}")}, acks).is_ok());  // behind
    REQUIRE(f.store->storage_write(a, {write_of("col", "k9z", "{}")}, acks).is_ok());  // ahead
    while (!page.cursor.empty()) {
        const std::string cursor = page.cursor;
        REQUIRE(f.store->storage_list(a, a, "col", 3, cursor, page).is_ok());
        for (const auto& o : page.objects)
            seen.push_back(o.key);
    }
    CHECK(seen == std::vector<std::string>{"k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7", "k8",
                                           "k9", "k9z"});
    // Another user sees only a's public objects (k0, k2, k4, k6, k8).
    REQUIRE(f.store->storage_list(b, a, "col", 100, "", page).is_ok());
    CHECK(page.objects.size() == 5);
    for (const auto& o : page.objects)
        CHECK(o.permission_read == 2);
    // Without a user: everyone's public objects, by key then user id.
    REQUIRE(f.store->storage_list(b, "", "col", 100, "", page).is_ok());
    CHECK(page.objects.size() == 6);
    std::vector<std::pair<std::string, std::string>> order;
    for (const auto& o : page.objects)
        order.emplace_back(o.key, o.user_id);
    CHECK(std::is_sorted(order.begin(), order.end()));
    // The server sees everything.
    REQUIRE(f.store->storage_list("", "", "col", 100, "", page).is_ok());
    CHECK(page.objects.size() == 13);
    CHECK(page.cursor.empty());
    // Limits and cursors.
    CHECK(f.store->storage_list(a, a, "col", 101, "", page).message() ==
          "Invalid limit - limit must be between 1 and 100.");
    CHECK(f.store->storage_list(a, a, "col", 0, "", page).code() == Code::invalid_argument);
    CHECK(f.store->storage_list(a, a, "col", 10, "zz-not-a-cursor", page).message() ==
          "Invalid cursor.");
}

TEST_CASE("storage limits and validation, with Nakama's messages") {
    test::TestDatabase db;
    db.options.storage.max_value_bytes = 64;
    db.options.storage.max_batch = 3;
    auto owned = db.open();
    Store& store = *owned;
    std::vector<StorageAck> acks;
    const std::string u = "user-1";
    CHECK(store.storage_write(u, {write_of("", "k", "{}")}, acks).message() ==
          "Invalid collection or key value supplied. They must be set.");
    CHECK(store.storage_write(u, {write_of("c", "k", "[1]")}, acks).message() ==
          "Value must be a JSON object.");
    CHECK(store.storage_write(u, {write_of("c", "k", "{bad")}, acks).message() ==
          "Value must be a JSON object.");
    CHECK(store.storage_write(u, {write_of("c", "k", "{}", "", 3)}, acks).message() ==
          "Invalid Read permission supplied. It must be either 0, 1 or 2.");
    CHECK(store.storage_write(u, {write_of("c", "k", "{}", "", 1, 2)}, acks).message() ==
          "Invalid Write permission supplied. It must be either 0 or 1.");
    CHECK(store.storage_write(u, {write_of("c", "k", "{\"a\":\"" + std::string(80, 'x') + "\"}")},
                              acks)
              .message() == "Value is too large: at most 64 bytes.");
    CHECK(store.storage_write(u, {write_of(std::string(129, 'c'), "k", "{}")}, acks).code() ==
          Code::invalid_argument);
    std::string deep;
    for (int i = 0; i < 70; ++i)
        deep += "{\"a\":";
    deep += "1" + std::string(70, '}');
    db.options.storage.max_value_bytes = 65536;
    auto big = db.open();  // same database: a second store on it
    CHECK(big->storage_write(u, {write_of("c", "k", deep)}, acks).message() ==
          "Value must be a JSON object.");  // deeper than the nesting limit
    std::vector<StorageWrite> four(4, write_of("c", "k", "{}"));
    CHECK(store.storage_write(u, four, acks).message() == "Too many objects in one request: at most 3.");

    // A NUL byte in a collection, key or version: 400 on both engines (PostgreSQL's text cannot
    // hold one), for writes, reads, deletes and lists alike.
    using namespace std::string_literals;
    const std::string nul = "c\0x"s;
    const std::string message =
        "Invalid collection or key value supplied. They must not contain NUL characters.";
    CHECK(store.storage_write(u, {write_of(nul, "k", "{}")}, acks).message() == message);
    CHECK(store.storage_write(u, {write_of("c", nul, "{}")}, acks).message() == message);
    CHECK(store.storage_write(u, {write_of("c", "k", "{}", nul)}, acks).message() == message);
    std::vector<StorageObject> objects;
    CHECK(store.storage_read(u, {{nul, "k", u, ""}}, objects).message() == message);
    CHECK(store.storage_read(u, {{"c", "k", u, ""}, {"c", nul, u, ""}}, objects).message() ==
          message);
    CHECK(store.storage_delete(u, {{nul, "k", u, ""}}).message() == message);
    CHECK(store.storage_delete(u, {{"c", "k", u, nul}}).message() == message);
    StoragePage page;
    CHECK(store.storage_list(u, u, nul, 10, "", page).message() == message);
    CHECK(store.storage_list(u, u, "", 10, "", page).message() ==
          "Invalid collection value supplied. It must be set.");
}

TEST_CASE("wallets: 200 concurrent updates on one user are exact and never negative") {
    Fixture f;
    const std::string u = f.user("device-wallet-001");
    std::vector<WalletResult> results;
    REQUIRE(f.store->wallets_update({{u, {{"gold", 100}}, "{\"why\":\"grant\"}"}}, true, results)
                .is_ok());
    CHECK(results[0].previous.empty());
    CHECK(results[0].updated.at("gold") == 100);
    std::atomic<int> ok{0}, negative{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 200; ++i) {
        threads.emplace_back([&, i] {
            std::vector<WalletResult> r;
            // 150 spend 1 gold, 50 earn 1 gem; at most 100 spends can succeed.
            const Wallet change = i % 4 == 3 ? Wallet{{"gems", 1}} : Wallet{{"gold", -1}};
            const Status st = f.store->wallets_update({{u, change, "{}"}}, true, r);
            if (st.is_ok()) {
                ++ok;
                CHECK(r[0].updated.at(change.begin()->first) >= 0);
            } else {
                CHECK(st.message() == "wallet update rejected negative value at path 'gold'");
                ++negative;
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(ok == 150);  // 100 spends + 50 gems
    CHECK(negative == 50);
    Account a;
    REQUIRE(f.store->get_account(u, a).is_ok());
    CHECK(a.wallet == "{\"gems\":50,\"gold\":0}");
    // Ledger: one entry per successful update (plus the grant), newest first, paged.
    std::size_t entries = 0;
    LedgerPage page;
    std::string cursor;
    std::set<std::string> ids;
    do {
        REQUIRE(f.store->wallet_ledger_list(u, 40, cursor, page).is_ok());
        entries += page.items.size();
        for (const auto& it : page.items)
            ids.insert(it.id);
        cursor = page.cursor;
    } while (!cursor.empty());
    CHECK(entries == 151);
    CHECK(ids.size() == 151);
    REQUIRE(f.store->wallet_ledger_list(u, 1, "", page).is_ok());
    const LedgerItem newest = page.items.at(0);
    // The grant is the oldest.
    std::string last_cursor;
    LedgerItem oldest;
    cursor.clear();
    do {
        REQUIRE(f.store->wallet_ledger_list(u, 100, cursor, page).is_ok());
        if (!page.items.empty())
            oldest = page.items.back();
        cursor = page.cursor;
    } while (!cursor.empty());
    CHECK(oldest.changeset.at("gold") == 100);
    CHECK(oldest.metadata == "{\"why\":\"grant\"}");
    // Ledger metadata update merges top-level keys.
    LedgerItem updated;
    REQUIRE(f.store->wallet_ledger_update(oldest.id, "{\"audited\":true}", updated).is_ok());
    CHECK(updated.metadata == "{\"why\":\"grant\",\"audited\":true}");
    CHECK(updated.user_id == u);
    CHECK(f.store->wallet_ledger_update("no-such-id", "{}", updated).code() == Code::not_found);
    CHECK(f.store->wallet_ledger_update(oldest.id, "[1]", updated).code() == Code::invalid_argument);
    (void)newest;
}

TEST_CASE("wallets_update and multi_update are all or nothing") {
    Fixture f;
    const std::string a = f.user("device-multi-a-01");
    const std::string b = f.user("device-multi-b-01");
    std::vector<WalletResult> results;
    REQUIRE(f.store->wallets_update({{a, {{"gold", 10}}, ""}, {b, {{"gold", 1}}, ""}}, false, results)
                .is_ok());
    // b would go negative: a's change is not applied either.
    CHECK_FALSE(
        f.store->wallets_update({{a, {{"gold", -5}}, ""}, {b, {{"gold", -2}}, ""}}, true, results)
            .is_ok());
    CHECK(results.empty());
    Account acc;
    REQUIRE(f.store->get_account(a, acc).is_ok());
    CHECK(acc.wallet == "{\"gold\":10}");
    // Grant an item and charge its price in one transaction.
    std::vector<StorageAck> acks;
    REQUIRE(f.store
                ->multi_update({write_of("inventory", "sword", "{\"count\":1}", "*", 1, 0, a)}, {},
                               {{a, {{"gold", -7}}, "{\"item\":\"sword\"}"}}, true, acks, results)
                .is_ok());
    CHECK(acks.size() == 1);
    CHECK(results.at(0).updated.at("gold") == 3);
    // Not enough gold for a second one: no item either.
    const Status st =
        f.store->multi_update({write_of("inventory", "shield", "{\"count\":1}", "*", 1, 0, a)}, {},
                              {{a, {{"gold", -7}}, "{}"}}, true, acks, results);
    CHECK(st.message() == "wallet update rejected negative value at path 'gold'");
    CHECK(acks.empty());
    CHECK(read_one(*f.store, "", "inventory", "shield", a).empty());
    REQUIRE(f.store->get_account(a, acc).is_ok());
    CHECK(acc.wallet == "{\"gold\":3}");
    // An unknown user.
    CHECK(f.store->wallets_update({{"no-such-user", {{"gold", 1}}, ""}}, false, results).code() ==
          Code::not_found);
    // Account metadata (server side) and deletion of a user's objects with the account.
    AccountUpdate meta;
    meta.metadata = "{\"vip\":true}";
    REQUIRE(f.store->update_account(a, meta).is_ok());
    REQUIRE(f.store->get_account(a, acc).is_ok());
    CHECK(acc.metadata == "{\"vip\":true}");
    REQUIRE(f.store->delete_account(a).is_ok());
    CHECK(read_one(*f.store, "", "inventory", "sword", a).empty());
    LedgerPage page;
    REQUIRE(f.store->wallet_ledger_list(a, 10, "", page).is_ok());
    CHECK(page.items.empty());
}
