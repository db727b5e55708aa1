#include "store/sqlite_account_store.hpp"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>


#include "core/uuid.hpp"
#include "log/log.hpp"
#include "metrics/registry.hpp"
#include "store/password.hpp"
#include "store/store_support.hpp"

namespace nk::store {
namespace {

using namespace detail;

// Each entry migrates the schema from version i to i + 1. Append only.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE users (
    id           TEXT PRIMARY KEY NOT NULL,
    username     TEXT NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 128),
    display_name TEXT CHECK (length(display_name) <= 255),
    avatar_url   TEXT CHECK (length(avatar_url) <= 512),
    lang_tag     TEXT DEFAULT 'en' CHECK (length(lang_tag) <= 18),
    location     TEXT CHECK (length(location) <= 255),
    timezone     TEXT CHECK (length(timezone) <= 255),
    metadata     TEXT NOT NULL DEFAULT '{}' CHECK (length(metadata) <= 16384),
    wallet       TEXT NOT NULL DEFAULT '{}' CHECK (length(wallet) <= 16384),
    email        TEXT UNIQUE CHECK (length(email) BETWEEN 10 AND 255),
    password     TEXT,
    custom_id    TEXT UNIQUE CHECK (length(custom_id) BETWEEN 6 AND 128),
    verify_time  INTEGER NOT NULL DEFAULT 0,
    disable_time INTEGER NOT NULL DEFAULT 0,
    create_time  INTEGER NOT NULL,
    update_time  INTEGER NOT NULL
);
CREATE TABLE user_device (
    id      TEXT PRIMARY KEY NOT NULL CHECK (length(id) BETWEEN 10 AND 128),
    user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX user_device_user_id_idx ON user_device (user_id);
)sql",
    // 2: storage objects and the wallet ledger.
    R"sql(
CREATE TABLE storage (
    collection  TEXT NOT NULL CHECK (length(collection) BETWEEN 1 AND 128),
    key         TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 128),
    user_id     TEXT NOT NULL,
    value       TEXT NOT NULL,
    version     TEXT NOT NULL,
    read        INTEGER NOT NULL CHECK (read BETWEEN 0 AND 2),
    write       INTEGER NOT NULL CHECK (write BETWEEN 0 AND 1),
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    PRIMARY KEY (collection, key, user_id)
);
CREATE INDEX storage_user_idx ON storage (collection, user_id, key);
CREATE TABLE wallet_ledger (
    seq         INTEGER PRIMARY KEY,  -- insertion order (newest first in lists)
    id          TEXT NOT NULL UNIQUE,
    user_id     TEXT NOT NULL,
    changeset   TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL
);
CREATE INDEX wallet_ledger_user_idx ON wallet_ledger (user_id, seq);
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// Statements are cached per connection; a Stmt borrows one and resets it when done.
class Stmt {
  public:
    explicit Stmt(sqlite3_stmt* s) : s_(s) {}
    ~Stmt() {
        if (s_) {
            sqlite3_reset(s_);
            sqlite3_clear_bindings(s_);
        }
    }
    Stmt(const Stmt&) = delete;
    Stmt& operator=(const Stmt&) = delete;

    explicit operator bool() const { return s_ != nullptr; }
    Stmt& bind(int i, std::string_view v) {
        sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        return *this;
    }
    Stmt& bind(int i, std::int64_t v) {
        sqlite3_bind_int64(s_, i, v);
        return *this;
    }
    Stmt& bind_null(int i) {
        sqlite3_bind_null(s_, i);
        return *this;
    }
    int step() { return sqlite3_step(s_); }
    std::string text(int col) const {
        const auto* p = sqlite3_column_text(s_, col);
        return p ? std::string(reinterpret_cast<const char*>(p),
                               static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
                 : std::string();
    }
    std::int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }

  private:
    sqlite3_stmt* s_;
};

class Connection {
  public:
    Connection(const Options& options) {
        const int rc = sqlite3_open_v2(
            options.address.c_str(), &db_,
            SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
        if (rc != SQLITE_OK) {
            std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
            sqlite3_close_v2(db_);
            db_ = nullptr;
            throw std::runtime_error("cannot open database '" + options.address + "': " + msg);
        }
        sqlite3_extended_result_codes(db_, 1);
        sqlite3_busy_timeout(db_, static_cast<int>(options.busy_timeout_ms));
        std::vector<std::string> pragmas = {
            "PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON",
            "PRAGMA journal_size_limit=" + std::to_string(options.journal_size_limit_bytes)};
        if (options.max_size_bytes > 0) {
            // max_page_count is per connection and counted in pages: every connection sets it.
            const std::uint64_t page = static_cast<std::uint64_t>(pragma_int("PRAGMA page_size"));
            const std::uint64_t pages = page > 0 ? (options.max_size_bytes + page - 1) / page : 0;
            pragmas.push_back("PRAGMA max_page_count=" + std::to_string(pages));
        }
        for (const auto& pragma : pragmas) {
            if (exec(pragma.c_str()) != SQLITE_OK) {
                // The destructor does not run for a constructor that throws: close here.
                std::string msg = std::string("cannot configure database: ") + error();
                sqlite3_close_v2(db_);
                db_ = nullptr;
                throw std::runtime_error(msg);
            }
        }
    }
    ~Connection() {
        for (auto& [sql, stmt] : cache_)
            sqlite3_finalize(stmt);
        sqlite3_close_v2(db_);
    }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    Stmt prepare(const char* sql) {
        auto it = cache_.find(sql);
        if (it != cache_.end())
            return Stmt(it->second);
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) !=
            SQLITE_OK) {
            return Stmt(nullptr);
        }
        cache_.emplace(sql, stmt);
        return Stmt(stmt);
    }
    // For one-off statements built at run time (not cached).
    sqlite3_stmt* prepare_once(const std::string& sql) {
        sqlite3_stmt* stmt = nullptr;
        if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK)
            return nullptr;
        return stmt;
    }
    int exec(const char* sql) { return sqlite3_exec(db_, sql, nullptr, nullptr, nullptr); }
    const char* error() const { return sqlite3_errmsg(db_); }
    // The extended result code of the last failed call (e.g. SQLITE_FULL, SQLITE_IOERR_WRITE).
    int error_code() const { return sqlite3_extended_errcode(db_); }
    int changes() const { return sqlite3_changes(db_); }
    void set_busy_timeout(std::uint32_t ms) { sqlite3_busy_timeout(db_, static_cast<int>(ms)); }
    // Copies every WAL frame into the database and truncates the -wal file to zero bytes.
    int checkpoint_truncate() {
        return sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_TRUNCATE, nullptr,
                                         nullptr);
    }

  private:
    std::int64_t pragma_int(const char* sql) {
        sqlite3_stmt* stmt = prepare_once(sql);
        const std::int64_t value =
            stmt && sqlite3_step(stmt) == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : 0;
        sqlite3_finalize(stmt);
        return value;
    }

    sqlite3* db_ = nullptr;
    std::unordered_map<const char*, sqlite3_stmt*> cache_;  // keyed by the literal's address
};

