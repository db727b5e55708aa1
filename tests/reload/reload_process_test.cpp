// Hot reload in the real server process, under load: events from several HTTP clients at a
// steady rate, an RPC called in a loop and a realtime socket held open, while the plugin file
// is replaced 20 times in the ways editors, linkers and copy tools do it (3 of them broken).
// Also: SIGHUP re-scans runtime.path when the watcher is off.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <fstream>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "security_support.hpp"
#include "support/file_replace.hpp"
#include "support/wait.hpp"

using namespace nk::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

fs::path fixture_file(const std::string& dir, const std::string& file) {
    return build_dir() / "fixtures" / dir / file;
}

// GNU ld: unlink the output, create it empty, write everything at the end, close.
void delete_and_recreate(const fs::path& path, const std::string& content) {
    fs::remove(path);
    const int fd = ::open(path.c_str(), O_CREAT | O_WRONLY | O_TRUNC, 0755);
    REQUIRE(fd >= 0);
    std::this_thread::sleep_for(150ms);  // a slow link: longer than the debounce window
    REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
    ::close(fd);
}

void several_writes(const fs::path& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    const std::size_t step = content.size() / 5 + 1;
    for (std::size_t at = 0; at < content.size(); at += step) {
        out.write(content.data() + at,
                  static_cast<std::streamsize>(std::min(step, content.size() - at)));
        out.flush();
        std::this_thread::sleep_for(20ms);
    }
}

// The counter fixture's reply fields.
std::string field(const std::string& reply, const std::string& key) {
    std::smatch m;
    if (std::regex_search(reply, m, std::regex("\"" + key + "\":\"?([a-z0-9]+)")))
        return m[1];
    return "";
}

// A realtime socket that sends a ping envelope and waits for its pong, on demand.
class Socket {
  public:
    Socket(std::uint16_t port, const std::string& token) : ws_(io_) {
        namespace asio = boost::asio;
        asio::ip::tcp::resolver resolver(io_);
        asio::connect(ws_.next_layer(), resolver.resolve("127.0.0.1", std::to_string(port)));
        timeval tv{10, 0};
        ::setsockopt(ws_.next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ws_.handshake("127.0.0.1", "/ws?format=json&token=" + token);
    }
    // True when the server answered the ping envelope.
    bool ping() {
        try {
            const std::string cid = std::to_string(++cid_);
            ws_.write(boost::asio::buffer("{\"cid\":\"" + cid + "\",\"ping\":{}}"));
            for (;;) {
                boost::beast::flat_buffer buf;
                ws_.read(buf);
                const std::string text = boost::beast::buffers_to_string(buf.data());
                if (text.find("\"cid\":\"" + cid + "\"") != std::string::npos)
                    return text.find("pong") != std::string::npos;
            }
        } catch (const std::exception&) {
            return false;
        }
    }

  private:
    boost::asio::io_context io_;
    boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
    int cid_ = 0;
};

std::string rpc_counter(httplib::Client& c) {
    auto res = c.Get("/v2/rpc/counter?http_key=defaulthttpkey&unwrap");
    if (!res)
        return "no answer";
    return res->status == 200 ? res->body : std::to_string(res->status) + " " + res->body;
}

}  // namespace

