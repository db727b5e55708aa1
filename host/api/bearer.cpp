#include "api/bearer.hpp"

#include "api/services.hpp"
#include "auth/tokens.hpp"

namespace nk::api {

namespace {

// Verifies the Bearer token of `request` into `claims`; fills the client address of `out`.
Status verify_bearer(const net::Request& request, Services& services, RequestContext& out,
                     auth::TokenClaims& claims) {
    if (services.tokens == nullptr)
        return Status::unimplemented("Sessions are not available");
    const std::string_view header = request.header("Authorization");
    if (header.empty())
        return Status::unauthenticated("Auth token required");
    constexpr std::string_view prefix = "bearer ";
    bool ok = header.size() > prefix.size();
    for (std::size_t i = 0; ok && i < prefix.size(); ++i) {
        char c = header[i];
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c + ('a' - 'A'));
        ok = c == prefix[i];
    }
    auto verified = ok ? services.tokens->verify_session(header.substr(prefix.size()))
                       : std::nullopt;
    if (!verified)
        return Status::unauthenticated("Auth token invalid");
    claims = std::move(*verified);
    out.session_expiry = claims.expires_at;
    out.client_ip = request.client_ip;
    out.client_port = request.client_port;
    return Status::ok();
}

// The token's user into the caller's context (a copy when the claims are still wanted, a move
// otherwise).
void set_user(RequestContext& out, auth::TokenClaims claims) {
    out.user_id = std::move(claims.user_id);
    out.username = std::move(claims.username);
    out.vars = std::move(claims.vars);
}

}  // namespace

Status authenticate_bearer(const net::Request& request, Services& services, RequestContext& out,
                           auth::TokenClaims& claims) {
    Status s = verify_bearer(request, services, out, claims);
    if (s)
        set_user(out, claims);
    return s;
}

Status authenticate_bearer(const net::Request& request, Services& services, RequestContext& out) {
    auth::TokenClaims claims;
    Status s = verify_bearer(request, services, out, claims);
    if (s)
        set_user(out, std::move(claims));
    return s;
}

}  // namespace nk::api
