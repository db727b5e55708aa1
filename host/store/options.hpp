// Options of the account store (config keys database.*).
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "store/storage_store.hpp"

namespace nk::store {

inline constexpr std::size_t kSqliteMaxOpen = 8;
inline constexpr std::size_t kPostgresMaxOpen = 100;

struct Options {
    // database.address: path of the SQLite file ("" = <data_dir>/nkhost.db; ":memory:" for
    // tests), or a PostgreSQL server (store/store.hpp).
    std::string address;
    std::uint32_t busy_timeout_ms = 5000;  // database.busy_timeout_ms
    int bcrypt_cost = 10;                  // database.bcrypt_cost (Nakama uses bcrypt's default, 10)
    // database.max_open_conns: connections in the pool; 0 = the engine's default (kSqliteMaxOpen,
    // kPostgresMaxOpen).
    std::size_t max_open_conns = 0;
    // database.max_idle_conns (PostgreSQL): connections kept open while idle.
    std::size_t max_idle_conns = 100;
    // database.conn_max_lifetime_ms (PostgreSQL): a connection older than this is closed when it
    // is next returned to the pool (0 = no limit). Nakama's default, one hour.
    std::uint32_t conn_max_lifetime_ms = 3600000;
    // database.connect_timeout_ms (PostgreSQL): how long opening a connection may take, and how
    // long a call waits for a free connection when all max_open_conns are busy, before it is
    // answered 503. libpq counts whole seconds, at least 2.
    std::uint32_t connect_timeout_ms = 5000;
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

// Whether database.address names a database server (PostgreSQL: a postgres:// URL, Nakama's
// user[:password]@host[:port][/dbname], or host:port[/dbname]) rather than a SQLite file.
inline bool is_server_address(std::string_view address) {
    if (address == ":memory:" || address.rfind("file:", 0) == 0)
        return false;
    if (address.find("://") != std::string_view::npos ||
        address.find('@') != std::string_view::npos)
        return true;
    const auto colon = address.find(':');
    if (colon == std::string_view::npos || colon == 0)
        return false;
    const auto slash = address.find('/', colon);
    const auto port = address.substr(
        colon + 1, slash == std::string_view::npos ? std::string_view::npos : slash - colon - 1);
    return !port.empty() && std::all_of(port.begin(), port.end(), [](unsigned char ch) {
        return std::isdigit(ch) != 0;
    });
}

}  // namespace nk::store
