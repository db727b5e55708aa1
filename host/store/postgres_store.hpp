// PostgresStore: the Store on a PostgreSQL server, shared by every node (store/store.hpp).
//
// libpq connections in a pool of up to Options::max_open_conns; each call borrows one for its
// duration. Opening a connection is bounded by Options::connect_timeout_ms (libpq's own default
// waits forever) and connections use TCP keepalives, so a server that goes away is noticed.
// While the server cannot be reached, calls are answered Unavailable (503) at once: after a
// failed connection attempt, further attempts wait a second, and calls in that second fail
// without trying. A connection that broke during a call is closed, not returned to the pool.
// Service resumes by itself when the server is back.
//
// Same semantics as the SQLite engine: find-or-create of one id creates one account however many
// calls race (a unique violation means another call won: the id is looked up again); storage
// writes lock the row they check (SELECT ... FOR UPDATE), wallets lock the user's row; every
// batch is one transaction. Keys and user ids compare bytewise (COLLATE "C"), as in SQLite.
//
// Database failures are answered with Nakama's internal (13) statuses, logged (rate-limited,
// with PostgreSQL's message and SQLSTATE) and counted in database_errors{operation}.
#pragma once

#include <memory>

#include "store/options.hpp"
#include "store/store.hpp"

namespace nk::metrics {
class Registry;
}

namespace nk::store {

class PostgresStore final : public Store {
  public:
    // Throws std::runtime_error when the server cannot be reached or the schema is not this
    // build's (the message says to run `nkhost migrate up`).
    explicit PostgresStore(Options options, metrics::Registry* metrics = nullptr);
    ~PostgresStore() override;

    // `nkhost migrate up` for a PostgreSQL address.
    static MigrateResult migrate(const Options& options);
    // The libpq connection string for a database.address.
    static std::string conninfo(std::string_view address);

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

    int schema_version() const override;
    std::string_view engine() const override { return "postgresql"; }

  private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace nk::store
