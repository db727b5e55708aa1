// libpq in small RAII pieces, shared by the PostgreSQL store and the revocation feed (internal
// to host/store): a Connection (prepared statements cached per connection, the last error kept
// for logging), its Result, statement Params and a Transaction.
#pragma once

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "store/options.hpp"

namespace nk::store::pg {

using Clock = std::chrono::steady_clock;

constexpr Oid kTextOid = 25;
constexpr Oid kInt8Oid = 20;
// One statement parameter. Text goes in binary format with its length (text's binary form is
// its bytes), so nothing is cut at a NUL byte; integers go as decimal text.
struct Param {
    Param(std::string_view v) : value(v) {}
    Param(const std::string& v) : value(v) {}
    Param(const char* v) : value(v) {}
    Param(std::int64_t v) : value(std::to_string(v)), type(kInt8Oid), format(0) {}
    Param(int v) : Param(std::int64_t{v}) {}
    static Param null_text() {
        Param p(std::string_view{});
        p.null = true;
        return p;
    }

    std::string value;
    Oid type = kTextOid;
    int format = 1;
    bool null = false;
};

class Result {
  public:
    explicit Result(PGresult* r) : r_(r) {}
    ~Result() { PQclear(r_); }
    Result(Result&& o) noexcept : r_(std::exchange(o.r_, nullptr)) {}
    Result& operator=(Result&&) = delete;
    Result(const Result&) = delete;

    bool ok() const {
        const auto s = PQresultStatus(r_);
        return r_ != nullptr && (s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK);
    }
    int rows() const { return PQntuples(r_); }
    std::string text(int row, int col) const {
        if (PQgetisnull(r_, row, col))
            return {};
        return std::string(PQgetvalue(r_, row, col),
                           static_cast<std::size_t>(PQgetlength(r_, row, col)));
    }
    std::int64_t int64(int row, int col) const {
        return PQgetisnull(r_, row, col) ? 0 : std::strtoll(PQgetvalue(r_, row, col), nullptr, 10);
    }
    long affected() const { return std::strtol(PQcmdTuples(r_), nullptr, 10); }
    std::string field(int code) const {
        const char* v = r_ != nullptr ? PQresultErrorField(r_, code) : nullptr;
        return v != nullptr ? v : "";
    }
    std::string sqlstate() const { return field(PG_DIAG_SQLSTATE); }
    bool unique_violation() const { return sqlstate() == "23505"; }
    std::string constraint() const { return field(PG_DIAG_CONSTRAINT_NAME); }
    std::string message() const {
        std::string m = r_ != nullptr ? PQresultErrorMessage(r_) : "out of memory";
        while (!m.empty() && (m.back() == '\n' || m.back() == ' '))
            m.pop_back();
        return m;
    }
    std::string command_status() const { return r_ != nullptr ? PQcmdStatus(r_) : ""; }

