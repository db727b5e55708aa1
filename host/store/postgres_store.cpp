#include "store/postgres_store.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <mutex>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/uuid.hpp"
#include "log/log.hpp"
#include "store/password.hpp"
#include "store/pg_connection.hpp"
#include "store/store_support.hpp"

namespace nk::store {
namespace {

using namespace detail;

// Each entry migrates the schema from version i to i + 1. Append only; versions 1 and 2 mean the
// same as the SQLite engine's, 3 (what several nodes share) exists only here.
const char* const kMigrations[] = {
    R"sql(
CREATE TABLE users (
    id           TEXT COLLATE "C" PRIMARY KEY,
    username     TEXT COLLATE "C" NOT NULL CONSTRAINT users_username_key UNIQUE
                 CHECK (char_length(username) BETWEEN 1 AND 128),
    display_name TEXT CHECK (char_length(display_name) <= 255),
    avatar_url   TEXT CHECK (char_length(avatar_url) <= 512),
    lang_tag     TEXT DEFAULT 'en' CHECK (char_length(lang_tag) <= 18),
    location     TEXT CHECK (char_length(location) <= 255),
    timezone     TEXT CHECK (char_length(timezone) <= 255),
    metadata     TEXT NOT NULL DEFAULT '{}' CHECK (char_length(metadata) <= 16384),
    wallet       TEXT NOT NULL DEFAULT '{}' CHECK (char_length(wallet) <= 16384),
    email        TEXT COLLATE "C" CONSTRAINT users_email_key UNIQUE
                 CHECK (char_length(email) BETWEEN 10 AND 255),
    password     TEXT,
    custom_id    TEXT COLLATE "C" CONSTRAINT users_custom_id_key UNIQUE
                 CHECK (char_length(custom_id) BETWEEN 6 AND 128),
    verify_time  BIGINT NOT NULL DEFAULT 0,
    disable_time BIGINT NOT NULL DEFAULT 0,
    create_time  BIGINT NOT NULL,
    update_time  BIGINT NOT NULL
);
CREATE TABLE user_device (
    id      TEXT COLLATE "C" PRIMARY KEY CHECK (char_length(id) BETWEEN 10 AND 128),
    user_id TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE
);
CREATE INDEX user_device_user_id_idx ON user_device (user_id);
)sql",
    // 2: storage objects and the wallet ledger.
    R"sql(
CREATE TABLE storage (
    collection  TEXT COLLATE "C" NOT NULL CHECK (char_length(collection) BETWEEN 1 AND 128),
    key         TEXT COLLATE "C" NOT NULL CHECK (char_length(key) BETWEEN 1 AND 128),
    user_id     TEXT COLLATE "C" NOT NULL,
    value       TEXT NOT NULL,
    version     TEXT NOT NULL,
    read        SMALLINT NOT NULL CHECK (read BETWEEN 0 AND 2),
    write       SMALLINT NOT NULL CHECK (write BETWEEN 0 AND 1),
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    PRIMARY KEY (collection, key, user_id)
);
CREATE INDEX storage_user_idx ON storage (collection, user_id, key);
CREATE TABLE wallet_ledger (
    seq         BIGSERIAL PRIMARY KEY,  -- insertion order (newest first in lists)
    id          TEXT COLLATE "C" NOT NULL UNIQUE,
    user_id     TEXT COLLATE "C" NOT NULL,
    changeset   TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE INDEX wallet_ledger_user_idx ON wallet_ledger (user_id, seq);
)sql",
    // 3: revocations shared by the nodes (store/postgres_revocations.hpp).
    R"sql(
CREATE TABLE revocation (
    seq        BIGSERIAL PRIMARY KEY,
    node       TEXT NOT NULL,
    kind       SMALLINT NOT NULL,
    user_id    TEXT NOT NULL,
    token_id   TEXT NOT NULL,
    at         BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revocation_expires_idx ON revocation (expires_at);
)sql",
};
constexpr int kSchemaVersion = static_cast<int>(std::size(kMigrations));

// Serialises `nkhost migrate up` runs of several nodes (pg_advisory_xact_lock).
constexpr std::int64_t kMigrationLock = 0x6e6b686f7374;  // "nkhost"

using namespace pg;

constexpr const char* kUniqueViolation = "23505";
constexpr const char* kUndefinedTable = "42P01";
constexpr const char* kUsernameConstraint = "users_username_key";

// After a failed connection attempt, calls are answered at once for this long.
constexpr auto kReconnectBackoff = std::chrono::seconds(1);

const Status kUnavailable = Status::unavailable("Database unavailable, try again later.");

// Inserts a new user's row and identity under the given id; returns the first failing result
// (or the last one, when all went in).
using InsertIdentity = std::function<Result(Connection&, const std::string&)>;

Result insert_user(Connection& c, const std::string& id, std::string_view username,
                   const std::string* custom_id, const std::string* email,
                   const std::string* password_hash) {
    const std::int64_t now = unix_now();
    const auto text_or_null = [](const std::string* v) {
        return v != nullptr ? Param(*v) : Param::null_text();
    };
    return c.exec(
        "INSERT INTO users (id, username, custom_id, email, password, create_time, update_time) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7)",
        {id, username, text_or_null(custom_id), text_or_null(email), text_or_null(password_hash),
         now, now});
}

// 1 = found, 0 = absent, -1 = error. `sql` takes the key and returns id, username,
// disable_time (and the password hash when `password_hash` is given).
int lookup(Connection& c, const char* sql, std::string_view key, AuthResult& out,
           std::int64_t& disable_time, std::string* password_hash = nullptr) {
    Result r = c.exec(sql, {key});
    if (!r.ok())
        return -1;
    if (r.rows() == 0)
        return 0;
    out.user_id = r.text(0, 0);
    out.username = r.text(0, 1);
    disable_time = r.int64(0, 2);
    if (password_hash != nullptr)
        *password_hash = r.text(0, 3);
    return 1;
}

int read_schema_version(Connection& c) {
    Result r = c.exec("SELECT coalesce(max(version), 0) FROM schema_version", {});
    if (!r.ok()) {
        if (r.sqlstate() == kUndefinedTable)
            return 0;
        throw std::runtime_error("cannot read the database schema version: " + r.message());
    }
    return static_cast<int>(r.int64(0, 0));
}

}  // namespace

