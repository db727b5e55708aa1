#include "app/app.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "api/account.hpp"
#include "api/blocking_work.hpp"
#include "api/event_api.hpp"
#include "api/health.hpp"
#include "api/plugin_http.hpp"
#include "api/rpc_api.hpp"
#include "api/storage.hpp"
#include "api/services.hpp"
#include "auth/login_throttle.hpp"
#include "auth/tokens.hpp"
#include "core/blocking_pool.hpp"
#include "events/handlers.hpp"
#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "realtime/realtime.hpp"
#include "runtime/runtime.hpp"
#include "store/postgres_revocations.hpp"
#include "store/store.hpp"

namespace nk {

namespace {

unsigned blocking_threads(unsigned configured) {
    if (configured) return configured;
    return std::max(4u, 2u * std::max(1u, std::thread::hardware_concurrency()));
}

// The API's way to close a user's sockets (account deletion, logout, single_session).
class RealtimeSessionControl final : public api::SessionControl {
public:
    explicit RealtimeSessionControl(realtime::Realtime& realtime) : realtime_(realtime) {}
    void disconnect(const std::string& user_id, const std::string& token_id) override {
        realtime_.disconnect(user_id, token_id);
    }
    void disconnect_revoked(const std::string& user_id) override {
        realtime_.disconnect_revoked(user_id);
    }

private:
    realtime::Realtime& realtime_;
};

BlockingPool::Options pool_options(const net::Options& socket) {
    BlockingPool::Options o;
    o.threads = blocking_threads(socket.blocking_threads);
    o.max_queued = socket.blocking_queue_size;
    o.max_queued_bytes = socket.blocking_queue_max_bytes;
    o.password_threads = socket.password_threads ? socket.password_threads
                                                 : std::max<std::size_t>(1, o.threads / 4);
    return o;
}

}  // namespace

struct App::Impl {
    config::Config cfg;
    metrics::Registry registry;
    std::unique_ptr<api::WorkMetrics> work_metrics;  // before the pool, which reports to it
    std::unique_ptr<BlockingPool> pool;
    std::unique_ptr<auth::LoginThrottle> login_throttle;
    std::unique_ptr<auth::Tokens> tokens;
    std::unique_ptr<store::Store> accounts;
    std::unique_ptr<runtime::Runtime> runtime;
    std::unique_ptr<events::EventPipeline> pipeline;
    std::unique_ptr<realtime::Realtime> realtime;
    std::unique_ptr<RealtimeSessionControl> session_control;
    // PostgreSQL: revocations shared with the other nodes (stopped in shutdown()).
    std::unique_ptr<store::PostgresRevocations> revocations;
    api::Services services;
    net::Router router;
    std::unique_ptr<net::Server> server;
    net::Router metrics_router;
    std::unique_ptr<net::Server> metrics_server;
    bool started = false;
    bool stopped = false;
    bool left_behind = false;  // plugin code still running after shutdown()

