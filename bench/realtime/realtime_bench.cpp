// Realtime load: how much a held socket costs the server, and how fast
// sessions open and close with their start/end events handled.
//
//   bench_realtime [--sockets N] [--hold-sec S] [--ping-sec P] [--cycles M] [--concurrency C]
//
// The program re-executes itself as the server (--serve: net::Server +
// Realtime + EventPipeline with counting session handlers) so that the
// server's RSS and CPU are read from its own /proc entry, apart from the
// load generator. Both raise RLIMIT_NOFILE to the hard limit.
//
// Phase 1 (hold): open N sockets (C handshakes in flight), each sending an
// app-level ping every P seconds and answering server pings; hold S seconds.
// Reports server RSS per socket (VmRSS after - before), server CPU during
// the hold, and sockets lost (closed by anything but us).
// Phase 2 (churn): M sessions open then close (C at a time); reports
// sessions per second, timed until every session_end was handled.
#include <utility>  // Boost 1.74 asio/awaitable.hpp needs std::exchange (C++20)

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "auth/tokens.hpp"
#include "events/pipeline.hpp"
#include "metrics/registry.hpp"
#include "net/router.hpp"
#include "net/server.hpp"
#include "realtime/realtime.hpp"
#include <spdlog/spdlog.h>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

namespace {

void raise_fd_limit() {
    rlimit rl{};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

long status_kib(pid_t pid, const char* field) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.rfind(field, 0) == 0) return std::strtol(line.c_str() + std::strlen(field), nullptr, 10);
    }
    return -1;
}

double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), {});
    auto close = stat.rfind(')');
    std::istringstream rest(stat.substr(close + 2));
    std::string field;
    unsigned long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && rest >> field; ++i) {
        if (i == 14) utime = std::stoul(field);
        if (i == 15) stime = std::stoul(field);
    }
    return double(utime + stime) / double(sysconf(_SC_CLK_TCK));
}

// ---------------------------------------------------------------- server side

class CountingHandlers final : public nk::events::HandlerSource {
public:
    CountingHandlers() {
        auto set = std::make_shared<nk::events::HandlerSet>();
        set->session_start.push_back([this](const nk::events::Event&) { starts.fetch_add(1); });
        set->session_end.push_back([this](const nk::events::Event&) { ends.fetch_add(1); });
        set_ = set;
    }
    std::shared_ptr<const nk::events::HandlerSet> handlers() const override { return set_; }
    std::atomic<std::uint64_t> starts{0};
    std::atomic<std::uint64_t> ends{0};

private:
    std::shared_ptr<const nk::events::HandlerSet> set_;
};

volatile std::sig_atomic_t g_stop = 0;

int serve() {
    raise_fd_limit();
    std::signal(SIGTERM, [](int) { g_stop = 1; });
    spdlog::set_level(spdlog::level::warn);
    nk::metrics::Registry metrics("nakama", "bench");
    nk::auth::Tokens tokens(nk::auth::Options{});
    CountingHandlers handlers;
    nk::events::EventPipeline pipeline(nk::events::Options{}, handlers, &metrics);
    pipeline.start();
    nk::realtime::Realtime realtime(nk::realtime::Options{}, tokens, &pipeline, &metrics);
    nk::net::Router router;
    realtime.attach(router);
    router.add(nk::net::Method::get, "/bench/stats", [&](nk::net::Request&&, nk::net::Responder r) {
        r(nk::net::Response::json(200, "{\"starts\":" + std::to_string(handlers.starts.load()) +
                                           ",\"ends\":" + std::to_string(handlers.ends.load()) +
                                           ",\"open\":" + std::to_string(realtime.sessions().size()) + "}"));
    });
    router.add(nk::net::Method::get, "/bench/token", [&](nk::net::Request&& req, nk::net::Responder r) {
        auto user = nk::auth::random_uuid_v4();
        (void)req;
        r(nk::net::Response::json(200, tokens.issue(user, "u" + user.substr(0, 8), {}).token));
    });
    nk::net::Options net_options;
    net_options.address = "127.0.0.1";
    net_options.port = 0;
    net_options.io_threads = 1;
    nk::net::Server server(net_options, router, &metrics);
    server.start();
    std::printf("%u\n", server.port());
    std::fflush(stdout);
    while (!g_stop) std::this_thread::sleep_for(50ms);
    realtime.shutdown(2s);
    pipeline.drain(5s);
    server.shutdown(1s);
    return 0;
}