struct PostgresStore::Impl {
    Options options;
    std::string conninfo;
    ErrorReporter errors;
    int version = 0;

    std::mutex mutex;
    std::condition_variable available;
    std::vector<std::unique_ptr<Connection>> idle;
    std::size_t open = 0;
    Clock::time_point retry_after{};  // no connection attempts before this

    Impl(Options o, metrics::Registry* registry)
        : options(std::move(o)), conninfo(PostgresStore::conninfo(options.address)),
          errors(registry) {}

    // A borrowed connection (or none: the database cannot be reached), returned to the pool on
    // destruction unless it broke or outlived conn_max_lifetime_ms.
    class Lease {
      public:
        Lease(Impl& impl, std::unique_ptr<Connection> c) : impl_(impl), c_(std::move(c)) {}
        Lease(Lease&& o) noexcept : impl_(o.impl_), c_(std::move(o.c_)) {}
        ~Lease() {
            if (c_)
                impl_.release(std::move(c_));
        }
        explicit operator bool() const { return c_ != nullptr; }
        Connection* operator->() { return c_.get(); }
        Connection& operator*() { return *c_; }

      private:
        Impl& impl_;
        std::unique_ptr<Connection> c_;
    };

    bool expired(const Connection& c, Clock::time_point now) const {
        return options.conn_max_lifetime_ms != 0 &&
               now - c.opened() >= std::chrono::milliseconds(options.conn_max_lifetime_ms);
    }

    void release(std::unique_ptr<Connection> c) {
        std::unique_ptr<Connection> closing;
        {
            std::lock_guard lock(mutex);
            if (c->broken() || expired(*c, Clock::now()) || idle.size() >= options.max_idle_conns) {
                closing = std::move(c);
                --open;
            } else {
                idle.push_back(std::move(c));
            }
        }
        available.notify_one();
        // `closing` is closed here, outside the lock (PQfinish may send a terminate message).
    }

    Lease acquire() {
        std::unique_lock lock(mutex);
        const auto deadline = Clock::now() + std::chrono::milliseconds(options.connect_timeout_ms);
        for (;;) {
            const auto now = Clock::now();
            while (!idle.empty()) {
                auto c = std::move(idle.back());
                idle.pop_back();
                lock.unlock();
                // A connection the server closed while it sat idle (a restart) is dropped here,
                // and the next one (or a new one) serves the call.
                if (!expired(*c, now) && c->alive())
                    return Lease(*this, std::move(c));
                c.reset();
                lock.lock();
                --open;
            }
            if (now < retry_after)
                return Lease(*this, nullptr);
            if (open < options.max_open_conns) {
                ++open;
                lock.unlock();
                std::string error;
                auto c = Connection::open(conninfo, options, error);
                lock.lock();
                if (c)
                    return Lease(*this, std::move(c));
                --open;
                retry_after = Clock::now() + kReconnectBackoff;
                lock.unlock();
                available.notify_all();
                errors.report(Operation::open_connection,
                              {{"error", error}, {"status", std::string(kUnavailable.message())}});
                return Lease(*this, nullptr);
            }
            if (available.wait_until(lock, deadline) == std::cv_status::timeout &&
                idle.empty() && open >= options.max_open_conns)
                return Lease(*this, nullptr);
        }
    }

