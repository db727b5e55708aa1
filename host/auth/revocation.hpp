// RevocationCache: which otherwise valid tokens must be refused.
//
// Nakama's semantics: a token is valid unless its token id (`tid`) was
// revoked (logout with a token), or its user had a full invalidation after it
// was issued (logout with an empty body, account deletion, single_session).
// Session and refresh tokens share a `tid` but are revoked separately, as
// logout names them separately. A refresh re-validates the session `tid`
// (Nakama re-adds the refreshed session to its cache).
//
// `iat` has one-second resolution, so a full invalidation at second S would
// also kill tokens issued later in that same second. To avoid that, tokens
// minted after the invalidation (note_issued) are remembered by `tid` for that
// second.
//
// Entries expire with the tokens they concern, so memory stays bounded by
// the number of revocations within one token lifetime. Thread-safe: a
// shared_mutex keeps the hot path (checks) concurrent.
//
// Multi-node deployments: this cache is per process; Tokens publishes every
// revocation (auth/tokens.hpp) and applies the other nodes' (on PostgreSQL,
// store/postgres_revocations.hpp carries them), so a logged-out token is
// refused everywhere.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <unordered_map>

namespace nk::auth {

class RevocationCache {
  public:
    // `user_invalidation_ttl_sec`: how long a per-user invalidation is kept;
    // must be at least the longest token lifetime.
    explicit RevocationCache(std::int64_t user_invalidation_ttl_sec);

    void revoke_session(const std::string& tid, std::int64_t expires_at, std::int64_t now);
    void revoke_refresh(const std::string& tid, std::int64_t expires_at, std::int64_t now);
    void restore_session(const std::string& tid);
    // Every token of `user_id` issued at or before `now` becomes invalid. An invalidation older
    // than the one already recorded (another node's, arriving late) changes nothing.
    void revoke_user(const std::string& user_id, std::int64_t now);
    // Whether `user_id` has an invalidation at second `at` (a token minted in that second then
    // needs note_issued, on every node).
    bool invalidated_at(const std::string& user_id, std::int64_t at) const;
    // Records a token minted at `iat` so a same-second invalidation does not hit it.
    void note_issued(const std::string& user_id, const std::string& tid, std::int64_t iat);

    bool session_valid(const std::string& user_id, const std::string& tid, std::int64_t iat) const;
    bool refresh_valid(const std::string& user_id, const std::string& tid, std::int64_t iat) const;

    std::size_t size() const;  // number of entries, for tests and metrics

  private:
    struct UserInvalidation {
        std::int64_t at = 0;              // tokens with iat <= at are invalid...
        std::set<std::string> issued_at;  // ...except these tids, minted in second `at` afterwards
    };
    bool user_valid_locked(const std::string& user_id, const std::string& tid,
                           std::int64_t iat) const;
    void sweep_locked(std::int64_t now);

    const std::int64_t user_ttl_;
    mutable std::shared_mutex mutex_;
    std::unordered_map<std::string, std::int64_t> sessions_;   // tid -> expires_at
    std::unordered_map<std::string, std::int64_t> refreshes_;  // tid -> expires_at
    std::unordered_map<std::string, UserInvalidation> users_;  // user id -> invalidation
    std::int64_t next_sweep_ = 0;
};

}  // namespace nk::auth
