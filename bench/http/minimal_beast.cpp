// Baseline for the HTTP layer: the smallest reasonable Beast server.
// Answers 200 "{}" (application/json) to every request, HTTP/1.1 keep-alive.
//
// usage: bench_http_minimal_beast <port> <threads> [shared|pinned]
//   shared: one io_context run by all threads, a strand per connection
//           (the layout of Beast's own async server example)
//   pinned: one io_context per thread, each connection stays on one thread
//           (the layout nk_net uses)
#include <utility>  // Boost 1.74 asio/awaitable.hpp needs std::exchange (C++20)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class Session : public std::enable_shared_from_this<Session> {
public:
    explicit Session(tcp::socket&& socket) : stream_(std::move(socket)) {}
    void read() {
        req_ = {};
        http::async_read(stream_, buffer_, req_,
                         [self = shared_from_this()](beast::error_code ec, std::size_t) {
                             if (ec) return;
                             self->write();
                         });
    }

private:
    void write() {
        res_ = {};
        res_.result(http::status::ok);
        res_.version(req_.version());
        res_.set(http::field::content_type, "application/json");
        res_.keep_alive(req_.keep_alive());
        res_.body() = "{}";
        res_.prepare_payload();
        http::async_write(stream_, res_, [self = shared_from_this()](beast::error_code ec, std::size_t) {
            if (ec || !self->res_.keep_alive()) return;
            self->read();
        });
    }

    beast::tcp_stream stream_;
    beast::flat_buffer buffer_;
    http::request<http::string_body> req_;
    http::response<http::string_body> res_;
};

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s <port> <threads> [shared|pinned]\n", argv[0]);
        return 2;
    }
    auto port = static_cast<unsigned short>(std::stoi(argv[1]));
    int threads = std::max(1, std::stoi(argv[2]));
    bool pinned = argc > 3 && std::string(argv[3]) == "pinned";

    int contexts_n = pinned ? threads : 1;
    std::vector<std::unique_ptr<asio::io_context>> contexts;
    for (int i = 0; i < contexts_n; ++i) {
        contexts.push_back(std::make_unique<asio::io_context>(pinned ? 1 : threads));
    }
    tcp::acceptor acceptor(*contexts[0], {asio::ip::make_address("127.0.0.1"), port});
    std::size_t next = 0;
    std::function<void()> accept = [&] {
        asio::io_context& target = *contexts[next++ % contexts.size()];
        auto on_accept = [&](beast::error_code ec, tcp::socket socket) {
            if (!ec) {
                socket.set_option(tcp::no_delay(true));
                std::make_shared<Session>(std::move(socket))->read();
            }
            accept();
        };
        if (pinned) {
            acceptor.async_accept(target, on_accept);
        } else {
            acceptor.async_accept(asio::make_strand(target), on_accept);
        }
    };
    accept();
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
        asio::io_context& ctx = *contexts[pinned ? i : 0];
        pool.emplace_back([&ctx] { ctx.run(); });
    }
    for (auto& t : pool) t.join();
}