// ---------------------------------------------------------------- load side

std::string http_get(std::uint16_t port, const std::string& target) {
    asio::io_context ioc;
    beast::tcp_stream s(ioc);
    s.connect({asio::ip::make_address("127.0.0.1"), port});
    beast::http::request<beast::http::empty_body> req(beast::http::verb::get, target, 11);
    req.set(beast::http::field::host, "127.0.0.1");
    beast::http::write(s, req);
    beast::flat_buffer buf;
    beast::http::response<beast::http::string_body> res;
    beast::http::read(s, buf, res);
    return res.body();
}

long json_field(const std::string& json, const std::string& key) {
    auto at = json.find("\"" + key + "\":");
    return at == std::string::npos ? -1 : std::strtol(json.c_str() + at + key.size() + 3, nullptr, 10);
}

struct Load {
    asio::io_context ioc{1};
    std::uint16_t port = 0;
    std::string token;
    std::chrono::seconds ping_every{10};
    std::atomic<std::size_t> open{0}, failed{0}, lost{0}, closed{0};
    bool holding = true;  // false: close each socket right after its handshake
};

class LoadSocket : public std::enable_shared_from_this<LoadSocket> {
public:
    LoadSocket(Load& load, std::function<void()> on_done)
        : load_(load), ws_(load.ioc), timer_(load.ioc), on_done_(std::move(on_done)) {}

    void start() {
        beast::get_lowest_layer(ws_).async_connect(
            {asio::ip::make_address("127.0.0.1"), load_.port},
            [self = shared_from_this()](beast::error_code ec) {
                if (ec) return self->fail();
                self->ws_.async_handshake("127.0.0.1", "/ws?token=" + self->load_.token,
                                          [self](beast::error_code ec) { self->on_open(ec); });
            });
    }
    void close() {
        closing_ = true;
        timer_.cancel();
        ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {});
    }

private:
    void fail() {
        load_.failed.fetch_add(1);
        done();
    }
    // Reports this socket finished opening (or closing, in churn); at most once.
    void done() {
        if (!on_done_) return;
        auto fn = std::move(on_done_);
        on_done_ = nullptr;
        fn();
    }
    void on_open(beast::error_code ec) {
        if (ec) return fail();
        load_.open.fetch_add(1);
        if (!load_.holding) {
            closing_ = true;
            ws_.async_close(websocket::close_code::normal, [self = shared_from_this()](beast::error_code) {
                self->load_.closed.fetch_add(1);
                self->done();
            });
            return;
        }
        done();
        read();
        schedule_ping();
    }
    void read() {
        ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) {
                if (!self->closing_) self->load_.lost.fetch_add(1);
                self->timer_.cancel();
                return;
            }
            self->buf_.consume(self->buf_.size());
            self->read();
        });
    }
    void schedule_ping() {
        // Spread the first pings over the period so the server sees a steady rate.
        auto first = std::chrono::milliseconds(std::rand() % (load_.ping_every.count() * 1000 + 1));
        timer_.expires_after(started_ ? std::chrono::milliseconds(load_.ping_every) : first);
        started_ = true;
        timer_.async_wait([self = shared_from_this()](beast::error_code ec) {
            if (ec || self->closing_) return;
            self->ws_.text(true);
            self->ws_.async_write(asio::buffer(kPing), [self](beast::error_code ec, std::size_t) {
                if (!ec) self->schedule_ping();
            });
        });
    }

    static constexpr std::string_view kPing = R"({"cid":"1","ping":{}})";
    Load& load_;
    websocket::stream<beast::tcp_stream> ws_;
    asio::steady_timer timer_;
    beast::flat_buffer buf_;
    std::function<void()> on_done_;
    bool closing_ = false;
    bool started_ = false;
};

