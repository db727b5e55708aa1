// SqliteAccountStore: the embedded AccountStore, one SQLite file.
//
// The file (store::Options::address; must be non-empty) is opened in WAL mode
// with a busy timeout; the schema is created or migrated at construction
// (table schema_version). SQLite connections must not be used by two threads
// at once, so the store keeps a small pool (Options::max_open_conns): each
// call borrows one connection for its duration and blocks while all are busy.
// Writers use BEGIN IMMEDIATE, so find-or-create is serialised and a new
// identity is created exactly once however many calls race for it.
//
// A background thread empties the -wal file every Options::wal_checkpoint_interval_ms
// (wal_checkpoint(TRUNCATE) on its own connection); the destructor stops it.
//
// Database failures are answered with Nakama's internal (13) statuses and logged at error
// level with the operation, SQLite's message and extended result code, at most one line per
// second per operation (the line says how many were suppressed); with a registry they are also
// counted in database_errors{operation}.
//
// Throws std::runtime_error from the constructor when the file cannot be
// opened or migrated; methods never throw (errors are Status values).
#pragma once

#include <memory>

#include "store/options.hpp"
#include "store/store.hpp"

namespace nk::metrics {
class Registry;
}

namespace nk::store {

// Also the StorageStore (storage objects and wallets, in the same file and transactions).
class SqliteAccountStore final : public Store {
  public:
    // `metrics` (optional) must outlive the store.
    explicit SqliteAccountStore(Options options, metrics::Registry* metrics = nullptr);
    ~SqliteAccountStore() override;

    Status authenticate_device(std::string_view device_id, std::string_view username, bool create,
                               AuthResult& out) override;
    Status authenticate_custom(std::string_view custom_id, std::string_view username, bool create,
                               AuthResult& out) override;
    Status authenticate_email(std::string_view email, std::string_view password,
                              std::string_view username, bool create, AuthResult& out) override;
    Status find_user(std::string_view user_id, UserRef& out) override;
    Status get_account(std::string_view user_id, Account& out) override;
    Status update_account(std::string_view user_id, const AccountUpdate& update) override;
    Status delete_account(std::string_view user_id) override;
    Status set_disabled(std::string_view user_id, bool disabled) override;

    Status storage_write(std::string_view caller, const std::vector<StorageWrite>& writes,
                         std::vector<StorageAck>& acks) override;
    Status storage_read(std::string_view caller, const std::vector<StorageId>& ids,
                        std::vector<StorageObject>& out) override;
    Status storage_list(std::string_view caller, std::string_view user_id,
                        std::string_view collection, int limit, std::string_view cursor,
                        StoragePage& out) override;
    Status storage_delete(std::string_view caller, const std::vector<StorageId>& ids) override;
    Status wallets_update(const std::vector<WalletChange>& changes, bool update_ledger,
                          std::vector<WalletResult>& out) override;
    Status multi_update(const std::vector<StorageWrite>& writes,
                        const std::vector<StorageId>& deletes,
                        const std::vector<WalletChange>& wallets, bool update_ledger,
                        std::vector<StorageAck>& acks,
                        std::vector<WalletResult>& wallet_results) override;
    Status wallet_ledger_list(std::string_view user_id, int limit, std::string_view cursor,
                              LedgerPage& out) override;
    Status wallet_ledger_update(std::string_view id, std::string_view metadata,
                                LedgerItem& out) override;

    // The schema version the file is at after construction.
    int schema_version() const override;
    std::string_view engine() const override { return "sqlite"; }
    // The schema version the file was at before this store migrated it.
    int migrated_from() const;

  private:
    struct Impl;
    struct Storage;
    std::unique_ptr<Impl> impl_;
};

}  // namespace nk::store
