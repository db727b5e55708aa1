// Tokens: session JWTs (HS256), the server key and http key checks, and revocation.
//
// Tokens are wire-compatible with Nakama's: header {"alg":"HS256","typ":"JWT"},
// claims tid (UUIDv4), uid, usn, vrs (omitted when empty), exp, iat (unix
// seconds), base64url without padding. Session tokens are signed with
// session.encryption_key, refresh tokens with session.refresh_encryption_key
// (the constructor refuses equal or empty keys).
//
// Verification accepts HS256 only, compares signatures in constant time,
// requires exp in the future and a well-formed uid/tid, and never throws on
// malformed input. All members are thread-safe; verification takes no
// exclusive lock, so it can run on io threads at high rates.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "auth/options.hpp"
#include "auth/revocation.hpp"
#include "core/status.hpp"
#include "core/uuid.hpp"

namespace nk::auth {

struct TokenClaims {
    std::string token_id;                     // tid
    std::string user_id;                      // uid
    std::string username;                     // usn
    std::map<std::string, std::string> vars;  // vrs
    std::int64_t expires_at = 0;              // exp
    std::int64_t issued_at = 0;               // iat
};

enum class TokenKind { session, refresh };

// A revocation as it travels between nodes. `issued` records a token minted in the same second
// as an invalidation of its user (see RevocationCache), so the other nodes do not refuse it.
struct Revocation {
    enum class Kind { session = 1, refresh = 2, user = 3, issued = 4 };
    Kind kind = Kind::user;
    std::string user_id;
    std::string token_id;        // session, refresh, issued
    std::int64_t at = 0;         // unix seconds
    std::int64_t expires_at = 0;  // when the entry can be forgotten
};

struct IssuedSession {
    std::string token;
    std::string refresh_token;
    TokenClaims session;  // claims of `token` (refresh differs only in expires_at)
    std::int64_t refresh_expires_at = 0;
};

class Tokens {
  public:
    using Clock = std::function<std::int64_t()>;  // unix seconds

    // Throws std::invalid_argument with validate()'s message on bad options.
    explicit Tokens(Options options, Clock clock = {});

    // Checks the options: keys non-empty, session and refresh keys different, expiries > 0.
    static Status validate(const Options& options);

    const Options& options() const { return options_; }
    std::int64_t now() const;

    // A new session for a user: fresh tid, iat = now. With single_session, every
    // earlier session of the user is invalidated first.
    IssuedSession issue(const std::string& user_id, const std::string& username,
                        const std::map<std::string, std::string>& vars);
    // New session and refresh tokens for a refresh: same tid and iat as `refresh`,
    // new expiries, given username/vars. Re-validates the session tid.
    IssuedSession reissue(const TokenClaims& refresh, const std::string& username,
                          const std::map<std::string, std::string>& vars);

    // Signs arbitrary claims with the key of `kind` (tests use it for expired tokens).
    std::string sign(const TokenClaims& claims, TokenKind kind) const;

    // Signature, algorithm and expiry only (no revocation check). nullopt when invalid.
    std::optional<TokenClaims> parse(std::string_view token, TokenKind kind) const;
    // parse() plus the revocation check.
    std::optional<TokenClaims> verify_session(std::string_view token) const;
    std::optional<TokenClaims> verify_refresh(std::string_view token) const;

    void revoke_session(const TokenClaims& claims);
    void revoke_refresh(const TokenClaims& claims);
    void revoke_user(const std::string& user_id);  // all sessions issued until now

    // Several nodes: every revocation made here (above, and single_session's in issue()) is
    // also handed to `publisher`, which carries it to the other nodes; they apply() it. Set
    // before serving; the publisher must not block.
    void set_publisher(std::function<void(const Revocation&)> publisher);
    // Another node's revocation.
    void apply(const Revocation& revocation);

    // `Authorization` header value against socket.server_key:
    // empty → 401 "Server key required", anything else wrong → 401 "Server key invalid".
    Status check_server_key(std::string_view authorization) const;
    // runtime.http_key, compared in constant time.
    bool check_http_key(std::string_view key) const;

    const RevocationCache& revocations() const { return revocations_; }

  private:
    std::string sign_with(const TokenClaims& claims, const std::string& key) const;

    void publish(Revocation r) const;

    Options options_;
    Clock clock_;
    RevocationCache revocations_;
    std::function<void(const Revocation&)> publisher_;
};

// Constant-time equality of two byte strings (length is not secret).
bool constant_time_equal(std::string_view a, std::string_view b);
// A random RFC 4122 version 4 UUID in canonical lower-case form (core/uuid.hpp).
using nk::random_uuid_v4;
// True when `s` is a canonical UUID (8-4-4-4-12 hex digits).
bool is_uuid(std::string_view s);

}  // namespace nk::auth
