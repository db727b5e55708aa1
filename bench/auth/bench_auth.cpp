// bench_auth: throughput of the session endpoints over real HTTP on loopback.
//
// Starts a server (net::Server + account routes, SQLite file in a temp dir)
// and drives it with keep-alive httplib clients, one per thread. Reports
// requests/s for:
//   healthcheck      GET /healthcheck, the baseline (no auth, no pool hop)
//   device (new)     authenticate device, account creation (write transaction)
//   device (found)   authenticate device, existing account (read + JWT)
//   refresh          session refresh (JWT verify + user lookup + 2 signatures)
//   account          GET /v2/account (bearer check + read)
//   email (found)    authenticate email, existing account: one bcrypt verify
// each also as a ratio to the baseline measured in the same run.
//
// Usage: bench_auth [--seconds S] [--threads N] [--bcrypt-cost C]
#include <httplib.h>
#include <rapidjson/document.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "api/account.hpp"
#include "api/health.hpp"
#include "api/services.hpp"
#include "auth/base64.hpp"
#include "auth/tokens.hpp"
#include "core/blocking_pool.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "store/store.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Result {
    double per_second = 0;
    std::uint64_t errors = 0;
};

// Runs `request(client, thread, i)` on `threads` threads for `seconds`; it returns true on success.
Result measure(std::uint16_t port, int threads, double seconds,
               const std::function<bool(httplib::Client&, int, std::uint64_t)>& request) {
    std::atomic<std::uint64_t> ok{0}, failed{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> pool;
    const auto start = Clock::now();
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
            httplib::Client c("127.0.0.1", port);
            c.set_keep_alive(true);
            c.set_tcp_nodelay(
                true);  // else Nagle + delayed ACK caps POSTs (headers and body are two writes)
            c.set_read_timeout(30, 0);
            for (std::uint64_t i = 0; !stop.load(std::memory_order_relaxed); ++i) {
                (request(c, t, i) ? ok : failed).fetch_add(1, std::memory_order_relaxed);
            }
        });
    }
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
    stop = true;
    for (auto& th : pool)
        th.join();
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    return {static_cast<double>(ok.load()) / elapsed, failed.load()};
}

std::string token_of(const std::string& body, const char* field) {
    rapidjson::Document d;
    d.Parse(body.c_str());
    if (d.HasParseError() || !d.IsObject() || !d.HasMember(field))
        return {};
    return d[field].GetString();
}

}  // namespace

