// Realtime load: how much a held socket costs the server, and how fast
// sessions open and close with their start/end events handled.
//
//   bench_realtime [--sockets N] [--hold-sec S] [--ping-sec P] [--cycles M] [--concurrency C]
//                  [--same-user] [--phase-limit-sec L]
//
// The program re-executes itself as the server (--serve: net::Server +
// Realtime + EventPipeline with counting session handlers) so that the
// server's RSS and CPU are read from its own /proc entry, apart from the
// load generator. Both raise RLIMIT_NOFILE to the hard limit.
//
// Every socket belongs to its own user (a token per user, fetched in one
// request); --same-user puts all of them on one user instead.
//
// Phase 1 (hold): open N sockets (C handshakes in flight), each sending an
// app-level ping every P seconds and answering server pings; hold S seconds.
// Reports server RSS per socket (VmRSS after - before), server CPU during
// the hold, and sockets lost (closed by anything but us). Then every held
// socket is closed; reports how long until every close handshake finished
// and the server handled every session_end, and the server CPU meanwhile.
// Phase 2 (churn): M sessions open then close (C at a time); reports
// sessions per second, timed until every session_end was handled.
//
// No wait is unbounded: each phase gives up after L seconds (default 120).
// Every 5 s of a phase, stderr shows the server's CPU so far and how many
// load sockets are connecting / handshaking / open / closing, which tells
// whether the generator or the server is the side that is waiting.
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
    // Newline-separated session tokens of `count` new users.
    router.add(nk::net::Method::get, "/bench/tokens", [&](nk::net::Request&& req, nk::net::Responder r) {
        std::size_t count = std::strtoul(std::string(req.query_param("count").value_or("1")).c_str(), nullptr, 10);
        std::string body;
        for (std::size_t i = 0; i < count; ++i) {
            auto user = nk::auth::random_uuid_v4();
            body += tokens.issue(user, "u" + user.substr(0, 8), {}).token;
            body += '\n';
        }
        r(nk::net::Response::json(200, std::move(body)));
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
    s.expires_after(30s);  // a stuck server shows up as an exception, not a hang
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

// Where each load socket is; the counts show which side a stalled phase waits for.
enum class Stage : std::uint8_t { connecting, handshaking, open, closing, finished };
constexpr std::size_t kStages = 5;

struct Load {
    asio::io_context ioc{1};
    std::uint16_t port = 0;
    std::vector<std::string> tokens;  // one per user; sockets take them round-robin
    std::size_t next_token = 0;
    std::chrono::seconds ping_every{10};
    std::size_t open = 0, failed = 0, lost = 0, closed = 0;
    std::size_t stages[kStages] = {};
    bool holding = true;  // false: close each socket right after its handshake

    const std::string& take_token() { return tokens[next_token++ % tokens.size()]; }
    std::string stage_counts() const {
        char out[160];
        std::snprintf(out, sizeof out, "connecting %zu, handshaking %zu, open %zu, closing %zu, finished %zu",
                      stages[0], stages[1], stages[2], stages[3], stages[4]);
        return out;
    }
};

class LoadSocket : public std::enable_shared_from_this<LoadSocket> {
public:
    LoadSocket(Load& load, std::function<void()> on_done)
        : load_(load), ws_(load.ioc), timer_(load.ioc), on_done_(std::move(on_done)) {
        ++load_.stages[std::size_t(stage_)];
    }

    void start() {
        beast::get_lowest_layer(ws_).async_connect(
            {asio::ip::make_address("127.0.0.1"), load_.port},
            [self = shared_from_this()](beast::error_code ec) {
                if (ec) return self->fail();
                self->enter(Stage::handshaking);
                self->ws_.async_handshake("127.0.0.1", "/ws?token=" + self->load_.take_token(),
                                          [self](beast::error_code ec) { self->on_open(ec); });
            });
    }
    void close() {
        if (stage_ != Stage::open) return;
        enter(Stage::closing);
        timer_.cancel();
        ws_.async_close(websocket::close_code::normal,
                        [self = shared_from_this()](beast::error_code) { self->on_closed(); });
    }

private:
    void enter(Stage s) {
        --load_.stages[std::size_t(stage_)];
        ++load_.stages[std::size_t(s)];
        stage_ = s;
    }
    void fail() {
        ++load_.failed;
        enter(Stage::finished);
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
        ++load_.open;
        enter(Stage::open);
        if (!load_.holding) {
            close();
            return;
        }
        done();
        read();
        schedule_ping();
    }
    void on_closed() {
        ++load_.closed;
        enter(Stage::finished);
        done();
    }
    void read() {
        ws_.async_read(buf_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec) {
                if (self->stage_ == Stage::open) {
                    ++self->load_.lost;
                    self->enter(Stage::finished);
                }
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
            if (ec || self->stage_ != Stage::open) return;
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
    Stage stage_ = Stage::connecting;
    bool started_ = false;
};

steady::time_point g_t0;
pid_t g_server = 0;

// One progress line on stderr: time since start, server CPU so far, what the load side waits for.
void progress(const char* phase, const Load& load, const std::string& extra = {}) {
    std::fprintf(stderr, "  [%6.1f s] %s: server CPU %.2f s; sockets %s%s%s\n",
                 std::chrono::duration<double>(steady::now() - g_t0).count(), phase, cpu_seconds(g_server),
                 load.stage_counts().c_str(), extra.empty() ? "" : "; ", extra.c_str());
}

// Runs the load's io_context until `finished()` or `deadline`, printing progress every 5 s.
template <class Pred>
bool run_until(Load& load, const char* phase, Pred finished, steady::time_point deadline) {
    auto next_report = steady::now() + 5s;
    while (!finished() && steady::now() < deadline) {
        load.ioc.run_one_for(200ms);
        if (steady::now() >= next_report) {
            progress(phase, load);
            next_report += 5s;
        }
    }
    if (finished()) return true;
    progress(phase, load, "GAVE UP at the deadline");
    return false;
}

// Starts `total` sockets with at most `concurrency` opening at a time; runs until all finished
// opening (churn: opening and closing) or the deadline.
std::vector<std::shared_ptr<LoadSocket>> open_sockets(Load& load, const char* phase, std::size_t total,
                                                      std::size_t concurrency, steady::time_point deadline) {
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
    run_until(load, phase, [&] { return finished == total; }, deadline);
    return sockets;
}

// Tokens of `users` distinct users (one request).
std::vector<std::string> fetch_tokens(std::uint16_t port, std::size_t users) {
    std::vector<std::string> tokens;
    std::istringstream lines(http_get(port, "/bench/tokens?count=" + std::to_string(users)));
    for (std::string line; std::getline(lines, line);) {
        if (!line.empty()) tokens.push_back(line);
    }
    return tokens;
}

}  // namespace

int main(int argc, char** argv) {
    std::size_t sockets = 10000, cycles = 5000, concurrency = 200;
    int hold_sec = 30, ping_sec = 10, phase_limit_sec = 120;
    bool same_user = false;
    for (int i = 1; i < argc; ++i) {
        std::string a = argv[i];
        auto next = [&] { return i + 1 < argc ? std::atol(argv[++i]) : 0; };
        if (a == "--serve") return serve();
        if (a == "--sockets") sockets = next();
        else if (a == "--hold-sec") hold_sec = int(next());
        else if (a == "--ping-sec") ping_sec = int(next());
        else if (a == "--cycles") cycles = next();
        else if (a == "--concurrency") concurrency = next();
        else if (a == "--phase-limit-sec") phase_limit_sec = int(next());
        else if (a == "--same-user") same_user = true;
    }
    raise_fd_limit();
    const auto phase_limit = std::chrono::seconds(phase_limit_sec);

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
    g_server = server;
    g_t0 = steady::now();
    Load load;
    load.port = std::uint16_t(std::atoi(line));
    load.ping_every = std::chrono::seconds(ping_sec);
    // One user per socket as in a real game; --same-user puts every socket on one user.
    auto tokens = fetch_tokens(load.port, same_user ? 1 : sockets + cycles);
    std::printf("users: %zu (%s)\n", tokens.size(), same_user ? "every socket on one user" : "one per socket");
    load.tokens.assign(tokens.begin(), tokens.begin() + std::min(tokens.size(), same_user ? 1 : sockets));

    std::this_thread::sleep_for(500ms);
    long rss_before = status_kib(server, "VmRSS:");
    auto t0 = steady::now();
    auto held = open_sockets(load, "hold: opening", sockets, concurrency, steady::now() + phase_limit);
    double open_sec = std::chrono::duration<double>(steady::now() - t0).count();
    std::printf("realtime hold: %zu sockets opened in %.2f s (%zu failed)\n", load.open, open_sec, load.failed);

    double cpu0 = cpu_seconds(server);
    auto hold_end = steady::now() + std::chrono::seconds(hold_sec);
    while (steady::now() < hold_end) load.ioc.run_one_until(hold_end);
    double cpu1 = cpu_seconds(server);
    long rss_after = status_kib(server, "VmRSS:");
    std::size_t n = load.open;
    std::printf("server RSS: %ld KiB idle, %ld KiB with %zu sockets -> %.2f KiB per socket\n", rss_before,
                rss_after, n, n ? double(rss_after - rss_before) / double(n) : 0.0);
    std::printf("server CPU over %d s hold (ping every %d s per socket): %.2f s = %.1f%% of one core\n", hold_sec,
                ping_sec, cpu1 - cpu0, 100.0 * (cpu1 - cpu0) / hold_sec);
    std::printf("sockets lost during hold: %zu\n", load.lost);
    std::fflush(stdout);

    // Close every held socket and wait for each close handshake, then for the server's session_end.
    auto c_close = steady::now();
    double cpu_close0 = cpu_seconds(server);
    for (auto& s : held) s->close();
    std::size_t to_close = load.stages[std::size_t(Stage::closing)];
    run_until(load, "hold: closing", [&] { return load.closed == to_close; }, steady::now() + phase_limit);
    std::string stats;
    for (auto until = steady::now() + phase_limit; steady::now() < until; std::this_thread::sleep_for(10ms)) {
        stats = http_get(load.port, "/bench/stats");
        if (json_field(stats, "ends") >= json_field(stats, "starts")) break;
    }
    std::printf("closing %zu held sockets: %.2f s, server CPU %.2f s; server after closing: %s\n", to_close,
                std::chrono::duration<double>(steady::now() - c_close).count(), cpu_seconds(server) - cpu_close0,
                stats.c_str());
    held.clear();

    // Churn: sessions opened and closed, timed until every session_end was handled.
    long ends_before = json_field(stats, "ends");
    Load churn;
    churn.port = load.port;
    churn.tokens.assign(tokens.begin() + std::min(tokens.size(), same_user ? 0 : sockets), tokens.end());
    churn.holding = false;
    auto c0 = steady::now();
    double cpu_churn0 = cpu_seconds(server);
    open_sockets(churn, "churn", cycles, concurrency, steady::now() + phase_limit);
    long ends = 0;
    auto wait_end = steady::now() + phase_limit;
    while (steady::now() < wait_end) {
        ends = json_field(http_get(load.port, "/bench/stats"), "ends") - ends_before;
        if (ends >= long(churn.open)) break;
        std::this_thread::sleep_for(5ms);
    }
    double churn_sec = std::chrono::duration<double>(steady::now() - c0).count();
    std::printf("churn: %zu sessions opened+closed (%zu failed), %ld session_end handled in %.2f s -> %.0f "
                "sessions/s, server CPU %.2f s\n",
                churn.open, churn.failed, ends, churn_sec, double(churn.open) / churn_sec,
                cpu_seconds(server) - cpu_churn0);

    kill(server, SIGTERM);
    int status = 0;
    waitpid(server, &status, 0);
    return 0;
}