// BEGIN IMMEDIATE takes the write lock up front, so a find-or-create cannot
// interleave with another writer and no deferred-upgrade deadlock can occur.
class WriteTransaction {
  public:
    explicit WriteTransaction(Connection& c) : c_(c), ok_(c.exec("BEGIN IMMEDIATE") == SQLITE_OK) {}
    ~WriteTransaction() {
        if (ok_ && !done_)
            c_.exec("ROLLBACK");
    }
    bool begun() const { return ok_; }
    // On failure the transaction stays open, so SQLite's message is still there for the caller
    // to log, and the destructor rolls it back.
    bool commit() {
        if (c_.exec("COMMIT") != SQLITE_OK)
            return false;
        done_ = true;
        return true;
    }

  private:
    Connection& c_;
    bool ok_;
    bool done_ = false;
};

bool is_unique_violation(int rc) {
    return rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY;
}

// The checkpointer waits this long at most for readers and writers, then tries again next
// interval: TRUNCATE holds the write lock while it waits, so a long wait would stall writers.
constexpr std::uint32_t kCheckpointBusyTimeoutMs = 100;

// Inserts a new user's row and identity under the given id; returns the first failing sqlite
// code (SQLITE_DONE when all went in).
using InsertIdentity = std::function<int(Connection&, const std::string&)>;

}  // namespace

std::string generate_username() {
    static constexpr char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
    thread_local std::mt19937 rng{std::random_device{}()};
    std::uniform_int_distribution<int> pick(0, 51);
    std::string out(10, 'a');
    for (char& c : out)
        c = letters[pick(rng)];
    return out;
}

struct SqliteAccountStore::Impl {
    Options options;
    std::mutex mutex;
    std::condition_variable available;
    std::vector<std::unique_ptr<Connection>> idle;
    std::size_t open = 0;
    int version = 0;
    int found_version = 0;  // before migrating

    detail::ErrorReporter errors;

    std::thread checkpointer;
    std::mutex checkpointer_mutex;
    std::condition_variable checkpointer_wake;
    bool stopping = false;

    Impl(Options o, metrics::Registry* registry) : options(std::move(o)), errors(registry) {}

    ~Impl() {
        {
            std::lock_guard lock(checkpointer_mutex);
            stopping = true;
        }
        checkpointer_wake.notify_all();
        if (checkpointer.joinable())
            checkpointer.join();
    }

    // Runs `body(connection)` in one write transaction (BEGIN IMMEDIATE): `error` (counted under
    // `op`) when the transaction cannot begin or commit, else what `body` returned (a failure
    // rolls back).
    template <class Body>
    Status transact(Operation op, const Status& error, Body&& body) {
        auto c = acquire();
        WriteTransaction tx(*c);
        if (!tx.begun())
            return failed(*c, op, error);
        Status st = body(*c);
        if (st && !tx.commit())
            st = failed(*c, op, error);
        return st;
    }

    // Counts and logs (at most once a second per operation, with how many lines were held back)
    // a failure of the database during `op`, with SQLite's message and extended result code from
    // `c`; returns `status`, the answer the client gets.
    Status failed(Connection& c, Operation op, const Status& status) {
        errors.report(op, {{"error", c.error()},
                           {"code", std::to_string(c.error_code())},
                           {"status", std::string(status.message())}});
        return status;
    }
    // The same for a failure without a connection (one that could not be opened).
    void failed(Operation op, std::string_view error, std::string_view status) {
        errors.report(op, {{"error", std::string(error)}, {"status", std::string(status)}});
    }
    // Empties the -wal file every options.wal_checkpoint_interval_ms. SQLite's automatic
    // checkpoints are PASSIVE, never shrink the file, and readers from the pool can keep them
    // from completing, so under load the WAL grows without bound; TRUNCATE waits for readers
    // (briefly) and leaves a zero-byte file.
    void start_checkpointer() {
        if (options.wal_checkpoint_interval_ms == 0 || options.address == ":memory:")
            return;
        auto c = std::make_unique<Connection>(options);  // throws with the reason, like the pool
        c->set_busy_timeout(std::min(options.busy_timeout_ms, kCheckpointBusyTimeoutMs));
        checkpointer = std::thread([this, c = std::move(c)] {
            const auto interval = std::chrono::milliseconds(options.wal_checkpoint_interval_ms);
            std::unique_lock lock(checkpointer_mutex);
            while (!checkpointer_wake.wait_for(lock, interval, [this] { return stopping; })) {
                lock.unlock();
                const int rc = c->checkpoint_truncate();
                // Busy: readers or a writer held on past the short timeout; next time.
                if (rc != SQLITE_OK && (rc & 0xFF) != SQLITE_BUSY &&
                    (rc & 0xFF) != SQLITE_LOCKED) {
                    failed(*c, Operation::wal_checkpoint,
                           Status::internal("WAL checkpoint failed."));
                }
                lock.lock();
            }
        });
    }

