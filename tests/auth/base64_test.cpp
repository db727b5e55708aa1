#include <doctest/doctest.h>

#include "auth/base64.hpp"

using namespace nk::auth;

TEST_CASE("base64url round-trips every length without padding") {
    std::string bytes;
    for (int n = 0; n < 70; ++n) {
        const std::string enc = base64url_encode(bytes);
        CHECK(enc.find('=') == std::string::npos);
        CHECK(enc.find('+') == std::string::npos);
        CHECK(enc.find('/') == std::string::npos);
        auto dec = base64url_decode(enc);
        REQUIRE(dec);
        CHECK(*dec == bytes);
        bytes.push_back(static_cast<char>(n * 37 + 251));
    }
}

TEST_CASE("base64url rejects foreign characters, bad lengths and non-canonical tails") {
    CHECK_FALSE(base64url_decode("ab+c"));
    CHECK_FALSE(base64url_decode("ab/c"));
    CHECK_FALSE(base64url_decode("abc="));
    CHECK_FALSE(base64url_decode("a"));
    CHECK_FALSE(base64url_decode("abcde"));
    CHECK(base64url_decode("QQ"));        // "A"
    CHECK_FALSE(base64url_decode("QR"));  // same byte, non-zero trailing bits
}

TEST_CASE("standard base64 matches known vectors and accepts padding") {
    CHECK(base64_encode("defaultkey:") == "ZGVmYXVsdGtleTo=");
    CHECK(*base64_decode("ZGVmYXVsdGtleTo=") == "defaultkey:");
    CHECK(*base64_decode("Zm9vYg==") == "foob");
    CHECK_FALSE(base64_decode("Zm9vYg="));
    CHECK_FALSE(base64_decode("Zm9v!g=="));
}