    explicit Impl(config::Config c) : cfg(std::move(c)), registry(cfg.metrics.prefix, cfg.metrics.node_name) {}
};

App::App(config::Config config) : impl_(std::make_unique<Impl>(std::move(config))) {}

App::~App() {
    if (impl_->started && !impl_->stopped) shutdown();
}

void App::start() {
    auto& s = *impl_;
    const auto& cfg = s.cfg;
    std::filesystem::create_directories(cfg.data_dir);

    if (auto st = auth::Tokens::validate(cfg.session); !st.is_ok()) throw std::runtime_error(st.message());
    s.tokens = std::make_unique<auth::Tokens>(cfg.session);

    s.accounts = store::open_store(cfg.database, &s.registry);  // throws with the reason
    spdlog::info("Database opened engine={} schema_version={}", s.accounts->engine(),
                 s.accounts->schema_version());

    s.work_metrics = std::make_unique<api::WorkMetrics>(s.registry);
    auto pool_opts = pool_options(cfg.socket);
    pool_opts.queued_changed = [m = s.work_metrics.get()](BlockingPool::Lane lane, std::size_t n) {
        m->queued(lane, n);
    };
    s.pool = std::make_unique<BlockingPool>(pool_opts);
    s.login_throttle = std::make_unique<auth::LoginThrottle>(cfg.login_throttle);

    runtime::Dependencies deps;
    deps.accounts = s.accounts.get();
    deps.storage = s.accounts.get();
    deps.metrics = &s.registry;
    s.runtime = std::make_unique<runtime::Runtime>(cfg.runtime, deps);
    s.pipeline = std::make_unique<events::EventPipeline>(cfg.events, *s.runtime, &s.registry);
    s.runtime->set_event_sink(s.pipeline.get());
    // After a reload, idle workers let go of the retired generations' handlers.
    s.runtime->set_on_publish([p = s.pipeline.get()] { p->handlers_changed(); });
    s.pipeline->start();
    if (auto st = s.runtime->load_all(); !st.is_ok()) throw std::runtime_error(st.message());
    s.runtime->start_reloader();  // inotify when runtime.hot_reload; SIGHUP rescans always
    spdlog::info("Runtime modules loaded count={} path={}", s.runtime->module_count(),
                 runtime::effective_module_path(cfg.runtime).string());

    s.services.tokens = s.tokens.get();
    s.services.accounts = s.accounts.get();
    s.services.storage = s.accounts.get();
    s.services.pool = s.pool.get();
    s.services.events = s.pipeline.get();
    s.services.event_limits = &cfg.events;
    s.services.runtime = s.runtime.get();
    s.services.metrics = &s.registry;
    s.services.json = counted_json_limits(cfg.max_json_depth, &s.registry);
    s.services.work_metrics = s.work_metrics.get();
    s.services.login_throttle = s.login_throttle.get();
    s.services.proxy_count = cfg.socket.proxy_count;

    api::register_health_routes(s.router);
    api::register_account_routes(s.router, s.services);
    api::register_event_routes(s.router, s.services);
    api::register_rpc_routes(s.router, s.services);
    api::register_storage_routes(s.router, s.services);
    api::register_plugin_http_routes(s.router, s.services);
    s.realtime = std::make_unique<realtime::Realtime>(cfg.realtime, *s.tokens, s.pipeline.get(), &s.registry);
    s.realtime->attach(s.router);
    s.session_control = std::make_unique<RealtimeSessionControl>(*s.realtime);
    s.services.sessions = s.session_control.get();
    if (s.accounts->engine() == "postgresql") {
        // Several nodes: another node's logout, account deletion or single_session login is
        // applied here (and the sockets it concerns closed), and ours are sent to the others.
        auto* tokens = s.tokens.get();
        auto* realtime = s.realtime.get();
        s.revocations = std::make_unique<store::PostgresRevocations>(
            cfg.database,
            [tokens, realtime](const store::PostgresRevocations::Record& r) {
                if (r.kind == store::PostgresRevocations::kSocketOpened) {
                    realtime->disconnect(r.user_id);  // single_socket: the newest is elsewhere
                    return;
                }
                auth::Revocation rev{static_cast<auth::Revocation::Kind>(r.kind), r.user_id,
                                     r.token_id, r.at, r.expires_at};
                tokens->apply(rev);
                if (rev.kind == auth::Revocation::Kind::session)
                    realtime->disconnect(rev.user_id, rev.token_id);
                else if (rev.kind == auth::Revocation::Kind::user)
                    realtime->disconnect_revoked(rev.user_id);
            },
            &s.registry);
        s.tokens->set_publisher([feed = s.revocations.get()](const auth::Revocation& r) {
            feed->publish({static_cast<int>(r.kind), r.user_id, r.token_id, r.at, r.expires_at});
        });
        if (cfg.realtime.single_socket) {
            s.realtime->set_on_single_socket(
                [feed = s.revocations.get()](const std::string& user_id,
                                             const std::string& session_id) {
                    const std::int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                                                 std::chrono::system_clock::now().time_since_epoch())
                                                 .count();
                    // Only the nodes running now care: the row can go after a minute.
                    feed->publish({store::PostgresRevocations::kSocketOpened, user_id, session_id,
                                   now, now + 60});
                });
        }
    }

