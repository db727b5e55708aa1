// AccountStore: users, their device/custom/email identities, and profiles.
//
// Every call blocks (disk I/O, bcrypt, waiting for a connection): call it on
// the BlockingPool, never on an io thread. Implementations are thread-safe;
// any number of threads may call concurrently.
//
// Errors are nk::Status values carrying Nakama's codes and messages, ready to
// send to the client: "User account not found." (5), "User account banned."
// (7), "Username is already in use." (6), "Invalid credentials." (16), and
// internal (13) errors with Nakama's wording for database failures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace nk::store {

// Result of an authenticate_* call.
struct AuthResult {
    std::string user_id;
    std::string username;
    bool created = false;
};

// A user account as GET /v2/account shows it. Empty strings stand for NULL;
// times are unix seconds, 0 when unset.
struct Account {
    std::string id;
    std::string username;
    std::string display_name;
    std::string avatar_url;
    std::string lang_tag;
    std::string location;
    std::string timezone;
    std::string metadata = "{}";
    std::string wallet = "{}";
    std::string email;
    std::string custom_id;
    std::vector<std::string> devices;
    std::int64_t create_time = 0;
    std::int64_t update_time = 0;
    std::int64_t verify_time = 0;
    std::int64_t disable_time = 0;
};

// Longest profile values the schema's CHECK constraints accept, in characters (code points, as
// SQLite's length() and Postgres' varchar count them, not bytes). Nakama's limits.
constexpr std::size_t kMaxDisplayNameChars = 255;
constexpr std::size_t kMaxAvatarUrlChars = 512;
constexpr std::size_t kMaxLangTagChars = 18;
constexpr std::size_t kMaxLocationChars = 255;
constexpr std::size_t kMaxTimezoneChars = 255;

// PUT /v2/account: nullopt = untouched; "" = cleared (set NULL), except username.
struct AccountUpdate {
    std::optional<std::string> username;
    std::optional<std::string> display_name;
    std::optional<std::string> avatar_url;
    std::optional<std::string> lang_tag;
    std::optional<std::string> location;
    std::optional<std::string> timezone;
    // A JSON object (server calls only: clients cannot set it, as in Nakama).
    std::optional<std::string> metadata;

    bool empty() const {
        return !username && !display_name && !avatar_url && !lang_tag && !location && !timezone &&
               !metadata;
    }
};

// The minimum a session refresh needs to know about a user.
struct UserRef {
    std::string user_id;
    std::string username;
};

class AccountStore {
  public:
    virtual ~AccountStore() = default;

    // Find the account owning `id`, or create it when `create` (with `username`,
    // which must be non-empty: the API layer generates one when the client gave none).
    // Concurrent calls for the same new id create exactly one account.
    virtual Status authenticate_device(std::string_view device_id, std::string_view username,
                                       bool create, AuthResult& out) = 0;
    virtual Status authenticate_custom(std::string_view custom_id, std::string_view username,
                                       bool create, AuthResult& out) = 0;
    // `email` empty: username + password login (never creates). Otherwise the
    // email is lower-cased, and the password checked or (on create) hashed with bcrypt.
    virtual Status authenticate_email(std::string_view email, std::string_view password,
                                      std::string_view username, bool create, AuthResult& out) = 0;

    // Current username of an existing, not banned user (session refresh).
    virtual Status find_user(std::string_view user_id, UserRef& out) = 0;
    virtual Status get_account(std::string_view user_id, Account& out) = 0;
    virtual Status update_account(std::string_view user_id, const AccountUpdate& update) = 0;
    // Deletes the user and every identity linked to it. Deleting a missing user is OK.
    virtual Status delete_account(std::string_view user_id) = 0;
    // Bans (disabled = true) or unbans a user; banned users cannot authenticate.
    virtual Status set_disabled(std::string_view user_id, bool disabled) = 0;
};

// 10 random letters [a-zA-Z], as Nakama generates for accounts created without a username.
std::string generate_username();

}  // namespace nk::store
