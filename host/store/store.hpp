// Store: accounts, storage objects and wallets in one database, on one of two engines chosen by
// database.address (docs/configuration.md):
//   - a file path (the default <data_dir>/nkhost.db, or ":memory:"): embedded SQLite, for one
//     machine; the schema is created and migrated when the store opens;
//   - a server address, Nakama's `user:password@host:port/dbname` (dbname defaults to nakama) or
//     a `postgres://` / `postgresql://` URL: PostgreSQL, shared by several nodes; the schema is
//     created and upgraded by `nkhost migrate up` only, and the store refuses to open on a
//     database that is not at its schema version.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "store/account_store.hpp"
#include "store/options.hpp"
#include "store/storage_store.hpp"

namespace nk::metrics {
class Registry;
}

namespace nk::store {

class Store : public AccountStore, public StorageStore {
  public:
    // The schema version the database is at.
    virtual int schema_version() const = 0;
    // "sqlite" or "postgresql".
    virtual std::string_view engine() const = 0;
};

// Opens the store `options.address` names. Throws std::runtime_error with a one-line reason
// (cannot open or connect, unmigrated or newer schema). `metrics` must outlive the store.
std::unique_ptr<Store> open_store(const Options& options, metrics::Registry* metrics = nullptr);

struct MigrateResult {
    int from = 0;  // the schema version found
    int to = 0;    // the schema version now
};
// `nkhost migrate up`: creates or upgrades the schema to this build's version. Several nodes
// may run it at once (PostgreSQL: serialised by an advisory lock). Throws std::runtime_error
// with the reason, including for a schema newer than this build knows.
MigrateResult migrate_up(const Options& options);

}  // namespace nk::store