  private:
    PGresult* r_;
};

inline std::string trimmed(const char* s) {
    std::string m = s != nullptr ? s : "";
    while (!m.empty() && (m.back() == '\n' || m.back() == ' '))
        m.pop_back();
    return m;
}

class Connection {
  public:
    // nullptr with the reason in `error` when the server cannot be reached in time.
    static std::unique_ptr<Connection> open(const std::string& conninfo, const Options& options,
                                            std::string& error) {
        const auto seconds = std::max<std::uint32_t>(2, (options.connect_timeout_ms + 999) / 1000);
        const std::string timeout = std::to_string(seconds);
        // Ours first: what the address itself sets (expanded from dbname, last) wins.
        const char* keys[] = {"connect_timeout", "keepalives",       "keepalives_idle",
                              "keepalives_interval", "keepalives_count", "tcp_user_timeout",
                              "application_name", "dbname",          nullptr};
        const char* values[] = {timeout.c_str(), "1",      "10",            "5", "3", "10000",
                                "nkhost",        conninfo.c_str(), nullptr};
        PGconn* c = PQconnectdbParams(keys, values, 1);
        if (c == nullptr) {
            error = "out of memory";
            return nullptr;
        }
        if (PQstatus(c) != CONNECTION_OK) {
            error = trimmed(PQerrorMessage(c));
            PQfinish(c);
            return nullptr;
        }
        // Notices (e.g. "relation already exists, skipping") are not errors: keep them off
        // stderr.
        PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
        return std::unique_ptr<Connection>(new Connection(c));
    }
    ~Connection() { PQfinish(c_); }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    // Runs `sql` (a string literal: prepared once per connection, keyed by its address).
    Result exec(const char* sql, std::initializer_list<Param> params) {
        auto it = prepared_.find(sql);
        if (it == prepared_.end()) {
            std::vector<Oid> types;
            for (const auto& p : params)
                types.push_back(p.type);
            const std::string name = "s" + std::to_string(prepared_.size());
            Result r(PQprepare(c_, name.c_str(), sql, static_cast<int>(types.size()),
                               types.data()));
            if (!r.ok())
                return remember(std::move(r));
            it = prepared_.emplace(sql, name).first;
        }
        Values v(params.begin(), params.end());
        return remember(Result(PQexecPrepared(c_, it->second.c_str(), v.count(), v.values.data(),
                                              v.lengths.data(), v.formats.data(), 0)));
    }
    // Runs a statement built at run time (not prepared).
    Result exec_once(const std::string& sql, const std::vector<Param>& params) {
        Values v(params.begin(), params.end());
        return remember(Result(PQexecParams(c_, sql.c_str(), v.count(), v.types.data(),
                                            v.values.data(), v.lengths.data(), v.formats.data(),
                                            0)));
    }
    // Runs parameterless SQL (several statements allowed).
    bool command(const char* sql) { return remember(Result(PQexec(c_, sql))).ok(); }
    // COMMIT answers "ROLLBACK" without an error when the transaction had failed.
    bool commit() {
        Result r = remember(Result(PQexec(c_, "COMMIT")));
        return r.ok() && r.command_status() == "COMMIT";
    }

    bool broken() const { return PQstatus(c_) != CONNECTION_OK; }
    // For an idle connection (no query in flight, nothing expected from the server): false when
    // anything arrived on it meanwhile. What a server sends an idle client is the news that it is
    // closing the connection (a restart, a terminated backend, an idle timeout: an error message
    // and the end of the stream); the rare harmless message (a parameter changed by a reload)
    // costs one reconnect. One non-blocking poll; the pool asks before lending a connection, so
    // a request is not the one to find out.
    bool alive() {
        if (broken())
            return false;
        pollfd p{PQsocket(c_), POLLIN, 0};
        return ::poll(&p, 1, 0) == 0;
    }
    // For LISTEN: the socket to poll, PQconsumeInput and PQnotifies.
    PGconn* raw() { return c_; }
    const std::string& last_error() const { return last_error_; }
    const std::string& last_code() const { return last_code_; }
    Clock::time_point opened() const { return opened_; }

  private:
    explicit Connection(PGconn* c) : c_(c), opened_(Clock::now()) {}

    struct Values {
        template <typename It>
        Values(It begin, It end) {
            for (It p = begin; p != end; ++p) {
                types.push_back(p->type);
                values.push_back(p->null ? nullptr : p->value.c_str());
                lengths.push_back(static_cast<int>(p->value.size()));
                formats.push_back(p->format);
            }
        }
        int count() const { return static_cast<int>(values.size()); }
        std::vector<Oid> types;
        std::vector<const char*> values;
        std::vector<int> lengths;
        std::vector<int> formats;
    };

    Result remember(Result r) {
        if (!r.ok()) {
            last_error_ = r.message();
            if (last_error_.empty())
                last_error_ = trimmed(PQerrorMessage(c_));
            last_code_ = r.sqlstate();
        }
        return r;
    }

    PGconn* c_;
    Clock::time_point opened_;
    std::unordered_map<const char*, std::string> prepared_;
    std::string last_error_;
    std::string last_code_;
};

class Transaction {
  public:
    explicit Transaction(Connection& c) : c_(c), ok_(c.command("BEGIN")) {}
    ~Transaction() { rollback(); }
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    bool begun() const { return ok_; }
    bool commit() {
        done_ = true;
        return c_.commit();
    }
    void rollback() {
        if (ok_ && !done_)
            c_.command("ROLLBACK");
        done_ = true;
    }

  private:
    Connection& c_;
    bool ok_;
    bool done_ = false;
};

}  // namespace nk::store::pg
