// StorageStore: Nakama's storage objects and wallets (docs/storage.md).
//
// Storage objects are keyed by (collection, key, user_id); the value is a JSON object kept as
// given; `version` is the MD5 (hex) of the value. permission_read: 0 none (server only), 1 owner,
// 2 public; permission_write: 0 none (server only), 1 owner. Objects of the system user have
// user_id kSystemUserId.
//
// `caller` names who acts: "" is the server (a plugin: no permission checks, may write any
// user's and the system user's objects), anything else is the user id of a client, held to
// Nakama's client rules (writes and deletes its own objects only, and only writable ones;
// reads its own and public objects).
//
// Wallets live on the account (users.wallet, a JSON object of currency -> int64). Updates add
// a changeset atomically and refuse any currency going negative; with update_ledger, each
// update is recorded in the wallet ledger.
//
// Every batch (writes, deletes, wallet updates, multi_update) is one transaction: all or
// nothing. Every call blocks (disk I/O): call it on the BlockingPool. Thread-safe.
//
// Errors carry Nakama's codes and messages, ready for a client.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.hpp"

namespace nk::store {

inline constexpr std::string_view kSystemUserId = "00000000-0000-0000-0000-000000000000";

struct StorageObject {
    std::string collection;
    std::string key;
    std::string user_id;
    std::string value;  // a JSON object, as written
    std::string version;
    int permission_read = 1;
    int permission_write = 1;
    std::int64_t create_time = 0;  // unix seconds
    std::int64_t update_time = 0;
};

// One object to write. user_id "" = the caller (a client) or the system user (the server).
// version: "" = unconditional, "*" = only if absent, else only if the stored version is this.
struct StorageWrite {
    std::string collection;
    std::string key;
    std::string user_id;
    std::string value;
    std::string version;
    int permission_read = 1;
    int permission_write = 1;
};

// An object to read (version ignored) or delete (version "" = unconditional).
struct StorageId {
    std::string collection;
    std::string key;
    std::string user_id;
    std::string version;
};

struct StorageAck {
    std::string collection;
    std::string key;
    std::string user_id;
    std::string version;
};

struct StoragePage {
    std::vector<StorageObject> objects;
    std::string cursor;  // empty on the last page
};

using Wallet = std::map<std::string, std::int64_t>;

struct WalletChange {
    std::string user_id;
    Wallet changeset;
    std::string metadata = "{}";  // a JSON object for the ledger entry
};

struct WalletResult {
    std::string user_id;
    Wallet updated;
    Wallet previous;
};

struct LedgerItem {
    std::string id;
    std::string user_id;
    Wallet changeset;
    std::string metadata;  // a JSON object
    std::int64_t create_time = 0;
    std::int64_t update_time = 0;
};

struct LedgerPage {
    std::vector<LedgerItem> items;
    std::string cursor;  // empty on the last page
};

// Limits (documented configuration keys storage.*; defaults as Nakama's schema and API).
struct StorageLimits {
    std::size_t max_value_bytes = 65536;   // storage.max_value_size_bytes
    std::size_t max_batch = 100;           // storage.max_batch_size (objects per call)
    std::size_t max_collection_chars = 128;
    std::size_t max_key_chars = 128;
    unsigned max_json_depth = 64;          // socket.max_json_depth
};

class StorageStore {
  public:
    virtual ~StorageStore() = default;

    virtual Status storage_write(std::string_view caller, const std::vector<StorageWrite>& writes,
                                 std::vector<StorageAck>& acks) = 0;
    // Objects the caller may read, in request order; missing or unreadable ones are absent.
    virtual Status storage_read(std::string_view caller, const std::vector<StorageId>& ids,
                                std::vector<StorageObject>& out) = 0;
    // A page of `collection` (of `user_id`, or of every user when empty) as `caller` may see
    // it, ordered by key then user id; limit 1..100; cursor from the previous page or empty.
    virtual Status storage_list(std::string_view caller, std::string_view user_id,
                                std::string_view collection, int limit, std::string_view cursor,
                                StoragePage& out) = 0;
    virtual Status storage_delete(std::string_view caller, const std::vector<StorageId>& ids) = 0;

    virtual Status wallets_update(const std::vector<WalletChange>& changes, bool update_ledger,
                                  std::vector<WalletResult>& out) = 0;
    // Storage writes and deletes (as the server) and wallet updates in one transaction.
    virtual Status multi_update(const std::vector<StorageWrite>& writes,
                                const std::vector<StorageId>& deletes,
                                const std::vector<WalletChange>& wallets, bool update_ledger,
                                std::vector<StorageAck>& acks,
                                std::vector<WalletResult>& wallet_results) = 0;
    // Newest first.
    virtual Status wallet_ledger_list(std::string_view user_id, int limit,
                                      std::string_view cursor, LedgerPage& out) = 0;
    // Merges `metadata` (a JSON object) into the item's metadata (top-level keys replaced).
    virtual Status wallet_ledger_update(std::string_view id, std::string_view metadata,
                                        LedgerItem& out) = 0;
};

}  // namespace nk::store
