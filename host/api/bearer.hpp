// Bearer-token authentication shared by every endpoint that needs a user
// (account, session logout, event, rpc; realtime uses Tokens directly).
//
// Cheap and non-blocking (HMAC + a shared-lock cache lookup): call it on the
// io thread. Thread-safe.
#pragma once

#include "core/context.hpp"
#include "core/status.hpp"
#include "net/http.hpp"

namespace nk::auth {
struct TokenClaims;
}

namespace nk::api {

struct Services;

// Checks `Authorization: Bearer <jwt>`. No header → 401 code 16 "Auth token
// required"; anything else wrong (scheme, signature, alg, expiry, revoked) →
// 401 "Auth token invalid". On success fills user_id, username, vars,
// session_expiry, client_ip and client_port of `out` (other fields untouched).
// Without Services::tokens answers 501 code 12.
Status authenticate_bearer(const net::Request& request, Services& services, RequestContext& out);
// Same, also returning the verified claims (token id etc.).
Status authenticate_bearer(const net::Request& request, Services& services, RequestContext& out,
                           auth::TokenClaims& claims);

}  // namespace nk::api
