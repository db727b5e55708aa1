#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "auth/revocation.hpp"

using nk::auth::RevocationCache;

TEST_CASE("revoked session and refresh ids are tracked separately") {
    RevocationCache cache(3600);
    CHECK(cache.session_valid("u", "t1", 100));
    cache.revoke_session("t1", 200, 100);
    CHECK_FALSE(cache.session_valid("u", "t1", 100));
    CHECK(cache.refresh_valid("u", "t1", 100));
    cache.revoke_refresh("t1", 300, 100);
    CHECK_FALSE(cache.refresh_valid("u", "t1", 100));
    cache.restore_session("t1");
    CHECK(cache.session_valid("u", "t1", 100));
}

TEST_CASE(
    "a user invalidation kills older tokens but not ones minted after it in the same second") {
    RevocationCache cache(3600);
    cache.revoke_user("u", 1000);
    CHECK_FALSE(cache.session_valid("u", "old", 999));
    CHECK_FALSE(cache.session_valid("u", "same-second", 1000));
    CHECK(cache.session_valid("u", "later", 1001));
    cache.note_issued("u", "fresh", 1000);
    CHECK(cache.session_valid("u", "fresh", 1000));
    CHECK(cache.refresh_valid("u", "fresh", 1000));
    CHECK(cache.session_valid("other", "x", 10));
    // Another invalidation in the same second also kills tokens minted since the first.
    cache.revoke_user("u", 1000);
    CHECK_FALSE(cache.session_valid("u", "fresh", 1000));
    cache.note_issued("u", "fresh", 1000);
    // A second invalidation in a later second forgets the same-second exemptions.
    cache.revoke_user("u", 1002);
    CHECK_FALSE(cache.session_valid("u", "fresh", 1000));
}

TEST_CASE("entries expire with their tokens") {
    RevocationCache cache(100);
    cache.revoke_session("a", 50, 0);
    cache.revoke_user("u", 0);
    CHECK(cache.size() == 2);
    cache.revoke_session("b", 500, 200);  // sweep runs: "a" expired at 50, user ttl 100 passed
    CHECK(cache.size() == 1);
    CHECK_FALSE(cache.session_valid("u", "b", 1));
}

TEST_CASE("concurrent revocations and checks") {
    RevocationCache cache(3600);
    std::atomic<int> invalid{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 2000; ++i) {
                const std::string tid = std::to_string(t) + ":" + std::to_string(i);
                cache.revoke_session(tid, 10'000, i);
                if (!cache.session_valid("u", tid, 1))
                    invalid.fetch_add(1);
                cache.revoke_user("user" + std::to_string(t), i);
            }
        });
    }
    for (auto& th : threads)
        th.join();
    CHECK(invalid.load() == 8000);
}
