// The size bound on session vars (session.max_vars_bytes), shared by authenticate and session
// refresh: vars are copied into the session and refresh tokens, and a token too large for the
// request headers would be minted and then refused with 431 on every use.
#pragma once

#include <map>
#include <string>

#include "core/status.hpp"

namespace nk::auth {
class Tokens;
}

namespace nk::api {

// OK when `vars`, written as the JSON object a token carries, is at most
// tokens.options().max_vars_bytes long (no vars is 0 bytes); otherwise 400 code 3.
Status check_vars_size(const auth::Tokens& tokens, const std::map<std::string, std::string>& vars);

}  // namespace nk::api