    // A borrowed connection, returned to the pool on destruction.
    class Lease {
      public:
        Lease(Impl& impl, std::unique_ptr<Connection> c) : impl_(impl), c_(std::move(c)) {}
        ~Lease() {
            {
                std::lock_guard lock(impl_.mutex);
                impl_.idle.push_back(std::move(c_));
            }
            impl_.available.notify_one();
        }
        Connection* operator->() { return c_.get(); }
        Connection& operator*() { return *c_; }

      private:
        Impl& impl_;
        std::unique_ptr<Connection> c_;
    };

    Lease acquire() {
        std::unique_lock lock(mutex);
        for (;;) {
            if (!idle.empty()) {
                auto c = std::move(idle.back());
                idle.pop_back();
                return Lease(*this, std::move(c));
            }
            if (open < options.max_open_conns) {
                ++open;
                lock.unlock();
                try {
                    return Lease(*this, std::make_unique<Connection>(options));
                } catch (const std::exception& e) {
                    // The request fails with a 500; the reason is counted and logged here.
                    failed(Operation::open_connection, e.what(), "Internal server error.");
                    lock.lock();
                    --open;
                    throw;
                }
            }
            available.wait(lock);
        }
    }

    void migrate(Connection& c) {
        if (c.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)") !=
            SQLITE_OK) {
            throw std::runtime_error(std::string("cannot create schema_version: ") + c.error());
        }
        WriteTransaction tx(c);
        if (!tx.begun())
            throw std::runtime_error(std::string("cannot migrate: ") + c.error());
        {
            Stmt s = c.prepare("SELECT max(version) FROM schema_version");
            if (!s || s.step() != SQLITE_ROW) {
                throw std::runtime_error(std::string("cannot read schema_version: ") + c.error());
            }
            version = static_cast<int>(s.int64(0));
            found_version = version;
        }
        if (version > kSchemaVersion) {
            throw std::runtime_error("database schema version " + std::to_string(version) +
                                     " is newer than this nkhost supports (" +
                                     std::to_string(kSchemaVersion) + ")");
        }
        for (; version < kSchemaVersion; ++version) {
            if (c.exec(kMigrations[version]) != SQLITE_OK) {
                throw std::runtime_error("migration to schema version " +
                                         std::to_string(version + 1) + " failed: " + c.error());
            }
            Stmt s = c.prepare("INSERT INTO schema_version (version) VALUES (?)");
            s.bind(1, std::int64_t{version + 1});
            if (s.step() != SQLITE_DONE) {
                throw std::runtime_error(std::string("cannot record schema version: ") + c.error());
            }
        }
        if (!tx.commit())
            throw std::runtime_error(std::string("cannot migrate: ") + c.error());
    }

    // Looks an identity up with `lookup_sql` (one parameter; columns id, username,
    // disable_time, and the password hash when `password_hash` is given).
    // 1 = found, 0 = absent, -1 = error.
    static int lookup(Connection& c, const char* lookup_sql, std::string_view key, AuthResult& out,
                      std::int64_t& disable_time, std::string* password_hash = nullptr) {
        Stmt s = c.prepare(lookup_sql);
        if (!s)
            return -1;
        s.bind(1, key);
        const int rc = s.step();
        if (rc == SQLITE_DONE)
            return 0;
        if (rc != SQLITE_ROW)
            return -1;
        out.user_id = s.text(0);
        out.username = s.text(1);
        disable_time = s.int64(2);
        if (password_hash != nullptr)
            *password_hash = s.text(3);
        return 1;
    }

    // Adds a user under a fresh id with `insert` and commits `tx`, in which the caller has just
    // found no such identity. A username clash is kUsernameTaken; any other failure kCreateError.
    Status create_user(Connection& c, Operation op, WriteTransaction& tx,
                       std::string_view username, AuthResult& out, const InsertIdentity& insert) {
        const std::string id = random_uuid_v4();
        const int rc = insert(c, id);
        if (is_unique_violation(rc))
            return kUsernameTaken;
        if (rc != SQLITE_DONE || !tx.commit())
            return failed(c, op, kCreateError);
        out.user_id = id;
        out.username = std::string(username);
        out.created = true;
        return Status::ok();
    }

    // Nakama's find-or-create, made race-free by re-checking inside a write transaction.
    Status find_or_create(Operation op, const char* lookup_sql, std::string_view key,
                          std::string_view username, bool create, AuthResult& out,
                          const InsertIdentity& insert) {
        auto c = acquire();
        std::int64_t disable_time = 0;
        int found = lookup(*c, lookup_sql, key, out, disable_time);
        if (found < 0)
            return failed(*c, op, kFindError);
        if (found == 0 && !create)
            return kNotFound;
        if (found == 0) {
            WriteTransaction tx(*c);
            if (!tx.begun())
                return failed(*c, op, kCreateError);
            found = lookup(*c, lookup_sql, key, out, disable_time);
            if (found < 0)
                return failed(*c, op, kCreateError);
            if (found == 0)
                return create_user(*c, op, tx, username, out, insert);
        }
        if (disable_time != 0)
            return kBanned;
        out.created = false;
        return Status::ok();
    }

    static int insert_user(Connection& c, const std::string& id, std::string_view username,
                           const std::string* custom_id, const std::string* email,
                           const std::string* password_hash) {
        Stmt s = c.prepare(
            "INSERT INTO users (id, username, custom_id, email, password, create_time, "
            "update_time) VALUES (?, ?, ?, ?, ?, ?, ?)");
        if (!s)
            return SQLITE_ERROR;
        const std::int64_t now = unix_now();
        s.bind(1, id).bind(2, username).bind(6, now).bind(7, now);
        custom_id ? s.bind(3, *custom_id) : s.bind_null(3);
        email ? s.bind(4, *email) : s.bind_null(4);
        password_hash ? s.bind(5, *password_hash) : s.bind_null(5);
        return s.step();
    }
};