    // Runs `body(connection)` in one transaction on a pooled connection: Unavailable without one,
    // `error` (counted under `op`) when the transaction cannot begin or commit, else what `body`
    // returned (a failure rolls back).
    template <class Body>
    Status transact(Operation op, const Status& error, Body&& body) {
        auto c = acquire();
        if (!c)
            return kUnavailable;
        Transaction tx(*c);
        if (!tx.begun())
            return failed(*c, op, error);
        Status st = body(*c);
        if (st && !tx.commit())
            st = failed(*c, op, error);
        return st;
    }

    // Counts and logs a failure of the database during `op` (PostgreSQL's message and SQLSTATE
    // from `c`); returns what the client gets: `status`, or Unavailable when the connection
    // itself broke.
    Status failed(Connection& c, Operation op, const Status& status) {
        const Status& answer = c.broken() ? kUnavailable : status;
        errors.report(op, {{"error", c.last_error()},
                           {"code", c.last_code()},
                           {"status", std::string(answer.message())}});
        return answer;
    }

    // Nakama's find-or-create. A unique violation on insert means a concurrent call created the
    // identity (or took the username) first: the identity is looked up again.
    Status find_or_create(Operation op, const char* lookup_sql, std::string_view key,
                          std::string_view username, bool create, AuthResult& out,
                          const InsertIdentity& insert) {
        auto c = acquire();
        if (!c)
            return kUnavailable;
        std::int64_t disable_time = 0;
        int found = lookup(*c, lookup_sql, key, out, disable_time);
        if (found < 0)
            return failed(*c, op, kFindError);
        if (found == 0 && !create)
            return kNotFound;
        if (found == 0) {
            const std::string id = random_uuid_v4();
            Transaction tx(*c);
            if (!tx.begun())
                return failed(*c, op, kCreateError);
            Result r = insert(*c, id);
            if (r.ok()) {
                if (!tx.commit())
                    return failed(*c, op, kCreateError);
                out.user_id = id;
                out.username = std::string(username);
                out.created = true;
                return Status::ok();
            }
            if (!r.unique_violation())
                return failed(*c, op, kCreateError);
            const bool username_taken = r.constraint() == kUsernameConstraint;
            tx.rollback();
            found = lookup(*c, lookup_sql, key, out, disable_time);
            if (found < 0)
                return failed(*c, op, kCreateError);
            if (found == 0)
                return username_taken ? kUsernameTaken : failed(*c, op, kCreateError);
        }
        if (disable_time != 0)
            return kBanned;
        out.created = false;
        return Status::ok();
    }

    // ---- storage objects and wallets, inside an open transaction ----------------------------

    Status write_in_tx(Connection& c, std::string_view caller,
                       const std::vector<StorageWrite>& writes, std::vector<StorageAck>& acks) {
        const std::int64_t now = unix_now();
        const std::int64_t client = caller.empty() ? 0 : 1;
        for (const auto& w : writes) {
            const std::string user_id = owner_of(caller, w.user_id);
            const std::string version = md5_hex(w.value);
            if (w.version == "*") {
                Result r = c.exec(
                    "INSERT INTO storage (collection, key, user_id, value, version, read, write, "
                    "create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                    "ON CONFLICT (collection, key, user_id) DO NOTHING",
                    {w.collection, w.key, user_id, w.value, version, w.permission_read,
                     w.permission_write, now, now});
                if (!r.ok())
                    return failed(c, Operation::storage_write, kWriteError);
                if (r.affected() == 0) {
                    Result e = c.exec(
                        "SELECT write FROM storage WHERE collection = $1 AND key = $2 AND "
                        "user_id = $3 FOR UPDATE",
                        {w.collection, w.key, user_id});
                    if (!e.ok())
                        return failed(c, Operation::storage_write, kWriteError);
                    if (client != 0 && e.rows() > 0 && e.int64(0, 0) == 0)
                        return kWriteRejectedPermission;
                    return kWriteRejectedVersion;
                }
            } else {
                // The row stays locked until the transaction ends: its version cannot change
                // between this check and the write.
                Result e = c.exec(
                    "SELECT version, write FROM storage WHERE collection = $1 AND key = $2 AND "
                    "user_id = $3 FOR UPDATE",
                    {w.collection, w.key, user_id});
                if (!e.ok())
                    return failed(c, Operation::storage_write, kWriteError);
                const bool exists = e.rows() > 0;
                if (client != 0 && exists && e.int64(0, 1) == 0)
                    return kWriteRejectedPermission;
                if (!w.version.empty() && (!exists || w.version != e.text(0, 0)))
                    return kWriteRejectedVersion;
                // A row inserted meanwhile by another call is overwritten only if the caller
                // may write it.
                Result r = c.exec(
                    "INSERT INTO storage (collection, key, user_id, value, version, read, write, "
                    "create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
                    "ON CONFLICT (collection, key, user_id) DO UPDATE SET value = excluded.value, "
                    "version = excluded.version, read = excluded.read, write = excluded.write, "
                    "update_time = excluded.update_time WHERE $10 = 0 OR storage.write = 1",
                    {w.collection, w.key, user_id, w.value, version, w.permission_read,
                     w.permission_write, now, now, client});
                if (!r.ok())
                    return failed(c, Operation::storage_write, kWriteError);
                if (r.affected() == 0)
                    return kWriteRejectedPermission;
            }
            acks.push_back({w.collection, w.key, user_id, version});
        }
        return Status::ok();
    }

