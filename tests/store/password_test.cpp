#include <doctest/doctest.h>

#include "store/password.hpp"

using namespace nk::store;

TEST_CASE("bcrypt hashes verify and carry the configured cost") {
    auto h = bcrypt_hash("correct horse", 4);
    REQUIRE(h);
    CHECK(h->rfind("$2b$04$", 0) == 0);
    CHECK(h->size() == 60);
    CHECK(bcrypt_verify("correct horse", *h));
    CHECK_FALSE(bcrypt_verify("correct horsE", *h));
    CHECK_FALSE(bcrypt_verify("", *h));
    CHECK_FALSE(bcrypt_verify("correct horse", ""));
    CHECK_FALSE(bcrypt_verify("correct horse", "not a hash"));
    auto h2 = bcrypt_hash("correct horse", 4);
    CHECK(*h2 != *h);  // salted
    auto h10 = bcrypt_hash("password10", 10);
    REQUIRE(h10);
    CHECK(h10->rfind("$2b$10$", 0) == 0);
}

TEST_CASE("passwords with an embedded NUL are refused, not truncated") {
    CHECK_FALSE(bcrypt_hash(std::string("abc\0defghij", 11), 4));
    auto h = bcrypt_hash("abc", 4);
    CHECK_FALSE(bcrypt_verify(std::string("abc\0zzzzzz", 10), *h));
}

TEST_CASE("passwords longer than bcrypt's 72 bytes are refused, not truncated") {
    const std::string at_limit(nk::store::kMaxPasswordBytes, 'p');
    const auto hash = nk::store::bcrypt_hash(at_limit, 4);
    REQUIRE(hash);
    CHECK(nk::store::bcrypt_verify(at_limit, *hash));
    // bcrypt itself would accept these as the same password as `at_limit`.
    CHECK_FALSE(nk::store::bcrypt_verify(at_limit + "x", *hash));
    CHECK_FALSE(nk::store::bcrypt_verify(at_limit + "different tail", *hash));
    CHECK_FALSE(nk::store::bcrypt_hash(at_limit + "x", 4));
    CHECK_FALSE(nk::store::bcrypt_hash(std::string(1000, 'p'), 4));
}
