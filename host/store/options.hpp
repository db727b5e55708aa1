// Options of the account store (config keys database.*).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace nk::store {

struct Options {
    // database.address: path of the SQLite file ("" = <data_dir>/nkhost.db; ":memory:" for tests).
    std::string address;
    std::uint32_t busy_timeout_ms = 5000;  // database.busy_timeout_ms
    int bcrypt_cost = 10;                  // database.bcrypt_cost (Nakama uses bcrypt's default, 10)
    std::size_t max_open_conns = 8;        // database.max_open_conns (SQLite connections in the pool)
};

}  // namespace nk::store