SqliteAccountStore::SqliteAccountStore(Options options, metrics::Registry* metrics) {
    if (options.address.empty()) {
        throw std::invalid_argument("database.address must name a SQLite file");
    }
    if (options.max_open_conns == 0)
        options.max_open_conns = kSqliteMaxOpen;
    // Every connection to ":memory:" is a separate database: keep one.
    if (options.address == ":memory:")
        options.max_open_conns = 1;
    impl_ = std::make_unique<Impl>(std::move(options), metrics);
    {
        auto c = impl_->acquire();
        impl_->migrate(*c);
    }
    impl_->start_checkpointer();
}

SqliteAccountStore::~SqliteAccountStore() = default;

int SqliteAccountStore::schema_version() const {
    return impl_->version;
}

int SqliteAccountStore::migrated_from() const {
    return impl_->found_version;
}

Status SqliteAccountStore::authenticate_device(std::string_view device_id,
                                               std::string_view username, bool create,
                                               AuthResult& out) {
    const std::string device(device_id);
    return impl_->find_or_create(
        Operation::authenticate_device,
        "SELECT u.id, u.username, u.disable_time FROM user_device d JOIN users u ON u.id = "
        "d.user_id WHERE d.id = ?",
        device_id, username, create, out, [&](Connection& c, const std::string& id) {
            int rc = Impl::insert_user(c, id, username, nullptr, nullptr, nullptr);
            if (rc != SQLITE_DONE)
                return rc;
            Stmt s = c.prepare("INSERT INTO user_device (id, user_id) VALUES (?, ?)");
            if (!s)
                return SQLITE_ERROR;
            s.bind(1, device).bind(2, id);
            rc = s.step();
            // A device row can only clash here if the re-check raced, which the write lock
            // excludes; report it as an internal error rather than as a username clash.
            return is_unique_violation(rc) ? SQLITE_ERROR : rc;
        });
}

Status SqliteAccountStore::authenticate_custom(std::string_view custom_id,
                                               std::string_view username, bool create,
                                               AuthResult& out) {
    const std::string custom(custom_id);
    return impl_->find_or_create(
        Operation::authenticate_custom,
        "SELECT id, username, disable_time FROM users WHERE custom_id = ?", custom_id, username,
        create, out, [&](Connection& c, const std::string& id) {
            return Impl::insert_user(c, id, username, &custom, nullptr, nullptr);
        });
}

Status SqliteAccountStore::authenticate_email(std::string_view email, std::string_view password,
                                              std::string_view username, bool create,
                                              AuthResult& out) {
    constexpr auto op = Operation::authenticate_email;
    // bcrypt reads only the first 72 bytes: a longer password would be shortened silently.
    if (Status st = check_password(password); !st)
        return st;
    if (email.empty()) {
        // Username + password login; never creates.
        std::string hash;
        std::int64_t disable_time = 0;
        {
            auto c = impl_->acquire();
            Stmt s = c->prepare("SELECT id, password, disable_time FROM users WHERE username = ?");
            if (!s)
                return impl_->failed(*c, op, kFindError);
            s.bind(1, username);
            const int rc = s.step();
            if (rc == SQLITE_DONE)
                return kNotFound;
            if (rc != SQLITE_ROW)
                return impl_->failed(*c, op, kFindError);
            out.user_id = s.text(0);
            hash = s.text(1);
            disable_time = s.int64(2);
        }
        if (disable_time != 0)
            return kBanned;
        if (hash.empty() || !bcrypt_verify(password, hash))
            return kBadCredentials;
        out.username = std::string(username);
        out.created = false;
        return Status::ok();
    }

    const std::string clean_email = lower_ascii(email);
    const char* lookup_sql =
        "SELECT id, username, disable_time, password FROM users WHERE email = ?";
    auto find = [&](Connection& c, std::string& hash, std::int64_t& disable_time) {
        return Impl::lookup(c, lookup_sql, clean_email, out, disable_time, &hash);
    };
    auto check_existing = [&](const std::string& hash, std::int64_t disable_time) {
        if (disable_time != 0)
            return kBanned;
        if (hash.empty() || !bcrypt_verify(password, hash))
            return kBadCredentials;
        out.created = false;
        return Status::ok();
    };

    std::string hash;
    std::int64_t disable_time = 0;
    int found;
    {
        auto c = impl_->acquire();
        found = find(*c, hash, disable_time);
        if (found < 0)
            return impl_->failed(*c, op, kFindError);
    }
    if (found == 1)
        return check_existing(hash, disable_time);  // bcrypt outside the lease
    if (!create)
        return kNotFound;

    // Hash before taking the write lock: bcrypt is the slow part.
    auto new_hash = bcrypt_hash(password, impl_->options.bcrypt_cost);
    if (!new_hash)
        return kCreateError;
    {
        auto c = impl_->acquire();
        WriteTransaction tx(*c);
        if (!tx.begun())
            return impl_->failed(*c, op, kCreateError);
        found = find(*c, hash, disable_time);
        if (found < 0)
            return impl_->failed(*c, op, kCreateError);
        if (found == 0) {
            const auto insert = [&](Connection& conn, const std::string& id) {
                return Impl::insert_user(conn, id, username, nullptr, &clean_email, &*new_hash);
            };
            return impl_->create_user(*c, op, tx, username, out, insert);
        }
    }
    return check_existing(hash, disable_time);  // created meanwhile by a concurrent call
}

