// Options of the account store (config keys database.*).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "store/storage_store.hpp"

namespace nk::store {

struct Options {
    // database.address: path of the SQLite file ("" = <data_dir>/nkhost.db; ":memory:" for tests).
    std::string address;
    std::uint32_t busy_timeout_ms = 5000;  // database.busy_timeout_ms
    int bcrypt_cost = 10;                  // database.bcrypt_cost (Nakama uses bcrypt's default, 10)
    std::size_t max_open_conns = 8;        // database.max_open_conns (SQLite connections in the pool)
    // database.wal_checkpoint_interval_ms: how often a background thread runs
    // wal_checkpoint(TRUNCATE), which empties the -wal file (0 = only SQLite's own checkpoints).
    std::uint32_t wal_checkpoint_interval_ms = 2000;
    // database.journal_size_limit_bytes: PRAGMA journal_size_limit, the size SQLite truncates
    // the -wal file to after a checkpoint that reset it.
    std::uint64_t journal_size_limit_bytes = 64ull << 20;
    // database.max_size_bytes: PRAGMA max_page_count in bytes (0 = no limit). Writes that would
    // grow the database beyond it fail like a full disk.
    std::uint64_t max_size_bytes = 0;
    // storage.*: limits of storage objects and their batches.
    StorageLimits storage;
};

}  // namespace nk::store
