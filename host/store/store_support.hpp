// What the two store engines (SQLite, PostgreSQL) share: Nakama's statuses, the checks made
// before touching the database, wallet and cursor encodings, and how a database failure is
// counted and logged. Everything here is engine-independent; SQL lives in the engines.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"
#include "log/log.hpp"
#include "log/rate_limit.hpp"
#include "store/account_store.hpp"
#include "store/storage_store.hpp"

namespace nk::metrics {
class Registry;
class Counter;
}  // namespace nk::metrics

namespace nk::store::detail {

inline const Status kBanned = Status::permission_denied("User account banned.");
inline const Status kNotFound = Status::not_found("User account not found.");
inline const Status kUsernameTaken = Status::already_exists("Username is already in use.");
inline const Status kFindError = Status::internal("Error finding user account.");
inline const Status kCreateError = Status::internal("Error finding or creating user account.");
inline const Status kBadCredentials = Status::unauthenticated("Invalid credentials.");
inline const Status kAccountNotFound = Status::not_found("Account not found.");
inline const Status kGetError = Status::internal("Error retrieving user account.");
inline const Status kUpdateError = Status::internal("Error while trying to update account.");
inline const Status kDeleteAccountError = Status::internal("Error deleting user account.");
inline const Status kNoFields = Status::invalid_argument("No fields to update.");

inline const Status kWriteRejectedPermission =
    Status::invalid_argument("Storage write rejected - permission denied.");
inline const Status kWriteRejectedVersion =
    Status::invalid_argument("Storage write rejected - version check failed.");
inline const Status kDeleteRejected = Status::invalid_argument(
    "Storage delete rejected - not found, version check failed, or permission denied.");
inline const Status kBadLimit =
    Status::invalid_argument("Invalid limit - limit must be between 1 and 100.");
inline const Status kBadCursor = Status::invalid_argument("Invalid cursor.");
inline const Status kNoCollection =
    Status::invalid_argument("Invalid collection value supplied. It must be set.");
inline const Status kNoCollectionOrKey =
    Status::invalid_argument("Invalid collection or key value supplied. They must be set.");
inline const Status kBadMetadata = Status::invalid_argument("Metadata must be a JSON object.");
// Text a database holds never contains NUL (PostgreSQL's text cannot; SQLite's could, but both
// engines answer the same).
inline const Status kNulInCollectionOrKey = Status::invalid_argument(
    "Invalid collection or key value supplied. They must not contain NUL characters.");
inline const Status kLedgerItemNotFound = Status::not_found("Wallet ledger item not found.");
inline const Status kWalletReadError = Status::internal("Error reading user wallet.");
inline const Status kWriteError = Status::internal("Error writing storage objects.");
inline const Status kReadError = Status::internal("Error reading storage objects.");
inline const Status kListError = Status::internal("Error listing storage objects.");
inline const Status kDeleteError = Status::internal("Error deleting storage objects.");
inline const Status kWalletError = Status::internal("Error updating wallets.");
inline const Status kLedgerError = Status::internal("Error reading the wallet ledger.");

std::int64_t unix_now();
std::string lower_ascii(std::string_view s);
std::string md5_hex(std::string_view data);

// The owner of a written or deleted object: the calling client, or (for the server) the named
// user, or the system user when none is named.
std::string owner_of(std::string_view caller, const std::string& user_id);
// Whether a client (`caller` non-empty) may read `o`; the server ("") reads everything.
bool readable_by(std::string_view caller, const StorageObject& o);
// The least permission_read a list by `caller` of `user_id`'s objects (or everyone's) shows:
// everything for the server, readable ones for a client listing itself, else public ones.
int min_read_for_list(std::string_view caller, std::string_view user_id);

// A wallet or changeset: a JSON object of currency -> integer ("" is the empty wallet).
bool parse_wallet(std::string_view text, unsigned max_depth, Wallet& out);
std::string wallet_json(const Wallet& w);
bool is_json_object(std::string_view text, unsigned max_depth);
// Adds `changeset` to `wallet`, refusing overflow and negative balances with Nakama's messages.
Status apply_changeset(Wallet& wallet, const Wallet& changeset);
// `stored` (a JSON object; anything else counts as {}) with `patch`'s top-level keys replacing
// its own (PostgreSQL's jsonb ||). kBadMetadata when `patch` is not a JSON object.
Status merge_object(std::string_view stored, std::string_view patch, unsigned max_depth,
                    std::string& out);

// Checks one write against the limits and Nakama's rules.
Status check_write(const StorageWrite& w, const StorageLimits& limits);
// A storage object id to read or delete: collection and key set, no NUL in any of its text.
Status check_id(const StorageId& id);
// Objects to read: check_batch, then check_id for each.
Status check_reads(const std::vector<StorageId>& ids, const StorageLimits& limits);
// The collection of a list: set, no NUL.
Status check_collection(std::string_view collection);
// An account update: something to update, no NUL in any field.
Status check_update(const AccountUpdate& update);

Status check_batch(std::size_t n, const StorageLimits& limits);
// A batch of `batch` objects of which `writes` are the writes: check_batch, then check_write for
// each write.
Status check_writes(const std::vector<StorageWrite>& writes, std::size_t batch,
                    const StorageLimits& limits);
Status check_list_limit(int limit);

// Keyset cursors. A storage list resumes after (key, user_id); a ledger list before a sequence.
std::string storage_cursor(std::string_view key, std::string_view user_id);
bool parse_storage_cursor(std::string_view cursor, std::string& key, std::string& user_id);
std::string ledger_cursor(std::int64_t seq);
bool parse_ledger_cursor(std::string_view cursor, std::int64_t& seq);

// What a store was doing when the database failed: the `operation` of the log line and the
// label of the database_errors metric.
enum class Operation {
    authenticate_device,
    authenticate_custom,
    authenticate_email,
    find_user,
    get_account,
    update_account,
    delete_account,
    set_disabled,
    wal_checkpoint,
    storage_write,
    storage_read,
    storage_list,
    storage_delete,
    wallet_update,
    wallet_ledger,
    open_connection,
    count_
};
constexpr std::size_t kOperations = static_cast<std::size_t>(Operation::count_);
const char* operation_name(Operation op);

// Counts a database failure in database_errors{operation} (with a registry) and logs it at
// error level, at most one line per second per operation (the line says how many were held
// back): a full disk or a database that went away fails every request.
class ErrorReporter {
  public:
    explicit ErrorReporter(metrics::Registry* registry);
    ~ErrorReporter();
    void report(Operation op, log::Fields details);

  private:
    std::array<std::unique_ptr<log::RateLimit>, kOperations> logs_;
    std::array<metrics::Counter*, kOperations> counts_{};  // null without a registry
};

}  // namespace nk::store::detail