Status SqliteAccountStore::find_user(std::string_view user_id, UserRef& out) {
    auto c = impl_->acquire();
    Stmt s = c->prepare("SELECT username, disable_time FROM users WHERE id = ?");
    if (!s)
        return impl_->failed(*c, Operation::find_user, kFindError);
    s.bind(1, user_id);
    const int rc = s.step();
    if (rc == SQLITE_DONE)
        return kNotFound;
    if (rc != SQLITE_ROW)
        return impl_->failed(*c, Operation::find_user, kFindError);
    if (s.int64(1) != 0)
        return kBanned;
    out.user_id = std::string(user_id);
    out.username = s.text(0);
    return Status::ok();
}

Status SqliteAccountStore::get_account(std::string_view user_id, Account& out) {
    auto c = impl_->acquire();
    const auto error = [&] {
        return impl_->failed(*c, Operation::get_account, kGetError);
    };
    {
        Stmt s = c->prepare(
            "SELECT id, username, display_name, avatar_url, lang_tag, location, timezone, "
            "metadata, wallet, email, custom_id, verify_time, disable_time, create_time, "
            "update_time FROM users WHERE id = ?");
        if (!s)
            return error();
        s.bind(1, user_id);
        const int rc = s.step();
        if (rc == SQLITE_DONE)
            return kAccountNotFound;
        if (rc != SQLITE_ROW)
            return error();
        out.id = s.text(0);
        out.username = s.text(1);
        out.display_name = s.text(2);
        out.avatar_url = s.text(3);
        out.lang_tag = s.text(4);
        out.location = s.text(5);
        out.timezone = s.text(6);
        out.metadata = s.text(7);
        out.wallet = s.text(8);
        out.email = s.text(9);
        out.custom_id = s.text(10);
        out.verify_time = s.int64(11);
        out.disable_time = s.int64(12);
        out.create_time = s.int64(13);
        out.update_time = s.int64(14);
    }
    Stmt d = c->prepare("SELECT id FROM user_device WHERE user_id = ? ORDER BY id");
    if (!d)
        return error();
    d.bind(1, user_id);
    out.devices.clear();
    int rc;
    while ((rc = d.step()) == SQLITE_ROW)
        out.devices.push_back(d.text(0));
    return rc == SQLITE_DONE ? Status::ok() : error();
}