// Starts `total` sockets with at most `concurrency` handshakes in flight; runs until all finished opening.
std::vector<std::shared_ptr<LoadSocket>> open_sockets(Load& load, std::size_t total, std::size_t concurrency) {
    std::vector<std::shared_ptr<LoadSocket>> sockets;
    std::size_t started = 0, finished = 0;
    std::function<void()> launch = [&] {
        while (started < total && started - finished < concurrency) {
            ++started;
            auto s = std::make_shared<LoadSocket>(load, [&] {
                ++finished;
                launch();
            });
            if (load.holding) sockets.push_back(s);
            s->start();
        }
    };
    launch();
    while (finished < total) load.ioc.run_one();
    return sockets;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t sockets = 10000, cycles = 5000, concurrency = 200;
    int hold_sec = 30, ping_sec = 10;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::atol(argv[++i]) : 0; };
        if (a == "--serve") return serve();
        if (a == "--sockets") sockets = next();
        else if (a == "--hold-sec") hold_sec = int(next());
        else if (a == "--ping-sec") ping_sec = int(next());
        else if (a == "--cycles") cycles = next();
        else if (a == "--concurrency") concurrency = next();
    }
    raise_fd_limit();

    int out[2];
    if (pipe(out) != 0) return 1;
    pid_t server = fork();
    if (server == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl("/proc/self/exe", argv[0], "--serve", nullptr);
        _exit(127);
    }
    close(out[1]);
    char line[32] = {};
    if (read(out[0], line, sizeof line - 1) <= 0) return 1;
    Load load;
    load.port = std::uint16_t(std::atoi(line));
    load.ping_every = std::chrono::seconds(ping_sec);
    load.token = http_get(load.port, "/bench/token");

    std::this_thread::sleep_for(500ms);
    long rss_before = status_kib(server, "VmRSS:");
    auto t0 = steady::now();
    auto held = open_sockets(load, sockets, concurrency);
    double open_sec = std::chrono::duration<double>(steady::now() - t0).count();
    std::printf("realtime hold: %zu sockets opened in %.2f s (%zu failed)\n", load.open.load(), open_sec,
                load.failed.load());

    double cpu0 = cpu_seconds(server);
    auto hold_end = steady::now() + std::chrono::seconds(hold_sec);
    while (steady::now() < hold_end) load.ioc.run_one_until(hold_end);
    double cpu1 = cpu_seconds(server);
    long rss_after = status_kib(server, "VmRSS:");
    std::size_t n = load.open.load();
    std::printf("server RSS: %ld KiB idle, %ld KiB with %zu sockets -> %.2f KiB per socket\n", rss_before,
                rss_after, n, n ? double(rss_after - rss_before) / double(n) : 0.0);
    std::printf("server CPU over %d s hold (ping every %d s per socket): %.2f s = %.1f%% of one core\n", hold_sec,
                ping_sec, cpu1 - cpu0, 100.0 * (cpu1 - cpu0) / hold_sec);
    std::printf("sockets lost during hold: %zu\n", load.lost.load());

    for (auto& s : held) s->close();
    held.clear();
    auto drain_end = steady::now() + 10s;
    while (steady::now() < drain_end && load.ioc.run_one_for(200ms)) {
    }
    // Wait until the server handled the end of every held session.
    std::string stats;
    for (auto until = steady::now() + 30s; steady::now() < until; std::this_thread::sleep_for(10ms)) {
        stats = http_get(load.port, "/bench/stats");
        if (json_field(stats, "ends") >= json_field(stats, "starts")) break;
    }
    std::printf("after closing: %s\n", stats.c_str());

    // Churn: sessions opened and closed, timed until every session_end was handled.
    long ends_before = json_field(stats, "ends");
    Load churn;
    churn.port = load.port;
    churn.token = load.token;
    churn.holding = false;
    auto c0 = steady::now();
    open_sockets(churn, cycles, concurrency);
    long ends = 0;
    auto wait_end = steady::now() + 30s;
    while (steady::now() < wait_end) {
        ends = json_field(http_get(load.port, "/bench/stats"), "ends") - ends_before;
        if (ends >= long(churn.open.load())) break;
        std::this_thread::sleep_for(5ms);
    }
    double churn_sec = std::chrono::duration<double>(steady::now() - c0).count();
    std::printf("churn: %zu sessions opened+closed (%zu failed), %ld session_end handled in %.2f s -> %.0f sessions/s\n",
                churn.open.load(), churn.failed.load(), ends, churn_sec, double(churn.open.load()) / churn_sec);

    kill(server, SIGTERM);
    int status = 0;
    waitpid(server, &status, 0);
    return 0;
}
