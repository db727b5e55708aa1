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