    Status delete_in_tx(Connection& c, std::string_view caller, const std::vector<StorageId>& ids) {
        const std::int64_t client = caller.empty() ? 0 : 1;
        for (const auto& id : ids) {
            if (Status st = check_id(id); !st)
                return st;
            const std::string user_id = owner_of(caller, id.user_id);
            // Clients delete only writable objects; a version, when given, must match.
            Result r = c.exec(
                "DELETE FROM storage WHERE collection = $1 AND key = $2 AND user_id = $3 AND "
                "($4 = '' OR version = $4) AND ($5 = 0 OR write = 1)",
                {id.collection, id.key, user_id, id.version, client});
            if (!r.ok())
                return failed(c, Operation::storage_delete, kDeleteError);
            // The server may delete what is already gone unless it named a version.
            if (r.affected() == 0 && (client != 0 || !id.version.empty()))
                return kDeleteRejected;
        }
        return Status::ok();
    }

    Status wallets_in_tx(Connection& c, const std::vector<WalletChange>& changes,
                         bool update_ledger, std::vector<WalletResult>& out) {
        const std::int64_t now = unix_now();
        const unsigned depth = options.storage.max_json_depth;
        for (const auto& change : changes) {
            WalletResult r;
            r.user_id = change.user_id;
            {
                Result w = c.exec("SELECT wallet FROM users WHERE id = $1 FOR UPDATE",
                                  {change.user_id});
                if (!w.ok())
                    return failed(c, Operation::wallet_update, kWalletError);
                if (w.rows() == 0)
                    return kNotFound;
                if (!parse_wallet(w.text(0, 0), depth, r.previous))
                    return kWalletReadError;
            }
            r.updated = r.previous;
            if (Status st = apply_changeset(r.updated, change.changeset); !st)
                return st;
            const std::string metadata = change.metadata.empty() ? "{}" : change.metadata;
            if (!is_json_object(metadata, depth))
                return kBadMetadata;
            if (!c.exec("UPDATE users SET wallet = $1, update_time = $2 WHERE id = $3",
                        {wallet_json(r.updated), now, change.user_id})
                     .ok())
                return failed(c, Operation::wallet_update, kWalletError);
            if (update_ledger &&
                !c.exec("INSERT INTO wallet_ledger (id, user_id, changeset, metadata, "
                        "create_time, update_time) VALUES ($1, $2, $3, $4, $5, $6)",
                        {random_uuid_v4(), change.user_id, wallet_json(change.changeset), metadata,
                         now, now})
                     .ok())
                return failed(c, Operation::wallet_update, kWalletError);
            out.push_back(std::move(r));
        }
        return Status::ok();
    }
};

std::string PostgresStore::conninfo(std::string_view address) {
    if (address.rfind("postgres://", 0) == 0 || address.rfind("postgresql://", 0) == 0)
        return std::string(address);
    // Nakama's user:password@host:port/dbname, the database defaulting to "nakama".
    std::string url = "postgresql://" + std::string(address);
    const auto query = address.find('?');
    const auto at = address.rfind('@', query);
    const auto host_start = at == std::string_view::npos ? 0 : at + 1;
    const auto slash = address.find('/', host_start);
    if (slash == std::string_view::npos || (query != std::string_view::npos && slash > query)) {
        const auto insert_at = std::string("postgresql://").size() +
                               (query == std::string_view::npos ? address.size() : query);
        url.insert(insert_at, "/nakama");
    }
    return url;
}

