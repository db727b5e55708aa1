#include "security_support.hpp"

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <utility>

namespace nk::test {

Nkhost::Nkhost(std::vector<std::string> extra) {
    port_ = free_port();
    metrics_port_ = free_port();
    while (metrics_port_ == port_) metrics_port_ = free_port();
    std::vector<std::string> args = {"--socket.address",         "127.0.0.1",
                                     "--socket.port",            std::to_string(port_),
                                     "--metrics.prometheus_port", std::to_string(metrics_port_),
                                     "--data_dir",               dir_.path().string()};
    args.insert(args.end(), extra.begin(), extra.end());
    process_ = std::make_unique<ServerProcess>(std::move(args));
    if (!process_->wait_ready(port_)) {
        throw std::runtime_error("nkhost did not become ready:\n" + process_->output());
    }
}

std::unique_ptr<httplib::Client> Nkhost::client() const {
    auto c = std::make_unique<httplib::Client>("127.0.0.1", port_);
    c->set_connection_timeout(20, 0);
    c->set_read_timeout(30, 0);
    c->set_write_timeout(30, 0);
    return c;
}

std::string Nkhost::device_token(const std::string& device_id) const {
    auto c = client();
    c->set_basic_auth("defaultkey", "");
    auto res = c->Post("/v2/account/authenticate/device?create=true",
                       "{\"id\":\"" + device_id + "\"}", "application/json");
    if (!res || res->status != 200) {
        throw std::runtime_error("device authentication failed: " +
                                 (res ? std::to_string(res->status) + " " + res->body : "no answer"));
    }
    const std::string& b = res->body;
    auto at = b.find("\"token\":\"");
    if (at == std::string::npos) throw std::runtime_error("no token in " + b);
    at += 9;
    return b.substr(at, b.find('"', at) - at);
}

std::string Nkhost::metrics_text() const {
    httplib::Client c("127.0.0.1", metrics_port_);
    c.set_read_timeout(20, 0);
    auto res = c.Get("/");
    if (!res || res->status != 200) throw std::runtime_error("metrics port did not answer");
    return res->body;
}

double Nkhost::metric(const std::string& name, const std::vector<std::string>& label_filters) const {
    std::istringstream in(metrics_text());
    std::string line;
    double sum = 0;
    while (std::getline(in, line)) {
        if (line.empty() || line[0] == '#') continue;
        if (line.compare(0, name.size(), name) != 0) continue;
        const char next = line.size() > name.size() ? line[name.size()] : '\0';
        if (next != '{' && next != ' ') continue;
        bool match = true;
        for (const auto& f : label_filters) {
            if (line.find(f) == std::string::npos) match = false;
        }
        if (!match) continue;
        sum += std::strtod(line.c_str() + line.rfind(' ') + 1, nullptr);
    }
    return sum;
}

RawConnection::RawConnection(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error("socket() failed");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd_);
        throw std::runtime_error(std::string("connect() failed: ") + std::strerror(errno));
    }
}

RawConnection::~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
}

bool RawConnection::send(std::string_view bytes) {
    while (!bytes.empty()) {
        ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        bytes.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
}

void RawConnection::shutdown_write() { ::shutdown(fd_, SHUT_WR); }

namespace {

// Reads what is available within `timeout` into `out`; returns false on EOF/error/timeout.
bool read_some(int fd, std::string& out, std::chrono::steady_clock::time_point deadline) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r <= 0) return false;
    char buf[65536];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) return false;
    out.append(buf, static_cast<std::size_t>(n));
    return true;
}

// Length of the first whole response in `raw`, or 0 while incomplete.
std::size_t whole_response(const std::string& raw) {
    auto end = raw.find("\r\n\r\n");
    if (end == std::string::npos) return 0;
    std::size_t length = 0;
    std::string head = raw.substr(0, end);
    for (auto& ch : head) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    auto cl = head.find("\r\ncontent-length:");
    if (cl != std::string::npos) length = std::strtoull(head.c_str() + cl + 17, nullptr, 10);
    return raw.size() >= end + 4 + length ? end + 4 + length : 0;
}

}  // namespace

std::string RawConnection::read_until_close(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string out = std::move(pending_);
    pending_.clear();
    while (read_some(fd_, out, deadline)) {
    }
    return out;
}

std::string RawConnection::read_response(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::string out = std::move(pending_);
    pending_.clear();
    while (whole_response(out) == 0 && read_some(fd_, out, deadline)) {
    }
    if (std::size_t n = whole_response(out); n > 0 && n < out.size()) {
        pending_ = out.substr(n);
        out.resize(n);
    }
    return out;
}

bool RawConnection::closed_by_peer(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
        char buf[65536];
        ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
        if (n <= 0) return true;
        pending_.append(buf, static_cast<std::size_t>(n));
    }
}

int status_of(const std::string& raw) {
    if (raw.compare(0, 5, "HTTP/") != 0) return 0;
    auto sp = raw.find(' ');
    if (sp == std::string::npos) return 0;
    return std::atoi(raw.c_str() + sp + 1);
}

int count_responses(const std::string& raw) {
    int n = 0;
    for (std::size_t at = raw.find("HTTP/1."); at != std::string::npos; at = raw.find("HTTP/1.", at + 1)) {
        if (at == 0 || raw.compare(at - 2, 2, "\r\n") == 0 || raw.compare(at - 1, 1, "}") == 0) ++n;
    }
    return n;
}