TEST_CASE("20 replacements under load: nothing fails, nothing is lost, broken ones never serve") {
    TempDir modules;
    const fs::path file = modules.path() / "reload_counter.so";
    const std::string a = read_file(fixture_file("reload_counter_a", "reload_counter.so"));
    const std::string b = read_file(fixture_file("reload_counter_b", "reload_counter.so"));
    const std::string abi_major = read_file(fixture_file("abi_major", "abi_major.so"));
    const std::string init_error = read_file(fixture_file("init_error", "init_error.so"));
    write_file(file, a);
    Nkhost host({"--runtime.path", modules.path().string(), "--runtime.hot_reload", "true",
                 "--runtime.hot_reload_debounce_ms", "100", "--runtime.event_queue_workers",
                 "4", "--logger.level", "info"});

    // Load: 3 event producers, one RPC caller, one realtime socket.
    std::atomic<bool> stop{false};
    std::atomic<long> events_ok{0}, events_failed{0}, rpc_ok{0}, rpc_failed{0};
    std::vector<std::thread> load;
    struct JoinAll {  // also when a REQUIRE below fails: never leave a joinable thread behind
        std::atomic<bool>& stop;
        std::vector<std::thread>& threads;
        ~JoinAll() {
            stop = true;
            for (auto& t : threads)
                if (t.joinable())
                    t.join();
        }
    } join_all{stop, load};
    for (int p = 0; p < 3; ++p) {
        load.emplace_back([&, token = host.device_token("reload-producer-" + std::to_string(p))] {
            auto c = host.client();
            c->set_bearer_token_auth(token);
            while (!stop.load()) {
                auto res = c->Post("/v2/event", R"({"name":"count","properties":{"k":"v"}})",
                                   "application/json");
                (res && res->status == 200 ? events_ok : events_failed).fetch_add(1);
                std::this_thread::sleep_for(2ms);
            }
        });
    }
    std::mutex seen_mutex;
    std::set<std::string> variants_seen;
    load.emplace_back([&] {
        auto c = host.client();
        while (!stop.load()) {
            const std::string reply = rpc_counter(*c);
            const std::string v = field(reply, "variant");
            if (v.empty()) {
                rpc_failed.fetch_add(1);
                MESSAGE("RPC failed: " << reply);
            } else {
                rpc_ok.fetch_add(1);
                std::lock_guard lock(seen_mutex);
                variants_seen.insert(v);
            }
            std::this_thread::sleep_for(3ms);
        }
    });
    Socket socket(host.port(), host.device_token("reload-socket"));
    REQUIRE(socket.ping());

    const std::string loaded_metric = "nkhost_module_reloads";
    auto loaded = [&] { return host.metric(loaded_metric, {"result=\"loaded\""}); };
    auto refused = [&] { return host.metric(loaded_metric, {"result=\"refused\""}); };
    auto serving = [&] {
        auto c = host.client();
        return field(rpc_counter(*c), "variant");
    };

    // The 20 replacements: ways of writing cycle; versions alternate; 3 broken ones.
    struct Step {
        const char* what;
        bool broken;
    };
    const std::vector<Step> steps = {
        {"rename", false},       {"in place", false},   {"recreate", false},
        {"writes", false},       {"abi major", true},   {"rename", false},
        {"in place", false},     {"recreate", false},   {"init error", true},
        {"writes", false},       {"rename", false},     {"in place", false},
        {"truncated", true},     {"recreate", false},   {"writes", false},
        {"rename", false},       {"in place", false},   {"recreate", false},
        {"writes", false},       {"rename", false},
    };
    REQUIRE(steps.size() == 20);
    std::string current = "a";
    int good = 0;
    for (const auto& step : steps) {
        const double loaded_before = loaded(), refused_before = refused();
        if (step.broken) {
            if (std::string(step.what) == "abi major")
                rename_over(file, abi_major);
            else if (std::string(step.what) == "init error")
                write_in_place(file, init_error);
            else
                rename_over(file, b.substr(0, b.size() / 2));
            INFO("broken step: " << std::string(step.what));
            REQUIRE(wait_until([&] { return refused() == refused_before + 1; }));
            CHECK(serving() == current);
            CHECK(loaded() == loaded_before);
            continue;
        }
        const std::string next = current == "a" ? "b" : "a";
        const std::string& content = next == "a" ? a : b;
        const std::string how = step.what;
        if (how == "rename")
            rename_over(file, content);
        else if (how == "in place")
            write_in_place(file, content);
        else if (how == "recreate")
            delete_and_recreate(file, content);
        else
            several_writes(file, content);
        INFO("step: " << how << " to " << next);
        REQUIRE(wait_until([&] { return serving() == next; }));
        CHECK(loaded() == loaded_before + 1);
        current = next;
        ++good;
        CHECK(socket.ping());
    }
    CHECK(good == 17);

    stop = true;
    for (auto& t : load)
        t.join();
    load.clear();
    // Every acknowledged event handled, and every retired generation's count handed over.
    REQUIRE(wait_until([&] {
        return host.metric("nkhost_events_processed", {"kind=\"custom\""}) ==
                   host.metric("nkhost_events_received", {"kind=\"custom\""}) &&
               host.metric("nkhost_module_generations_retiring") == 0;
    }));
    auto c = host.client();
    const std::string final_reply = rpc_counter(*c);
    INFO(final_reply);
    CHECK(field(final_reply, "variant") == current);
    CHECK(std::stol(field(final_reply, "total")) == events_ok.load());
    // One history entry per retired generation: the initial one and 16 replaced since.
    std::size_t generations = 0;
    for (auto at = final_reply.find("\"count\":"); at != std::string::npos;
         at = final_reply.find("\"count\":", at + 1))
        ++generations;
    CHECK(generations == 17);

    CHECK(events_ok.load() > 0);
    CHECK(events_failed.load() == 0);
    CHECK(rpc_ok.load() > 0);
    CHECK(rpc_failed.load() == 0);
    CHECK(host.metric("nkhost_events_dropped") == 0);
    CHECK(socket.ping());
    {
        std::lock_guard lock(seen_mutex);
        CHECK(variants_seen == std::set<std::string>{"a", "b"});  // broken builds never served
    }
    CHECK(host.metric(loaded_metric, {"result=\"unloaded\""}) == 0);
    CHECK(host.metric("nkhost_module_handoffs", {"result=\"taken\""}) == 17);

    // The log says what happened to each of the 20.
    const std::string log = host.output();
    auto count = [&](const std::regex& re) {
        return std::distance(std::sregex_iterator(log.begin(), log.end(), re),
                             std::sregex_iterator());
    };
    CHECK(count(std::regex("Module reload_counter: generation \\d+ loaded from")) == 17);
    CHECK(count(std::regex("Module reload_counter: reload of .* refused, generation \\d+ keeps "
                           "serving")) == 3);
    CHECK(count(std::regex("Module reload_counter: generation \\d+ retired")) == 17);
    CHECK(log.find("ABI version mismatch") != std::string::npos);
    CHECK(log.find("InitModule returned error code") != std::string::npos);
    CHECK(log.find("truncated ELF file") != std::string::npos);
}

TEST_CASE("SIGHUP re-scans runtime.path when the watcher is off; the server keeps running") {
    TempDir modules;
    const fs::path file = modules.path() / "reload_counter.so";
    write_file(file, read_file(fixture_file("reload_counter_a", "reload_counter.so")));
    Nkhost host({"--runtime.path", modules.path().string(), "--logger.level", "info"});
    auto c = host.client();
    REQUIRE(field(rpc_counter(*c), "variant") == "a");

    rename_over(file, read_file(fixture_file("reload_counter_b", "reload_counter.so")));
    std::this_thread::sleep_for(1s);  // five default debounce windows: a watcher would have acted
    CHECK(field(rpc_counter(*c), "variant") == "a");

    auto route = [&] {
        auto res = c->Get("/plugins/reload_counter");
        return res ? res->body : std::string("no answer");
    };
    CHECK(route() == "a");
    REQUIRE(::kill(host.process().pid(), SIGHUP) == 0);
    CHECK(wait_until([&] { return field(rpc_counter(*c), "variant") == "b"; }));
    CHECK(route() == "b");  // plugin HTTP routes move to the new generation with the rest
    CHECK(host.process().running());
    CHECK(host.output().find("Received SIGHUP") != std::string::npos);
}