PostgresStore::PostgresStore(Options options, metrics::Registry* metrics) {
    if (options.max_open_conns == 0)
        options.max_open_conns = kPostgresMaxOpen;
    impl_ = std::make_unique<Impl>(std::move(options), metrics);
    std::string error;
    auto c = Connection::open(impl_->conninfo, impl_->options, error);
    if (!c)
        throw std::runtime_error("cannot connect to the database: " + error);
    impl_->version = read_schema_version(*c);
    if (impl_->version > kSchemaVersion) {
        throw std::runtime_error("database schema version " + std::to_string(impl_->version) +
                                 " is newer than this nkhost supports (" +
                                 std::to_string(kSchemaVersion) + ")");
    }
    if (impl_->version < kSchemaVersion) {
        throw std::runtime_error("database schema is at version " +
                                 std::to_string(impl_->version) + ", this nkhost needs " +
                                 std::to_string(kSchemaVersion) +
                                 ": run `nkhost migrate up` with the same database.address");
    }
    std::lock_guard lock(impl_->mutex);
    ++impl_->open;
    impl_->idle.push_back(std::move(c));
}

PostgresStore::~PostgresStore() = default;

int PostgresStore::schema_version() const {
    return impl_->version;
}

MigrateResult PostgresStore::migrate(const Options& options) {
    std::string error;
    auto c = Connection::open(conninfo(options.address), options, error);
    if (!c)
        throw std::runtime_error("cannot connect to the database: " + error);
    const auto fail = [&](const std::string& what) {
        throw std::runtime_error(what + ": " + c->last_error());
    };
    Transaction tx(*c);
    if (!tx.begun())
        fail("cannot migrate");
    if (!c->exec("SELECT pg_advisory_xact_lock($1)", {kMigrationLock}).ok())
        fail("cannot lock the schema for migration");
    if (!c->command("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"))
        fail("cannot create schema_version");
    MigrateResult result;
    result.from = read_schema_version(*c);
    if (result.from > kSchemaVersion) {
        throw std::runtime_error("database schema version " + std::to_string(result.from) +
                                 " is newer than this nkhost supports (" +
                                 std::to_string(kSchemaVersion) + ")");
    }
    for (int v = result.from; v < kSchemaVersion; ++v) {
        if (!c->command(kMigrations[v]))
            fail("migration to schema version " + std::to_string(v + 1) + " failed");
        if (!c->exec("INSERT INTO schema_version (version) VALUES ($1)", {v + 1}).ok())
            fail("cannot record schema version");
    }
    if (!tx.commit())
        fail("cannot migrate");
    result.to = kSchemaVersion;
    return result;
}

Status PostgresStore::authenticate_device(std::string_view device_id, std::string_view username,
                                          bool create, AuthResult& out) {
    const std::string device(device_id);
    return impl_->find_or_create(
        Operation::authenticate_device,
        "SELECT u.id, u.username, u.disable_time FROM user_device d JOIN users u ON u.id = "
        "d.user_id WHERE d.id = $1",
        device_id, username, create, out, [&](Connection& c, const std::string& id) {
            Result r = insert_user(c, id, username, nullptr, nullptr, nullptr);
            if (!r.ok())
                return r;
            return c.exec("INSERT INTO user_device (id, user_id) VALUES ($1, $2)", {device, id});
        });
}

Status PostgresStore::authenticate_custom(std::string_view custom_id, std::string_view username,
                                          bool create, AuthResult& out) {
    const std::string custom(custom_id);
    return impl_->find_or_create(
        Operation::authenticate_custom,
        "SELECT id, username, disable_time FROM users WHERE custom_id = $1", custom_id, username,
        create, out, [&](Connection& c, const std::string& id) {
            return insert_user(c, id, username, &custom, nullptr, nullptr);
        });
}