Status SqliteAccountStore::update_account(std::string_view user_id, const AccountUpdate& update) {
    if (Status st = check_update(update); !st)
        return st;
    struct Field {
        const char* column;
        const std::optional<std::string>* value;
    };
    const Field fields[] = {
        {"username", &update.username},     {"display_name", &update.display_name},
        {"avatar_url", &update.avatar_url}, {"lang_tag", &update.lang_tag},
        {"location", &update.location},     {"timezone", &update.timezone},
        {"metadata", &update.metadata}};
    std::string sql = "UPDATE users SET update_time = ?";
    for (const auto& f : fields) {
        if (*f.value)
            (sql += ", ") += std::string(f.column) + " = ?";
    }
    sql += " WHERE id = ?";

    auto c = impl_->acquire();
    const auto error = [&] {
        return impl_->failed(*c, Operation::update_account, kUpdateError);
    };
    sqlite3_stmt* raw = c->prepare_once(sql);
    if (!raw)
        return error();
    int i = 1;
    sqlite3_bind_int64(raw, i++, unix_now());
    for (const auto& f : fields) {
        if (!*f.value)
            continue;
        const std::string& v = **f.value;
        if (v.empty() && f.value != &update.username && f.value != &update.metadata) {
            sqlite3_bind_null(raw, i++);
        } else {
            sqlite3_bind_text(raw, i++, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
        }
    }
    sqlite3_bind_text(raw, i, user_id.data(), static_cast<int>(user_id.size()), SQLITE_TRANSIENT);
    const int rc = sqlite3_step(raw);
    if (rc != SQLITE_DONE && rc != SQLITE_CONSTRAINT_UNIQUE) {
        // CHECK (column length) failures land here too, as in Postgres; the API checks lengths
        // first, so they are logged as the database errors they would be.
        const Status status = error();  // before finalize, which clears SQLite's message
        sqlite3_finalize(raw);
        return status;
    }
    sqlite3_finalize(raw);
    if (rc == SQLITE_CONSTRAINT_UNIQUE)
        return kUsernameTaken;
    if (c->changes() == 0)
        return kAccountNotFound;
    return Status::ok();
}

Status SqliteAccountStore::delete_account(std::string_view user_id) {
    auto c = impl_->acquire();
    const auto error = [&] {
        return impl_->failed(*c, Operation::delete_account, kDeleteAccountError);
    };
    WriteTransaction tx(*c);
    if (!tx.begun())
        return error();
    for (const char* sql :
         {"DELETE FROM user_device WHERE user_id = ?", "DELETE FROM storage WHERE user_id = ?",
          "DELETE FROM wallet_ledger WHERE user_id = ?", "DELETE FROM users WHERE id = ?"}) {
        Stmt s = c->prepare(sql);
        if (!s)
            return error();
        s.bind(1, user_id);
        if (s.step() != SQLITE_DONE)
            return error();
    }
    return tx.commit() ? Status::ok() : error();
}

Status SqliteAccountStore::set_disabled(std::string_view user_id, bool disabled) {
    auto c = impl_->acquire();
    Stmt s = c->prepare("UPDATE users SET disable_time = ?, update_time = ? WHERE id = ?");
    if (!s)
        return impl_->failed(*c, Operation::set_disabled, kFindError);
    const std::int64_t now = unix_now();
    s.bind(1, disabled ? now : std::int64_t{0}).bind(2, now).bind(3, user_id);
    if (s.step() != SQLITE_DONE)
        return impl_->failed(*c, Operation::set_disabled, kFindError);
    return c->changes() == 0 ? kNotFound : Status::ok();
}


// ---- storage objects and wallets ------------------------------------------------------------

struct SqliteAccountStore::Storage {
    // Writes inside an open transaction; on a rejection returns it (the caller rolls back).
    static Status write_in_tx(Impl& impl, Connection& c, std::string_view caller,
                              const std::vector<StorageWrite>& writes,
                              std::vector<StorageAck>& acks) {
        const std::int64_t now = unix_now();
        for (const auto& w : writes) {
            const std::string user_id = owner_of(caller, w.user_id);
            std::string current_version;
            int current_write = 1;
            bool exists = false;
            {
                Stmt s = c.prepare(
                    "SELECT version, write FROM storage WHERE collection = ? AND key = ? AND "
                    "user_id = ?");
                if (!s)
                    return impl.failed(c, Operation::storage_write, kWriteError);
                s.bind(1, w.collection).bind(2, w.key).bind(3, user_id);
                const int rc = s.step();
                if (rc == SQLITE_ROW) {
                    exists = true;
                    current_version = s.text(0);
                    current_write = static_cast<int>(s.int64(1));
                } else if (rc != SQLITE_DONE) {
                    return impl.failed(c, Operation::storage_write, kWriteError);
                }
            }
            if (!caller.empty() && exists && current_write == 0)
                return kWriteRejectedPermission;
            if (w.version == "*" && exists)
                return kWriteRejectedVersion;
            if (!w.version.empty() && w.version != "*" &&
                (!exists || w.version != current_version))
                return kWriteRejectedVersion;
            const std::string version = md5_hex(w.value);
            Stmt s = c.prepare(
                "INSERT INTO storage (collection, key, user_id, value, version, read, write, "
                "create_time, update_time) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (collection, key, user_id) DO UPDATE SET value = excluded.value, "
                "version = excluded.version, read = excluded.read, write = excluded.write, "
                "update_time = excluded.update_time");
            if (!s)
                return impl.failed(c, Operation::storage_write, kWriteError);
            s.bind(1, w.collection)
                .bind(2, w.key)
                .bind(3, user_id)
                .bind(4, w.value)
                .bind(5, version)
                .bind(6, std::int64_t{w.permission_read})
                .bind(7, std::int64_t{w.permission_write})
                .bind(8, now)
                .bind(9, now);
            if (s.step() != SQLITE_DONE)
                return impl.failed(c, Operation::storage_write, kWriteError);
            acks.push_back({w.collection, w.key, user_id, version});
        }
        return Status::ok();
    }

    static Status delete_in_tx(Impl& impl, Connection& c, std::string_view caller,
                               const std::vector<StorageId>& ids) {
        for (const auto& id : ids) {
            if (Status st = check_id(id); !st)
                return st;
            const std::string user_id = owner_of(caller, id.user_id);
            // Clients delete only writable objects; a version, when given, must match.
            Stmt s = c.prepare(
                "DELETE FROM storage WHERE collection = ? AND key = ? AND user_id = ? AND "
                "(? = '' OR version = ?) AND (? = 0 OR write = 1)");
            if (!s)
                return impl.failed(c, Operation::storage_delete, kDeleteError);
            s.bind(1, id.collection)
                .bind(2, id.key)
                .bind(3, user_id)
                .bind(4, id.version)
                .bind(5, id.version)
                .bind(6, std::int64_t{caller.empty() ? 0 : 1});
            if (s.step() != SQLITE_DONE)
                return impl.failed(c, Operation::storage_delete, kDeleteError);
            // The server may delete what is already gone unless it named a version.
            if (c.changes() == 0 && (!caller.empty() || !id.version.empty()))
                return kDeleteRejected;
        }
        return Status::ok();
    }

    static Status wallets_in_tx(Impl& impl, Connection& c, const std::vector<WalletChange>& changes,
                                bool update_ledger, std::vector<WalletResult>& out) {
        const std::int64_t now = unix_now();
        const unsigned depth = impl.options.storage.max_json_depth;
        for (const auto& change : changes) {
            WalletResult r;
            r.user_id = change.user_id;
            {
                Stmt s = c.prepare("SELECT wallet FROM users WHERE id = ?");
                if (!s)
                    return impl.failed(c, Operation::wallet_update, kWalletError);
                s.bind(1, change.user_id);
                const int rc = s.step();
                if (rc == SQLITE_DONE)
                    return kNotFound;
                if (rc != SQLITE_ROW)
                    return impl.failed(c, Operation::wallet_update, kWalletError);
                if (!parse_wallet(s.text(0), depth, r.previous))
                    return kWalletReadError;
            }
            r.updated = r.previous;
            if (Status st = apply_changeset(r.updated, change.changeset); !st)
                return st;
            const std::string metadata = change.metadata.empty() ? "{}" : change.metadata;
            if (!is_json_object(metadata, depth))
                return kBadMetadata;
            {
                Stmt s = c.prepare("UPDATE users SET wallet = ?, update_time = ? WHERE id = ?");
                if (!s)
                    return impl.failed(c, Operation::wallet_update, kWalletError);
                s.bind(1, wallet_json(r.updated)).bind(2, now).bind(3, change.user_id);
                if (s.step() != SQLITE_DONE)
                    return impl.failed(c, Operation::wallet_update, kWalletError);
            }
            if (update_ledger) {
                Stmt s = c.prepare(
                    "INSERT INTO wallet_ledger (id, user_id, changeset, metadata, create_time, "
                    "update_time) VALUES (?, ?, ?, ?, ?, ?)");
                if (!s)
                    return impl.failed(c, Operation::wallet_update, kWalletError);
                s.bind(1, random_uuid_v4())
                    .bind(2, change.user_id)
                    .bind(3, wallet_json(change.changeset))
                    .bind(4, metadata)
                    .bind(5, now)
                    .bind(6, now);
                if (s.step() != SQLITE_DONE)
                    return impl.failed(c, Operation::wallet_update, kWalletError);
            }
            out.push_back(std::move(r));
        }
        return Status::ok();
    }
};

Status SqliteAccountStore::storage_write(std::string_view caller,
                                         const std::vector<StorageWrite>& writes,
                                         std::vector<StorageAck>& acks) {
    acks.clear();
    if (Status st = check_writes(writes, writes.size(), impl_->options.storage); !st)
        return st;
    if (writes.empty())
        return Status::ok();
    Status st = impl_->transact(Operation::storage_write, kWriteError, [&](Connection& c) {
        return Storage::write_in_tx(*impl_, c, caller, writes, acks);
    });
    if (!st)
        acks.clear();
    return st;
}

Status SqliteAccountStore::storage_read(std::string_view caller, const std::vector<StorageId>& ids,
                                        std::vector<StorageObject>& out) {
    out.clear();
    if (Status st = check_reads(ids, impl_->options.storage); !st)
        return st;
    auto c = impl_->acquire();
    for (const auto& id : ids) {
        const std::string user_id = id.user_id.empty() ? std::string(kSystemUserId) : id.user_id;
        Stmt s = c->prepare(
            "SELECT value, version, read, write, create_time, update_time FROM storage WHERE "
            "collection = ? AND key = ? AND user_id = ?");
        if (!s)
            return impl_->failed(*c, Operation::storage_read, kReadError);
        s.bind(1, id.collection).bind(2, id.key).bind(3, user_id);
        const int rc = s.step();
        if (rc == SQLITE_DONE)
            continue;
        if (rc != SQLITE_ROW)
            return impl_->failed(*c, Operation::storage_read, kReadError);
        StorageObject o;
        o.collection = id.collection;
        o.key = id.key;
        o.user_id = user_id;
        o.value = s.text(0);
        o.version = s.text(1);
        o.permission_read = static_cast<int>(s.int64(2));
        o.permission_write = static_cast<int>(s.int64(3));
        o.create_time = s.int64(4);
        o.update_time = s.int64(5);
        // Clients read their own readable objects and everyone's public ones.
        if (readable_by(caller, o))
            out.push_back(std::move(o));
    }
    return Status::ok();
}

Status SqliteAccountStore::storage_list(std::string_view caller, std::string_view user_id,
                                        std::string_view collection, int limit,
                                        std::string_view cursor, StoragePage& out) {
    out = {};
    if (Status st = check_list_limit(limit); !st)
        return st;
    if (Status st = check_collection(collection); !st)
        return st;
    // Keyset cursor: the (key, user_id) of the last object of the previous page.
    std::string after_key, after_user;
    if (!cursor.empty() && !parse_storage_cursor(cursor, after_key, after_user))
        return kBadCursor;
    // What the caller may see: the server everything; a client its own readable objects
    // (listing itself) or public ones.
    const int min_read = min_read_for_list(caller, user_id);
    auto c = impl_->acquire();
    Stmt s = user_id.empty()
                 ? c->prepare(
                       "SELECT key, user_id, value, version, read, write, create_time, update_time "
                       "FROM storage WHERE collection = ? AND read >= ? AND (? = 0 OR key > ? OR "
                       "(key = ? AND user_id > ?)) ORDER BY key, user_id LIMIT ?")
                 : c->prepare(
                       "SELECT key, user_id, value, version, read, write, create_time, update_time "
                       "FROM storage WHERE collection = ? AND read >= ? AND (? = 0 OR key > ? OR "
                       "(key = ? AND user_id > ?)) AND user_id = ? ORDER BY key, user_id LIMIT ?");
    if (!s)
        return impl_->failed(*c, Operation::storage_list, kListError);
    s.bind(1, collection)
        .bind(2, std::int64_t{min_read})
        .bind(3, std::int64_t{cursor.empty() ? 0 : 1})
        .bind(4, after_key)
        .bind(5, after_key)
        .bind(6, after_user);
    if (user_id.empty())
        s.bind(7, std::int64_t{limit + 1});
    else
        s.bind(7, user_id).bind(8, std::int64_t{limit + 1});
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
        if (out.objects.size() == static_cast<std::size_t>(limit)) {
            const auto& last = out.objects.back();
            out.cursor = storage_cursor(last.key, last.user_id);
            break;
        }
        StorageObject o;
        o.collection = std::string(collection);
        o.key = s.text(0);
        o.user_id = s.text(1);
        o.value = s.text(2);
        o.version = s.text(3);
        o.permission_read = static_cast<int>(s.int64(4));
        o.permission_write = static_cast<int>(s.int64(5));
        o.create_time = s.int64(6);
        o.update_time = s.int64(7);
        out.objects.push_back(std::move(o));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return impl_->failed(*c, Operation::storage_list, kListError);
    return Status::ok();
}

Status SqliteAccountStore::storage_delete(std::string_view caller,
                                          const std::vector<StorageId>& ids) {
    if (Status st = check_batch(ids.size(), impl_->options.storage); !st)
        return st;
    if (ids.empty())
        return Status::ok();
    return impl_->transact(Operation::storage_delete, kDeleteError, [&](Connection& c) {
        return Storage::delete_in_tx(*impl_, c, caller, ids);
    });
}

Status SqliteAccountStore::wallets_update(const std::vector<WalletChange>& changes,
                                          bool update_ledger, std::vector<WalletResult>& out) {
    std::vector<StorageAck> no_acks;
    return multi_update({}, {}, changes, update_ledger, no_acks, out);
}

Status SqliteAccountStore::multi_update(const std::vector<StorageWrite>& writes,
                                        const std::vector<StorageId>& deletes,
                                        const std::vector<WalletChange>& wallets,
                                        bool update_ledger, std::vector<StorageAck>& acks,
                                        std::vector<WalletResult>& wallet_results) {
    acks.clear();
    wallet_results.clear();
    const auto& limits = impl_->options.storage;
    if (Status st =
            check_writes(writes, writes.size() + deletes.size() + wallets.size(), limits);
        !st)
        return st;
    if (writes.empty() && deletes.empty() && wallets.empty())
        return Status::ok();
    Status st = impl_->transact(Operation::wallet_update, kWalletError, [&](Connection& c) {
        Status s = Storage::write_in_tx(*impl_, c, "", writes, acks);
        if (s)
            s = Storage::delete_in_tx(*impl_, c, "", deletes);
        if (s)
            s = Storage::wallets_in_tx(*impl_, c, wallets, update_ledger, wallet_results);
        return s;
    });
    if (!st) {
        acks.clear();
        wallet_results.clear();
    }
    return st;
}

Status SqliteAccountStore::wallet_ledger_list(std::string_view user_id, int limit,
                                              std::string_view cursor, LedgerPage& out) {
    out = {};
    if (Status st = check_list_limit(limit); !st)
        return st;
    std::int64_t before = INT64_MAX;
    if (!cursor.empty() && !parse_ledger_cursor(cursor, before))
        return kBadCursor;
    auto c = impl_->acquire();
    Stmt s = c->prepare(
        "SELECT seq, id, changeset, metadata, create_time, update_time FROM wallet_ledger "
        "WHERE user_id = ? AND seq < ? ORDER BY seq DESC LIMIT ?");
    if (!s)
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    s.bind(1, user_id).bind(2, before).bind(3, std::int64_t{limit + 1});
    std::int64_t last_rowid = 0;
    int rc;
    while ((rc = s.step()) == SQLITE_ROW) {
        if (out.items.size() == static_cast<std::size_t>(limit)) {
            out.cursor = ledger_cursor(last_rowid);
            break;
        }
        LedgerItem item;
        last_rowid = s.int64(0);
        item.id = s.text(1);
        item.user_id = std::string(user_id);
        parse_wallet(s.text(2), impl_->options.storage.max_json_depth, item.changeset);
        item.metadata = s.text(3);
        item.create_time = s.int64(4);
        item.update_time = s.int64(5);
        out.items.push_back(std::move(item));
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    return Status::ok();
}

Status SqliteAccountStore::wallet_ledger_update(std::string_view id, std::string_view metadata,
                                                LedgerItem& out) {
    const unsigned depth = impl_->options.storage.max_json_depth;
    if (!is_json_object(metadata, depth))
        return kBadMetadata;
    auto c = impl_->acquire();
    WriteTransaction tx(*c);
    if (!tx.begun())
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    {
        Stmt s = c->prepare(
            "SELECT user_id, changeset, metadata, create_time FROM wallet_ledger WHERE id = ?");
        if (!s)
            return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
        s.bind(1, id);
        const int rc = s.step();
        if (rc == SQLITE_DONE)
            return kLedgerItemNotFound;
        if (rc != SQLITE_ROW)
            return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
        out.id = std::string(id);
        out.user_id = s.text(0);
        parse_wallet(s.text(1), depth, out.changeset);
        out.create_time = s.int64(3);
        if (Status st = merge_object(s.text(2), metadata, depth, out.metadata); !st)
            return st;
    }
    out.update_time = unix_now();
    Stmt u = c->prepare("UPDATE wallet_ledger SET metadata = ?, update_time = ? WHERE id = ?");
    if (!u)
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    u.bind(1, out.metadata).bind(2, out.update_time).bind(3, id);
    if (u.step() != SQLITE_DONE || !tx.commit())
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    return Status::ok();
}

}  // namespace nk::store