namespace ws {

std::string upgrade_request(const std::string& target, const std::string& key,
                            const std::string& version) {
    return "GET " + target +
           " HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           "Sec-WebSocket-Key: " +
           key + "\r\nSec-WebSocket-Version: " + version + "\r\n\r\n";
}

std::string frame(unsigned char first, std::string_view payload, bool masked) {
    std::string out(1, static_cast<char>(first));
    const unsigned char mask_bit = masked ? 0x80 : 0x00;
    const std::uint64_t n = payload.size();
    if (n < 126) {
        out += static_cast<char>(mask_bit | n);
    } else if (n <= 0xffff) {
        out += static_cast<char>(mask_bit | 126);
        out += static_cast<char>(n >> 8);
        out += static_cast<char>(n & 0xff);
    } else {
        out += static_cast<char>(mask_bit | 127);
        for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((n >> shift) & 0xff);
    }
    if (!masked) return out.append(payload);
    const char key[4] = {0x37, 0x5a, 0x11, 0x6c};
    out.append(key, 4);
    out.reserve(out.size() + payload.size());
    for (std::size_t i = 0; i < payload.size(); ++i) out += static_cast<char>(payload[i] ^ key[i % 4]);
    return out;
}

}  // namespace ws

namespace {
constexpr auto kWsSafety = std::chrono::seconds(20);  // safety net only
}  // namespace

WsClient::WsClient(std::uint16_t port, const std::string& token) : conn_(port) {
    REQUIRE(conn_.send(ws::upgrade_request("/ws?format=json&token=" + token)));
    const auto deadline = std::chrono::steady_clock::now() + kWsSafety;
    std::size_t end = std::string::npos;
    while ((end = in_.find("\r\n\r\n")) == std::string::npos && fill(deadline)) {
    }
    REQUIRE_MESSAGE(end != std::string::npos, "no upgrade answer: " << in_);
    REQUIRE_MESSAGE(in_.compare(0, 12, "HTTP/1.1 101") == 0, in_);
    in_.erase(0, end + 4);
}

bool WsClient::send(std::string_view bytes) { return conn_.send(bytes); }

void WsClient::send_text(std::string_view text) { REQUIRE(send(ws::frame(ws::kFin | ws::kText, text))); }

ws::Frame WsClient::next(bool want_pings) {
    const auto deadline = std::chrono::steady_clock::now() + kWsSafety;
    for (;;) {
        if (auto f = parse()) {
            if (!want_pings && (f->opcode == ws::kPing || f->opcode == ws::kPong)) continue;
            return *f;
        }
        if (!fill(deadline)) return {};
    }
}

bool WsClient::answers_ping(const std::string& cid) {
    send_text(R"({"cid":")" + cid + R"(","ping":{}})");
    const ws::Frame f = next();
    return f.opcode == ws::kText && f.payload == R"({"cid":")" + cid + R"(","pong":{}})";
}

std::optional<ws::Close> WsClient::close_frame() {
    for (;;) {
        const ws::Frame f = next();
        if (f.opcode == -1) return std::nullopt;
        if (f.opcode != ws::kClose) continue;
        ws::Close c;
        if (f.payload.size() < 2) {
            c.code = 1005;
        } else {
            c.code = (static_cast<unsigned char>(f.payload[0]) << 8) |
                     static_cast<unsigned char>(f.payload[1]);
            c.reason = f.payload.substr(2);
        }
        (void)send(ws::frame(ws::kFin | ws::kClose, f.payload.substr(0, 2)));
        conn_.shutdown_write();
        return c;
    }
}

bool WsClient::closed_by_server() {
    const auto deadline = std::chrono::steady_clock::now() + kWsSafety;
    while (fill(deadline)) in_.clear();
    return std::chrono::steady_clock::now() < deadline;
}

std::string WsClient::read_until(const std::string& needle) {
    const auto deadline = std::chrono::steady_clock::now() + kWsSafety;
    while (in_.find(needle) == std::string::npos && fill(deadline)) {
    }
    return std::exchange(in_, {});
}

bool WsClient::fill(std::chrono::steady_clock::time_point deadline) {
    return read_some(conn_.fd(), in_, deadline);
}

std::optional<ws::Frame> WsClient::parse() {
    if (in_.size() < 2) return std::nullopt;
    const auto b0 = static_cast<unsigned char>(in_[0]);
    const auto b1 = static_cast<unsigned char>(in_[1]);
    REQUIRE_MESSAGE((b1 & 0x80) == 0, "the server masked a frame");
    std::size_t header = 2;
    std::size_t len = b1 & 0x7F;
    if (len == 126) {
        if (in_.size() < 4) return std::nullopt;
        len = (static_cast<unsigned char>(in_[2]) << 8) | static_cast<unsigned char>(in_[3]);
        header = 4;
    } else if (len == 127) {
        FAIL("unexpectedly large frame");
    }
    if (in_.size() < header + len) return std::nullopt;
    ws::Frame f{b0 & 0x0F, in_.substr(header, len)};
    in_.erase(0, header + len);
    return f;
}

}  // namespace nk::test