Status PostgresStore::authenticate_email(std::string_view email, std::string_view password,
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
            if (!c)
                return kUnavailable;
            Result r = c->exec("SELECT id, password, disable_time FROM users WHERE username = $1",
                               {username});
            if (!r.ok())
                return impl_->failed(*c, op, kFindError);
            if (r.rows() == 0)
                return kNotFound;
            out.user_id = r.text(0, 0);
            hash = r.text(0, 1);
            disable_time = r.int64(0, 2);
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
        "SELECT id, username, disable_time, password FROM users WHERE email = $1";
    const auto check_existing = [&](const std::string& hash, std::int64_t disable_time) {
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
        if (!c)
            return kUnavailable;
        found = lookup(*c, lookup_sql, clean_email, out, disable_time, &hash);
        if (found < 0)
            return impl_->failed(*c, op, kFindError);
    }
    if (found == 1)
        return check_existing(hash, disable_time);  // bcrypt outside the lease
    if (!create)
        return kNotFound;

    // Hash before inserting: bcrypt is the slow part.
    auto new_hash = bcrypt_hash(password, impl_->options.bcrypt_cost);
    if (!new_hash)
        return kCreateError;
    {
        auto c = impl_->acquire();
        if (!c)
            return kUnavailable;
        const std::string id = random_uuid_v4();
        Transaction tx(*c);
        if (!tx.begun())
            return impl_->failed(*c, op, kCreateError);
        Result r = insert_user(*c, id, username, nullptr, &clean_email, &*new_hash);
        if (r.ok()) {
            if (!tx.commit())
                return impl_->failed(*c, op, kCreateError);
            out.user_id = id;
            out.username = std::string(username);
            out.created = true;
            return Status::ok();
        }
        if (!r.unique_violation())
            return impl_->failed(*c, op, kCreateError);
        const bool username_taken = r.constraint() == kUsernameConstraint;
        tx.rollback();
        found = lookup(*c, lookup_sql, clean_email, out, disable_time, &hash);
        if (found < 0)
            return impl_->failed(*c, op, kCreateError);
        if (found == 0)
            return username_taken ? kUsernameTaken : impl_->failed(*c, op, kCreateError);
    }
    return check_existing(hash, disable_time);  // created meanwhile by a concurrent call
}

Status PostgresStore::find_user(std::string_view user_id, UserRef& out) {
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    Result r = c->exec("SELECT username, disable_time FROM users WHERE id = $1", {user_id});
    if (!r.ok())
        return impl_->failed(*c, Operation::find_user, kFindError);
    if (r.rows() == 0)
        return kNotFound;
    if (r.int64(0, 1) != 0)
        return kBanned;
    out.user_id = std::string(user_id);
    out.username = r.text(0, 0);
    return Status::ok();
}

Status PostgresStore::get_account(std::string_view user_id, Account& out) {
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    Result r = c->exec(
        "SELECT id, username, display_name, avatar_url, lang_tag, location, timezone, metadata, "
        "wallet, email, custom_id, verify_time, disable_time, create_time, update_time FROM "
        "users WHERE id = $1",
        {user_id});
    if (!r.ok())
        return impl_->failed(*c, Operation::get_account, kGetError);
    if (r.rows() == 0)
        return kAccountNotFound;
    out.id = r.text(0, 0);
    out.username = r.text(0, 1);
    out.display_name = r.text(0, 2);
    out.avatar_url = r.text(0, 3);
    out.lang_tag = r.text(0, 4);
    out.location = r.text(0, 5);
    out.timezone = r.text(0, 6);
    out.metadata = r.text(0, 7);
    out.wallet = r.text(0, 8);
    out.email = r.text(0, 9);
    out.custom_id = r.text(0, 10);
    out.verify_time = r.int64(0, 11);
    out.disable_time = r.int64(0, 12);
    out.create_time = r.int64(0, 13);
    out.update_time = r.int64(0, 14);
    Result d = c->exec("SELECT id FROM user_device WHERE user_id = $1 ORDER BY id", {user_id});
    if (!d.ok())
        return impl_->failed(*c, Operation::get_account, kGetError);
    out.devices.clear();
    for (int i = 0; i < d.rows(); ++i)
        out.devices.push_back(d.text(i, 0));
    return Status::ok();
}

Status PostgresStore::update_account(std::string_view user_id, const AccountUpdate& update) {
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
    std::vector<Param> params = {Param(unix_now())};
    std::string sql = "UPDATE users SET update_time = $1";
    for (const auto& f : fields) {
        if (!*f.value)
            continue;
        const std::string& v = **f.value;
        // "" clears a profile field (NULL); username and metadata are never NULL.
        const bool clear = v.empty() && f.value != &update.username && f.value != &update.metadata;
        params.push_back(clear ? Param::null_text() : Param(v));
        sql += ", " + std::string(f.column) + " = $" + std::to_string(params.size());
    }
    params.emplace_back(user_id);
    sql += " WHERE id = $" + std::to_string(params.size());

    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    Result r = c->exec_once(sql, params);
    if (!r.ok()) {
        if (r.unique_violation())
            return kUsernameTaken;
        // CHECK (column length) failures land here too; the API checks lengths first, so they
        // are logged as the database errors they would be.
        return impl_->failed(*c, Operation::update_account, kUpdateError);
    }
    return r.affected() == 0 ? kAccountNotFound : Status::ok();
}

