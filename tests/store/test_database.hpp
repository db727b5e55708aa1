// The database the engine-independent store suites run on: a SQLite file in a temp dir, or,
// in the suites built with NK_TEST_POSTGRES, a fresh migrated database on the test process's
// PostgreSQL server (tests/support/postgres.hpp). Same tests, same assertions, both engines.
#pragma once

#include <memory>
#include <string>

#include "store/store.hpp"
#include "support/process.hpp"
#ifdef NK_TEST_POSTGRES
#include "support/postgres.hpp"
#endif

namespace nk::test {

struct TestDatabase {
    TestDatabase() {
        options.bcrypt_cost = 4;
#ifdef NK_TEST_POSTGRES
        options.address = PostgresServer::shared().create_database();
        store::migrate_up(options);
#else
        options.address = (dir / "test.db").string();
#endif
    }
    std::unique_ptr<store::Store> open(metrics::Registry* registry = nullptr) const {
        return store::open_store(options, registry);
    }

    TempDir dir;
    store::Options options;
};

}  // namespace nk::test
