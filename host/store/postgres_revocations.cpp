#include "store/postgres_revocations.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <spdlog/spdlog.h>

#include <chrono>
#include <deque>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/uuid.hpp"
#include "log/log.hpp"
#include "log/rate_limit.hpp"
#include "metrics/registry.hpp"
#include "store/pg_connection.hpp"
#include "store/postgres_store.hpp"
#include "store/store_support.hpp"

namespace nk::store {
namespace {

using namespace pg;

// Serialises appends, so that sequence numbers become visible in order (pg_advisory_xact_lock).
constexpr std::int64_t kAppendLock = 0x6e6b7265766f6b;  // "nkrevok"
constexpr auto kReread = std::chrono::seconds(1);
constexpr auto kReconnect = std::chrono::seconds(1);
constexpr auto kSweepInterval = std::chrono::seconds(60);

}  // namespace

struct PostgresRevocations::Impl {
    Options options;
    Apply apply;
    const std::string node = random_uuid_v4();
    const std::string conninfo;

    std::mutex mutex;
    std::deque<Record> queue;
    bool stopping = false;
    const int wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);

    std::int64_t last_seq = 0;  // the feed thread's (and the constructor's) only
    Clock::time_point next_sweep = Clock::now() + kSweepInterval;
    log::RateLimit error_log{std::chrono::seconds(5)};

    metrics::Counter* published = nullptr;
    metrics::Counter* applied = nullptr;
    metrics::Counter* dropped = nullptr;
    std::thread thread;

    Impl(const Options& o, Apply a, metrics::Registry* registry)
        : options(o), apply(std::move(a)), conninfo(PostgresStore::conninfo(o.address)) {
        if (registry != nullptr) {
            published = &registry->counter("cluster_revocations_published",
                                           "Token revocations of this node sent to the others.");
            applied = &registry->counter("cluster_revocations_applied",
                                         "Token revocations of other nodes applied here.");
            dropped = &registry->counter(
                "cluster_revocations_dropped",
                "Token revocations not sent to the other nodes: the queue was full while the "
                "database was unreachable.");
        }
    }
    ~Impl() {
        if (wake_fd >= 0)
            ::close(wake_fd);
    }

    void failed(std::string_view what, std::string_view error) {
        if (const auto suppressed = error_log.allow()) {
            log::Fields fields = {{"error", std::string(error)}};
            if (*suppressed > 0)
                fields.emplace_back("suppressed", std::to_string(*suppressed));
            log::write(spdlog::level::err, what, fields);
        }
    }

    std::unique_ptr<Connection> connect() {
        std::string error;
        auto c = Connection::open(conninfo, options, error);
        if (!c) {
            failed("Revocation feed cannot connect", error);
            return nullptr;
        }
        if (!c->command("LISTEN nkhost_revocation")) {
            failed("Revocation feed cannot listen", c->last_error());
            return nullptr;
        }
        return c;
    }

    // Applies the rows of other nodes after last_seq.
    bool catch_up(Connection& c) {
        Result r = c.exec(
            "SELECT seq, node, kind, user_id, token_id, at, expires_at FROM revocation WHERE "
            "seq > $1 ORDER BY seq",
            {last_seq});
        if (!r.ok()) {
            failed("Revocation feed cannot read", c.last_error());
            return false;
        }
        for (int i = 0; i < r.rows(); ++i) {
            last_seq = r.int64(i, 0);
            if (r.text(i, 1) == node)
                continue;
            Record rec;
            rec.kind = static_cast<int>(r.int64(i, 2));
            rec.user_id = r.text(i, 3);
            rec.token_id = r.text(i, 4);
            rec.at = r.int64(i, 5);
            rec.expires_at = r.int64(i, 6);
            apply(rec);
            if (applied != nullptr)
                applied->inc();
        }
        return true;
    }