Status PostgresStore::delete_account(std::string_view user_id) {
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    const auto error = [&] {
        return impl_->failed(*c, Operation::delete_account, kDeleteAccountError);
    };
    Transaction tx(*c);
    if (!tx.begun())
        return error();
    if (!c->exec("DELETE FROM user_device WHERE user_id = $1", {user_id}).ok() ||
        !c->exec("DELETE FROM storage WHERE user_id = $1", {user_id}).ok() ||
        !c->exec("DELETE FROM wallet_ledger WHERE user_id = $1", {user_id}).ok() ||
        !c->exec("DELETE FROM users WHERE id = $1", {user_id}).ok())
        return error();
    return tx.commit() ? Status::ok() : error();
}

Status PostgresStore::set_disabled(std::string_view user_id, bool disabled) {
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    const std::int64_t now = unix_now();
    Result r = c->exec("UPDATE users SET disable_time = $1, update_time = $2 WHERE id = $3",
                       {disabled ? now : std::int64_t{0}, now, user_id});
    if (!r.ok())
        return impl_->failed(*c, Operation::set_disabled, kFindError);
    return r.affected() == 0 ? kNotFound : Status::ok();
}

Status PostgresStore::storage_write(std::string_view caller,
                                    const std::vector<StorageWrite>& writes,
                                    std::vector<StorageAck>& acks) {
    acks.clear();
    if (Status st = check_writes(writes, writes.size(), impl_->options.storage); !st)
        return st;
    if (writes.empty())
        return Status::ok();
    Status st = impl_->transact(Operation::storage_write, kWriteError, [&](Connection& c) {
        return impl_->write_in_tx(c, caller, writes, acks);
    });
    if (!st)
        acks.clear();
    return st;
}

Status PostgresStore::storage_read(std::string_view caller, const std::vector<StorageId>& ids,
                                   std::vector<StorageObject>& out) {
    out.clear();
    if (Status st = check_reads(ids, impl_->options.storage); !st)
        return st;
    if (ids.empty())
        return Status::ok();
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    for (const auto& id : ids) {
        const std::string user_id = id.user_id.empty() ? std::string(kSystemUserId) : id.user_id;
        Result r = c->exec(
            "SELECT value, version, read, write, create_time, update_time FROM storage WHERE "
            "collection = $1 AND key = $2 AND user_id = $3",
            {id.collection, id.key, user_id});
        if (!r.ok())
            return impl_->failed(*c, Operation::storage_read, kReadError);
        if (r.rows() == 0)
            continue;
        StorageObject o;
        o.collection = id.collection;
        o.key = id.key;
        o.user_id = user_id;
        o.value = r.text(0, 0);
        o.version = r.text(0, 1);
        o.permission_read = static_cast<int>(r.int64(0, 2));
        o.permission_write = static_cast<int>(r.int64(0, 3));
        o.create_time = r.int64(0, 4);
        o.update_time = r.int64(0, 5);
        if (readable_by(caller, o))
            out.push_back(std::move(o));
    }
    return Status::ok();
}

Status PostgresStore::storage_list(std::string_view caller, std::string_view user_id,
                                   std::string_view collection, int limit,
                                   std::string_view cursor, StoragePage& out) {
    out = {};
    if (Status st = check_list_limit(limit); !st)
        return st;
    if (Status st = check_collection(collection); !st)
        return st;
    std::string after_key, after_user;
    if (!cursor.empty() && !parse_storage_cursor(cursor, after_key, after_user))
        return kBadCursor;
    const std::int64_t min_read = min_read_for_list(caller, user_id);
    const std::int64_t resume = cursor.empty() ? 0 : 1;
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    Result r = user_id.empty()
                   ? c->exec("SELECT key, user_id, value, version, read, write, create_time, "
                             "update_time FROM storage WHERE collection = $1 AND read >= $2 AND "
                             "($3 = 0 OR key > $4 OR (key = $4 AND user_id > $5)) "
                             "ORDER BY key, user_id LIMIT $6",
                             {collection, min_read, resume, after_key, after_user,
                              std::int64_t{limit + 1}})
                   : c->exec("SELECT key, user_id, value, version, read, write, create_time, "
                             "update_time FROM storage WHERE collection = $1 AND read >= $2 AND "
                             "($3 = 0 OR key > $4 OR (key = $4 AND user_id > $5)) AND "
                             "user_id = $6 ORDER BY key, user_id LIMIT $7",
                             {collection, min_read, resume, after_key, after_user, user_id,
                              std::int64_t{limit + 1}});
    if (!r.ok())
        return impl_->failed(*c, Operation::storage_list, kListError);
    for (int i = 0; i < r.rows(); ++i) {
        if (out.objects.size() == static_cast<std::size_t>(limit)) {
            const auto& last = out.objects.back();
            out.cursor = storage_cursor(last.key, last.user_id);
            break;
        }
        StorageObject o;
        o.collection = std::string(collection);
        o.key = r.text(i, 0);
        o.user_id = r.text(i, 1);
        o.value = r.text(i, 2);
        o.version = r.text(i, 3);
        o.permission_read = static_cast<int>(r.int64(i, 4));
        o.permission_write = static_cast<int>(r.int64(i, 5));
        o.create_time = r.int64(i, 6);
        o.update_time = r.int64(i, 7);
        out.objects.push_back(std::move(o));
    }
    return Status::ok();
}

