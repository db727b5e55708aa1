#include "store/store.hpp"

#include "store/postgres_store.hpp"
#include "store/sqlite_account_store.hpp"

namespace nk::store {

std::unique_ptr<Store> open_store(const Options& options, metrics::Registry* metrics) {
    if (is_server_address(options.address))
        return std::make_unique<PostgresStore>(options, metrics);
    return std::make_unique<SqliteAccountStore>(options, metrics);
}

MigrateResult migrate_up(const Options& options) {
    if (is_server_address(options.address))
        return PostgresStore::migrate(options);
    // The embedded engine migrates whenever it opens.
    SqliteAccountStore store(options);
    return {store.migrated_from(), store.schema_version()};
}

}  // namespace nk::store
