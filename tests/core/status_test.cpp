#include <doctest/doctest.h>

#include "core/status.hpp"

using nk::Code;
using nk::Status;

TEST_CASE("status maps gRPC codes to Nakama's HTTP statuses") {
    CHECK(Status::http_status_for(Code::invalid_argument) == 400);
    CHECK(Status::http_status_for(Code::not_found) == 404);
    CHECK(Status::http_status_for(Code::already_exists) == 409);
    CHECK(Status::http_status_for(Code::permission_denied) == 403);
    CHECK(Status::http_status_for(Code::failed_precondition) == 400);
    CHECK(Status::http_status_for(Code::unimplemented) == 501);
    CHECK(Status::http_status_for(Code::internal) == 500);
    CHECK(Status::http_status_for(Code::unavailable) == 503);
    CHECK(Status::http_status_for(Code::unauthenticated) == 401);
}

TEST_CASE("status JSON body escapes the message") {
    Status s(Code::invalid_argument, "bad \"name\"\n\x01");
    CHECK(s.to_json() == "{\"code\":3,\"message\":\"bad \\\"name\\\"\\n\\u0001\"}");
    CHECK_FALSE(s.is_ok());
    CHECK(Status::ok().is_ok());
}