    // Appends what publish() queued; on failure puts it back, in order.
    bool flush(Connection& c) {
        std::deque<Record> batch;
        {
            std::lock_guard lock(mutex);
            batch.swap(queue);
        }
        if (batch.empty())
            return true;
        bool ok = false;
        {
            Transaction tx(c);
            ok = tx.begun() && c.exec("SELECT pg_advisory_xact_lock($1)", {kAppendLock}).ok();
            for (auto it = batch.begin(); ok && it != batch.end(); ++it) {
                ok = c.exec("INSERT INTO revocation (node, kind, user_id, token_id, at, "
                            "expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                            {node, it->kind, it->user_id, it->token_id, it->at, it->expires_at})
                         .ok();
            }
            ok = ok && c.command("NOTIFY nkhost_revocation") && tx.commit();
        }
        if (ok) {
            if (published != nullptr)
                published->inc(batch.size());
            return true;
        }
        failed("Revocation feed cannot append", c.last_error());
        std::lock_guard lock(mutex);
        while (!batch.empty()) {
            if (queue.size() >= kMaxQueued) {
                if (dropped != nullptr)
                    dropped->inc(batch.size());
                break;
            }
            queue.push_front(std::move(batch.back()));
            batch.pop_back();
        }
        return false;
    }

    void sweep(Connection& c) {
        const auto now = Clock::now();
        if (now < next_sweep)
            return;
        next_sweep = now + kSweepInterval;
        if (!c.exec("DELETE FROM revocation WHERE expires_at < $1", {detail::unix_now()}).ok())
            failed("Revocation feed cannot delete expired rows", c.last_error());
    }

    // Waits for a publish(), stop, or traffic on `socket` (-1: none), at most `timeout`.
    void wait(int socket, std::chrono::milliseconds timeout) {
        pollfd fds[2] = {{wake_fd, POLLIN, 0}, {socket, POLLIN, 0}};
        ::poll(fds, socket >= 0 ? 2 : 1, static_cast<int>(timeout.count()));
        std::uint64_t n;
        while (::read(wake_fd, &n, sizeof n) > 0) {
        }
    }

    bool stop_requested() {
        std::lock_guard lock(mutex);
        return stopping;
    }

    void run(std::unique_ptr<Connection> c) {
        while (!stop_requested()) {
            if (!c) {
                wait(-1, kReconnect);
                if (stop_requested())
                    break;
                c = connect();
                if (c && !catch_up(*c))
                    c.reset();
                continue;
            }
            if (!flush(*c)) {
                if (c->broken())
                    c.reset();
                continue;
            }
            wait(PQsocket(c->raw()), std::chrono::duration_cast<std::chrono::milliseconds>(kReread));
            if (!PQconsumeInput(c->raw())) {
                failed("Revocation feed lost its connection", trimmed(PQerrorMessage(c->raw())));
                c.reset();
                continue;
            }
            while (PGnotify* n = PQnotifies(c->raw()))
                PQfreemem(n);
            if (!catch_up(*c) && c->broken()) {
                c.reset();
                continue;
            }
            sweep(*c);
        }
        // Last chance for what was queued just before shutdown.
        if (c)
            flush(*c);
    }
};

PostgresRevocations::PostgresRevocations(const Options& options, Apply apply,
                                         metrics::Registry* metrics)
    : impl_(std::make_unique<Impl>(options, std::move(apply), metrics)) {
    if (impl_->wake_fd < 0)
        throw std::runtime_error("cannot create an eventfd for the revocation feed");
    auto c = impl_->connect();
    if (!c)
        throw std::runtime_error("revocation feed: cannot connect to the database");
    if (!impl_->catch_up(*c))
        throw std::runtime_error("revocation feed: cannot read revocations: " + c->last_error());
    impl_->thread = std::thread([impl = impl_.get(), c = std::move(c)]() mutable {
        impl->run(std::move(c));
    });
}

PostgresRevocations::~PostgresRevocations() {
    stop();
}

void PostgresRevocations::stop() {
    {
        std::lock_guard lock(impl_->mutex);
        impl_->stopping = true;
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof one);
    if (impl_->thread.joinable())
        impl_->thread.join();
}

void PostgresRevocations::publish(Record record) {
    {
        std::lock_guard lock(impl_->mutex);
        if (impl_->queue.size() >= kMaxQueued) {
            if (impl_->dropped != nullptr)
                impl_->dropped->inc();
            if (impl_->error_log.allow())
                log::write(spdlog::level::err,
                           "Revocation feed queue full: a revocation is not sent to other nodes",
                           {{"user_id", record.user_id}});
            return;
        }
        impl_->queue.push_back(std::move(record));
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(impl_->wake_fd, &one, sizeof one);
}

}  // namespace nk::store
