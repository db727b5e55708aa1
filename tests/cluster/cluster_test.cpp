// Two nodes on one PostgreSQL database: what one node revokes, the other refuses.
#include <doctest/doctest.h>
#include <httplib.h>
#include <rapidjson/document.h>

#include <chrono>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "security_support.hpp"
#include "support/postgres.hpp"

using nk::test::Nkhost;
using nk::test::PostgresServer;
using nk::test::RawConnection;
namespace ws = nk::test::ws;

namespace {

struct Session {
    std::string token;
    std::string refresh_token;
};

Session authenticate(const Nkhost& node, const std::string& device) {
    auto c = node.client();
    c->set_basic_auth("defaultkey", "");
    auto res = c->Post("/v2/account/authenticate/device?create=true",
                       R"({"id":")" + device + R"("})", "application/json");
    REQUIRE(res);
    REQUIRE(res->status == 200);
    rapidjson::Document d;
    d.Parse(res->body.c_str());
    return {d["token"].GetString(), d["refresh_token"].GetString()};
}

int account_status(const Nkhost& node, const std::string& token) {
    auto c = node.client();
    auto res = c->Get("/v2/account", {{"Authorization", "Bearer " + token}});
    return res ? res->status : 0;
}

// Polls `condition` until it holds or `limit` passes (propagation is expected within a second;
// the limit is generous so that a loaded machine does not fail the test).
bool eventually(const std::function<bool()>& condition,
                std::chrono::seconds limit = std::chrono::seconds(15)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition())
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return condition();
}

struct Cluster {
    Cluster() : address(PostgresServer::shared().create_database()) {
        const auto migrated =
            nk::test::run_nkhost({"migrate", "up", "--database.address", address});
        REQUIRE_MESSAGE(migrated.exit_code == 0, migrated.output);
    }
    std::vector<std::string> args() const {
        return {"--database.address", address, "--database.bcrypt_cost", "4"};
    }
    std::string address;
};

}  // namespace

TEST_CASE("a token from one node works on the other; logouts and deletions on one are refused "
          "on the other, and a node started later knows them") {
    Cluster cluster;
    Nkhost a(cluster.args());
    Nkhost b(cluster.args());

    // Same keys, same database: a token signed by A verifies on B.
    const Session s1 = authenticate(a, "cluster-device-0001");
    CHECK(account_status(b, s1.token) == 200);

    // Logout of one session token on A.
    {
        auto c = a.client();
        auto res = c->Post("/v2/session/logout", {{"Authorization", "Bearer " + s1.token}},
                           R"({"token":")" + s1.token + R"("})", "application/json");
        REQUIRE(res);
        CHECK(res->status == 200);
    }
    CHECK(account_status(a, s1.token) == 401);
    CHECK(eventually([&] { return account_status(b, s1.token) == 401; }));

    // Logout of every session on B, with a socket of that user open on A.
    const Session s2 = authenticate(b, "cluster-device-0002");
    CHECK(account_status(a, s2.token) == 200);
    RawConnection socket_on_a(a.port());
    REQUIRE(socket_on_a.send(ws::upgrade_request("/ws?format=json&token=" + s2.token)));
    CHECK_FALSE(socket_on_a.closed_by_peer(std::chrono::milliseconds(500)));
    {
        auto c = b.client();
        auto res = c->Post("/v2/session/logout", {{"Authorization", "Bearer " + s2.token}}, "{}",
                           "application/json");
        REQUIRE(res);
        CHECK(res->status == 200);
    }
    CHECK(eventually([&] { return account_status(a, s2.token) == 401; }));
    CHECK(socket_on_a.closed_by_peer(std::chrono::seconds(20)));

    // Account deletion on A.
    const Session s3 = authenticate(a, "cluster-device-0003");
    CHECK(account_status(b, s3.token) == 200);
    {
        auto c = a.client();
        auto res = c->Delete("/v2/account", {{"Authorization", "Bearer " + s3.token}});
        REQUIRE(res);
        CHECK(res->status == 200);
    }
    CHECK(eventually([&] { return account_status(b, s3.token) == 401; }));
    CHECK(b.metric("nkhost_cluster_revocations_applied") >= 2);
    CHECK(a.metric("nkhost_cluster_revocations_applied") >= 1);

    // A node started now refuses what was revoked before it existed.
    Nkhost c(cluster.args());
    CHECK(account_status(c, s1.token) == 401);
    CHECK(account_status(c, s2.token) == 401);
    // ...and accepts what was not.
    const Session s4 = authenticate(a, "cluster-device-0004");
    CHECK(account_status(c, s4.token) == 200);
}

TEST_CASE("single_session across nodes: a login on one node ends the earlier sessions on the "
          "other, and the new token works everywhere at once") {
    Cluster cluster;
    auto args = cluster.args();
    args.insert(args.end(), {"--session.single_session", "true"});
    Nkhost a(args);
    Nkhost b(args);
    const Session first = authenticate(a, "cluster-single-0001");
    CHECK(account_status(b, first.token) == 200);
    const Session second = authenticate(b, "cluster-single-0001");
    // The token minted in the same second as the invalidation is valid on the other node too.
    CHECK(eventually([&] { return account_status(a, first.token) == 401; }));
    CHECK(account_status(a, second.token) == 200);
    CHECK(account_status(b, second.token) == 200);
    CHECK(account_status(b, first.token) == 401);
}

TEST_CASE("single_socket across nodes: a socket opened on one node closes the user's socket on "
          "the other") {
    Cluster cluster;
    auto args = cluster.args();
    args.insert(args.end(), {"--session.single_socket", "true"});
    Nkhost a(args);
    Nkhost b(args);
    const Session s = authenticate(a, "cluster-socket-0001");
    const std::string upgrade = ws::upgrade_request("/ws?format=json&token=" + s.token);
    RawConnection first(a.port());
    REQUIRE(first.send(upgrade));
    CHECK_FALSE(first.closed_by_peer(std::chrono::milliseconds(500)));
    RawConnection second(b.port());
    REQUIRE(second.send(upgrade));
    CHECK(first.closed_by_peer(std::chrono::seconds(20)));
    CHECK_FALSE(second.closed_by_peer(std::chrono::milliseconds(500)));
    CHECK(a.metric("nkhost_socket_ws_closed", {"reason=\"kicked\""}) == 1);
}