int main(int argc, char** argv) {
    double seconds = 3;
    int threads = 4;
    int cost = 10;
    std::string database;  // "" = a SQLite file in a temp dir
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--seconds")
            seconds = std::atof(argv[i + 1]);
        else if (a == "--threads")
            threads = std::atoi(argv[i + 1]);
        else if (a == "--bcrypt-cost")
            cost = std::atoi(argv[i + 1]);
        else if (a == "--database")
            database = argv[i + 1];
    }

    const auto dir = std::filesystem::temp_directory_path() /
                     ("nkhost-bench-auth-" + std::to_string(std::random_device{}()));
    std::filesystem::create_directories(dir);
    {
        nk::auth::Tokens tokens{nk::auth::Options{}};
        nk::store::Options so;
        so.address = database.empty() ? (dir / "bench.db").string() : database;
        so.bcrypt_cost = cost;
        if (nk::store::is_server_address(so.address))
            nk::store::migrate_up(so);
        const auto owned = nk::store::open_store(so);
        nk::store::Store& store = *owned;
        nk::BlockingPool pool(std::max(4u, 2 * std::thread::hardware_concurrency()));
        nk::api::Services services;
        services.tokens = &tokens;
        services.accounts = &store;
        services.pool = &pool;
        nk::net::Router router;
        nk::api::register_account_routes(router, services);
        nk::api::register_health_routes(router);
        nk::net::Options no;
        no.address = "127.0.0.1";
        no.port = 0;
        nk::net::Server server(no, router);
        server.start();
        const auto port = server.port();

        const httplib::Headers basic = {
            {"Authorization", "Basic " + nk::auth::base64_encode("defaultkey:")}};
        const char* json = "application/json";

        // Fixtures: one device and one email account per thread.
        std::vector<std::string> refresh_tokens(threads), session_tokens(threads);
        {
            httplib::Client c("127.0.0.1", port);
            for (int t = 0; t < threads; ++t) {
                auto r = c.Post("/v2/account/authenticate/device", basic,
                                "{\"id\":\"bench-fixed-device-" + std::to_string(t) + "\"}", json);
                auto e = c.Post("/v2/account/authenticate/email", basic,
                                "{\"email\":\"bench" + std::to_string(t) +
                                    "@example.com\",\"password\":\"benchpassword\"}",
                                json);
                if (!r || r->status != 200 || !e || e->status != 200) {
                    std::fprintf(stderr, "fixture setup failed\n");
                    return 1;
                }
                refresh_tokens[t] = token_of(r->body, "refresh_token");
                session_tokens[t] = token_of(r->body, "token");
            }
        }

        std::printf(
            "bench_auth: %s store, %d client threads, %.1f s per case, %zu io threads, bcrypt cost "
            "%d\n",
            std::string(store.engine()).c_str(), threads, seconds, server.io_thread_count(), cost);
        std::printf("%-18s %12s %10s %8s\n", "case", "req/s", "x baseline", "errors");
        const Result base =
            measure(port, threads, seconds, [](httplib::Client& c, int, std::uint64_t) {
                auto r = c.Get("/healthcheck");
                return r && r->status == 200;
            });
        auto report = [&](const char* name, const Result& r) {
            std::printf("%-18s %12.0f %10.3f %8llu\n", name, r.per_second,
                        base.per_second > 0 ? r.per_second / base.per_second : 0.0,
                        static_cast<unsigned long long>(r.errors));
        };
        report("healthcheck", base);
        report("device (new)",
               measure(port, threads, seconds, [&](httplib::Client& c, int t, std::uint64_t i) {
                   auto r = c.Post(
                       "/v2/account/authenticate/device", basic,
                       "{\"id\":\"bench-new-" + std::to_string(t) + "-" + std::to_string(i) + "\"}",
                       json);
                   return r && r->status == 200;
               }));
        report("device (found)",
               measure(port, threads, seconds, [&](httplib::Client& c, int t, std::uint64_t) {
                   auto r =
                       c.Post("/v2/account/authenticate/device", basic,
                              "{\"id\":\"bench-fixed-device-" + std::to_string(t) + "\"}", json);
                   return r && r->status == 200;
               }));
        report("refresh",
               measure(port, threads, seconds, [&](httplib::Client& c, int t, std::uint64_t) {
                   auto r = c.Post("/v2/account/session/refresh", basic,
                                   "{\"token\":\"" + refresh_tokens[t] + "\"}", json);
                   return r && r->status == 200;
               }));
        report(
            "account",
            measure(port, threads, seconds, [&](httplib::Client& c, int t, std::uint64_t) {
                auto r = c.Get("/v2/account", {{"Authorization", "Bearer " + session_tokens[t]}});
                return r && r->status == 200;
            }));
        report("account update",
               measure(port, threads, seconds, [&](httplib::Client& c, int t, std::uint64_t i) {
                   auto r = c.Put("/v2/account",
                                  {{"Authorization", "Bearer " + session_tokens[t]}},
                                  "{\"display_name\":\"bench " + std::to_string(i) + "\"}", json);
                   return r && r->status == 200;
               }));
        report("email (found)",
               measure(port, threads, seconds, [&](httplib::Client& c, int t, std::uint64_t) {
                   auto r = c.Post("/v2/account/authenticate/email", basic,
                                   "{\"email\":\"bench" + std::to_string(t) +
                                       "@example.com\",\"password\":"
                                       "\"benchpassword\"}",
                                   json);
                   return r && r->status == 200;
               }));
        pool.stop();
        server.shutdown(std::chrono::milliseconds(2000));
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    return 0;
}