Status PostgresStore::storage_delete(std::string_view caller, const std::vector<StorageId>& ids) {
    if (Status st = check_batch(ids.size(), impl_->options.storage); !st)
        return st;
    if (ids.empty())
        return Status::ok();
    return impl_->transact(Operation::storage_delete, kDeleteError,
                           [&](Connection& c) { return impl_->delete_in_tx(c, caller, ids); });
}

Status PostgresStore::wallets_update(const std::vector<WalletChange>& changes, bool update_ledger,
                                     std::vector<WalletResult>& out) {
    std::vector<StorageAck> no_acks;
    return multi_update({}, {}, changes, update_ledger, no_acks, out);
}

Status PostgresStore::multi_update(const std::vector<StorageWrite>& writes,
                                   const std::vector<StorageId>& deletes,
                                   const std::vector<WalletChange>& wallets, bool update_ledger,
                                   std::vector<StorageAck>& acks,
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
        Status s = impl_->write_in_tx(c, "", writes, acks);
        if (s)
            s = impl_->delete_in_tx(c, "", deletes);
        if (s)
            s = impl_->wallets_in_tx(c, wallets, update_ledger, wallet_results);
        return s;
    });
    if (!st) {
        acks.clear();
        wallet_results.clear();
    }
    return st;
}

Status PostgresStore::wallet_ledger_list(std::string_view user_id, int limit,
                                         std::string_view cursor, LedgerPage& out) {
    out = {};
    if (Status st = check_list_limit(limit); !st)
        return st;
    std::int64_t before = INT64_MAX;
    if (!cursor.empty() && !parse_ledger_cursor(cursor, before))
        return kBadCursor;
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    Result r = c->exec(
        "SELECT seq, id, changeset, metadata, create_time, update_time FROM wallet_ledger "
        "WHERE user_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        {user_id, before, std::int64_t{limit + 1}});
    if (!r.ok())
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    std::int64_t last_seq = 0;
    for (int i = 0; i < r.rows(); ++i) {
        if (out.items.size() == static_cast<std::size_t>(limit)) {
            out.cursor = ledger_cursor(last_seq);
            break;
        }
        LedgerItem item;
        last_seq = r.int64(i, 0);
        item.id = r.text(i, 1);
        item.user_id = std::string(user_id);
        parse_wallet(r.text(i, 2), impl_->options.storage.max_json_depth, item.changeset);
        item.metadata = r.text(i, 3);
        item.create_time = r.int64(i, 4);
        item.update_time = r.int64(i, 5);
        out.items.push_back(std::move(item));
    }
    return Status::ok();
}

Status PostgresStore::wallet_ledger_update(std::string_view id, std::string_view metadata,
                                           LedgerItem& out) {
    const unsigned depth = impl_->options.storage.max_json_depth;
    if (!is_json_object(metadata, depth))
        return kBadMetadata;
    auto c = impl_->acquire();
    if (!c)
        return kUnavailable;
    Transaction tx(*c);
    if (!tx.begun())
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    Result r = c->exec(
        "SELECT user_id, changeset, metadata, create_time FROM wallet_ledger WHERE id = $1 FOR "
        "UPDATE",
        {id});
    if (!r.ok())
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    if (r.rows() == 0)
        return kLedgerItemNotFound;
    out.id = std::string(id);
    out.user_id = r.text(0, 0);
    parse_wallet(r.text(0, 1), depth, out.changeset);
    out.create_time = r.int64(0, 3);
    if (Status st = merge_object(r.text(0, 2), metadata, depth, out.metadata); !st)
        return st;
    out.update_time = unix_now();
    if (!c->exec("UPDATE wallet_ledger SET metadata = $1, update_time = $2 WHERE id = $3",
                 {out.metadata, out.update_time, id})
             .ok() ||
        !tx.commit())
        return impl_->failed(*c, Operation::wallet_ledger, kLedgerError);
    return Status::ok();
}

}  // namespace nk::store
