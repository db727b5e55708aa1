// The storage and wallet calls of the plugin ABI (1.2) through the C++ wrapper, against the
// real SQLite store: server rights (no permission checks, system objects), atomic wallet
// batches, the ledger, account metadata.
#include <doctest/doctest.h>

#include "runtime/runtime.hpp"
#include "runtime_support.hpp"
#include "store/sqlite_account_store.hpp"

using namespace nk;
using namespace nk::test;

namespace {

struct StorageHost {
    StorageHost() {
        install(tmp / "modules", {fixture("storage_api")});
        store::Options so;
        so.address = (tmp / "game.db").string();
        so.bcrypt_cost = 4;
        db = std::make_unique<store::SqliteAccountStore>(so);
        runtime::Options o;
        o.path = (tmp / "modules").string();
        o.data_dir = tmp.path().string();
        runtime::Dependencies deps;
        deps.accounts = db.get();
        deps.storage = db.get();
        rt = std::make_unique<runtime::Runtime>(o, deps);
        REQUIRE(rt->load_all().is_ok());
    }
    std::string rpc(const std::string& id, const std::string& payload) {
        std::string out;
        const Status st = rt->rpc(id, RequestContext{}, payload, out);
        REQUIRE(st.is_ok());
        return out;
    }
    std::string user(const std::string& device) {
        store::AuthResult r;
        REQUIRE(db->authenticate_device(device, store::generate_username(), true, r).is_ok());
        return r.user_id;
    }
    TempDir tmp;
    std::unique_ptr<store::SqliteAccountStore> db;
    std::unique_ptr<runtime::Runtime> rt;
};

}  // namespace

TEST_CASE("nk.Storage*: server writes any user's and system objects, bypassing permissions") {
    StorageHost h;
    const std::string u = h.user("device-abi-store-01");
    // A server write of permission_write 0 on a user's object, then another server write.
    CHECK(h.rpc("s_write", u + "|inv|gem|{\"n\":1}||1|0") ==
          u + " 082c26c8a6bc75226a31da5495cc9292");  // the version: MD5 of the value
    CHECK(h.rpc("s_write", u + "|inv|gem|{\"n\":2}||1|0").rfind(u + " ", 0) == 0);
    CHECK(h.rpc("s_read", u + "|inv|gem") == "inv/gem@" + u + "={\"n\":2} r1w0;");
    // System objects: user "" is the nil UUID.
    const std::string sys(store::kSystemUserId);
    CHECK(h.rpc("s_write", "|config|shop|{\"sale\":true}||2|0").rfind(sys + " ", 0) == 0);
    CHECK(h.rpc("s_read", "|config|shop") == "config/shop@" + sys + "={\"sale\":true} r2w0;");
    // Conditional write through the ABI: "*" on an existing object.
    CHECK(h.rpc("s_write", u + "|inv|gem|{}|*|1|1") ==
          "error 3 Storage write rejected - version check failed.");
    CHECK(h.rpc("s_write", u + "|inv|gem|[1]||1|1") == "error 3 Value must be a JSON object.");
    // Listing as the server, and as the user (sees its own readable objects), paged.
    REQUIRE(h.rpc("s_write", u + "|inv|axe|{}||0|1").rfind(u, 0) == 0);
    CHECK(h.rpc("s_list", "|" + u + "|inv|10|") ==
          "inv/axe@" + u + "={} r0w1;inv/gem@" + u + "={\"n\":2} r1w0; cursor=");
    CHECK(h.rpc("s_list", u + "|" + u + "|inv|10|") == "inv/gem@" + u + "={\"n\":2} r1w0; cursor=");
    const std::string first = h.rpc("s_list", "|" + u + "|inv|1|");
    REQUIRE(first.find(" cursor=") != std::string::npos);
    const std::string cursor = first.substr(first.find(" cursor=") + 8);
    CHECK_FALSE(cursor.empty());
    CHECK(h.rpc("s_list", "|" + u + "|inv|1|" + cursor) ==
          "inv/gem@" + u + "={\"n\":2} r1w0; cursor=");
    CHECK(h.rpc("s_list", "|" + u + "|inv|101|") ==
          "error 3 Invalid limit - limit must be between 1 and 100.");
    // The server deletes a permission_write 0 object.
    CHECK(h.rpc("s_delete", u + "|inv|gem") == "deleted");
    CHECK(h.rpc("s_read", u + "|inv|gem").empty());
}

TEST_CASE("nk.Wallet*: updates refuse negatives, batches are all or nothing, the ledger pages") {
    StorageHost h;
    const std::string a = h.user("device-abi-wallet-a");
    const std::string b = h.user("device-abi-wallet-b");
    CHECK(h.rpc("w_update", a + "|gold|50") == " -> gold:50,");
    CHECK(h.rpc("w_update", a + "|gold|-20") == "gold:50, -> gold:30,");
    CHECK(h.rpc("w_update", a + "|gold|-31") ==
          "error 3 wallet update rejected negative value at path 'gold'");
    CHECK(h.rpc("w_update", a + "|gems|5") == "gold:30, -> gems:5,gold:30,");
    // b has no gold: -1 for both changes neither.
    CHECK(h.rpc("w_both", a + "|" + b + "|-1").rfind("error 3 ", 0) == 0);
    CHECK(h.rpc("w_both", a + "|" + b + "|2") == "gems:5,gold:32,;gold:2,;");
    CHECK(h.rpc("w_update", "no-such-user|gold|1").rfind("error 5 ", 0) == 0);
    // Ledger: the three successful single updates (w_both does not record), newest first.
    CHECK(h.rpc("w_ledger", a) ==
          "gems:5,{\"source\":\"test\"};gold:-20,{\"source\":\"test\"};gold:50,{\"source\":\"test\"};"
          " updated={\"source\":\"test\",\"seen\":true}");
    // GET /v2/account's wallet shows it; account metadata set by the server.
    CHECK(h.rpc("a_meta", a + "|{\"vip\":true}") == "{\"vip\":true} wallet={\"gems\":5,\"gold\":32}");
    CHECK(h.rpc("a_meta", a + "|[1]").rfind("error 3 ", 0) == 0);
}
