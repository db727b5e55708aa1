#include "api/bearer.hpp"

#include "api/services.hpp"
#include "auth/tokens.hpp"

namespace nk::api {

Status authenticate_bearer(const net::Request& request, Services& services, RequestContext& out,
                           auth::TokenClaims& claims) {
    if (services.tokens == nullptr)
        return Status::unimplemented("Sessions are not available");
    const std::string_view header = request.header("Authorization");
    if (header.empty())
        return Status::unauthenticated("Auth token required");
    const Status invalid = Status::unauthenticated("Auth token invalid");
    constexpr std::string_view prefix = "bearer ";
    if (header.size() <= prefix.size())
        return invalid;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char c = header[i];
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c + ('a' - 'A'));
        if (c != prefix[i])
            return invalid;
    }
    auto verified = services.tokens->verify_session(header.substr(prefix.size()));
    if (!verified)
        return invalid;
    claims = std::move(*verified);
    out.user_id = claims.user_id;
    out.username = claims.username;
    out.vars = claims.vars;
    out.session_expiry = claims.expires_at;
    out.client_ip = request.client_ip;
    out.client_port = request.client_port;
    return Status::ok();
}

Status authenticate_bearer(const net::Request& request, Services& services, RequestContext& out) {
    auth::TokenClaims claims;
    return authenticate_bearer(request, services, out, claims);
}

}  // namespace nk::api