    s.server = std::make_unique<net::Server>(cfg.socket, s.router, &s.registry);
    s.server->start();
    spdlog::info("API server listening address={} port={} io_threads={}",
                 cfg.socket.address.empty() ? "*" : cfg.socket.address, s.server->port(),
                 s.server->io_thread_count());

    if (cfg.metrics.prometheus_port > 0) {
        s.metrics_router.set_fallback([&reg = s.registry](net::Request&&, net::Responder respond) {
            net::Response r;
            r.content_type = "text/plain; version=0.0.4";
            r.body = reg.render();
            respond(std::move(r));
        });
        net::Options mopts = cfg.socket;
        mopts.port = cfg.metrics.prometheus_port;
        mopts.io_threads = 1;
        mopts.ssl_certificate.clear();
        mopts.ssl_private_key.clear();
        s.metrics_server = std::make_unique<net::Server>(mopts, s.metrics_router, nullptr);
        s.metrics_server->start();
        spdlog::info("Prometheus metrics listening port={}", s.metrics_server->port());
    }
    s.started = true;
}

void App::shutdown() {
    auto& s = *impl_;
    if (s.stopped) return;
    s.stopped = true;
    using namespace std::chrono;
    const auto deadline = steady_clock::now() + seconds(s.cfg.shutdown_grace_sec);
    auto left = [&] { return duration_cast<milliseconds>(std::max(deadline - steady_clock::now(), steady_clock::duration::zero())); };

    spdlog::info("Shutdown started grace_sec={}", s.cfg.shutdown_grace_sec);
    if (s.server) s.server->stop_accepting();
    // No reload from here on; generations being retired finish (shutdown handlers, handoff).
    if (s.runtime) s.runtime->stop_reloader(std::min(left(), milliseconds(s.cfg.runtime.hot_reload_grace_ms)));
    // Sockets close first so that every session_end is queued before the queue drains.
    if (s.realtime) s.realtime->shutdown(left());
    if (s.server) s.server->shutdown(left());
    if (s.pipeline) {
        s.pipeline->drain(left());  // logs and counts what could not be handled in time
        // Workers that were not inside a handler leave at once; the others are stuck in one.
        if (const unsigned stuck = s.pipeline->running_workers(milliseconds(500)); stuck > 0) {
            spdlog::error(
                "Shutdown: {} event worker(s) still inside a plugin event handler after the "
                "grace; the process exits without waiting for them",
                stuck);
            s.left_behind = true;
        }
    }
    if (s.runtime && !s.runtime->run_shutdown_handlers(left())) s.left_behind = true;
    if (s.pool) {
        // Queued work still runs within the grace; a job that has not returned by then (an RPC
        // stuck in plugin code) is left behind, like a stuck event handler.
        if (const std::size_t stuck = s.pool->stop_within(std::max(left(), milliseconds(500)));
            stuck > 0) {
            spdlog::error(
                "Shutdown: {} blocking pool thread(s) still running a request after the grace; "
                "the process exits without waiting for them",
                stuck);
            s.left_behind = true;
        }
    }
    // No request runs any more: what this node revoked last is sent, and the feed stops.
    if (s.revocations) s.revocations->stop();
    if (s.metrics_server) s.metrics_server->shutdown(milliseconds(0));
    spdlog::info("Shutdown complete");
}

bool App::left_threads_behind() const { return impl_->left_behind; }

void App::reload_modules() {
    if (impl_->runtime) impl_->runtime->request_rescan();
}

std::uint16_t App::port() const { return impl_->server ? impl_->server->port() : 0; }
std::uint16_t App::metrics_port() const { return impl_->metrics_server ? impl_->metrics_server->port() : 0; }

}  // namespace nk
