// Support for the security suites: a real nkhost process on a free loopback port, raw sockets
// that send exactly the bytes given, a raw WebSocket client, and small helpers for tokens and
// metrics.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "support/process.hpp"

namespace nk::test {

// nkhost with its own data_dir, API port and Prometheus port on 127.0.0.1. `extra` are more
// command-line options ("--key", "value", ...). The constructor waits until /healthcheck answers.
class Nkhost {
public:
    explicit Nkhost(std::vector<std::string> extra = {});
    std::uint16_t port() const { return port_; }
    std::uint16_t metrics_port() const { return metrics_port_; }
    const TempDir& dir() const { return dir_; }
    ServerProcess& process() { return *process_; }
    std::string output() const { return process_->output(); }

    // A fresh client on the API port (generous timeouts).
    std::unique_ptr<httplib::Client> client() const;
    // Authenticates a device (created when new) with the default server key; the session token.
    std::string device_token(const std::string& device_id) const;
    // The Prometheus text of the metrics port.
    std::string metrics_text() const;
    // The sum of every sample of `name` (prefix included, e.g. "nakama_http_requests") whose
    // labels contain each of `label_filters` (e.g. {"status=\"101\""}); 0 when there is none.
    double metric(const std::string& name, const std::vector<std::string>& label_filters = {}) const;

private:
    TempDir dir_;
    std::uint16_t port_ = 0;
    std::uint16_t metrics_port_ = 0;
    std::unique_ptr<ServerProcess> process_;
};

// A blocking TCP connection to 127.0.0.1:port that sends bytes as given.
class RawConnection {
public:
    explicit RawConnection(std::uint16_t port);
    ~RawConnection();
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;

    // Sends all of `bytes`; false when the peer closed or reset the connection meanwhile.
    bool send(std::string_view bytes);
    // Reads until the peer closes the connection or `timeout` passes; what arrived.
    std::string read_until_close(std::chrono::milliseconds timeout = std::chrono::seconds(20));
    // Reads until `bytes` contains one whole HTTP response (headers and Content-Length body) or
    // the peer closes or `timeout` passes; returns what arrived (possibly more than one response).
    std::string read_response(std::chrono::milliseconds timeout = std::chrono::seconds(20));
    // True when the peer has closed the connection (EOF or reset) within `timeout`.
    bool closed_by_peer(std::chrono::milliseconds timeout = std::chrono::seconds(20));
    void shutdown_write();
    int fd() const { return fd_; }

private:
    int fd_ = -1;
    std::string pending_;
};

// The status code of the first response in `raw` ("HTTP/1.1 400 Bad Request..."), or 0.
int status_of(const std::string& raw);
// How many HTTP responses start in `raw`.
int count_responses(const std::string& raw);

// WebSocket (RFC 6455) as a client writes it, byte for byte.
namespace ws {

// Frame bits and opcodes.
constexpr unsigned char kFin = 0x80, kRsv1 = 0x40;
constexpr unsigned char kContinuation = 0x0, kText = 0x1, kBinary = 0x2, kClose = 0x8,
                        kPing = 0x9, kPong = 0xA;
// RFC 6455's sample Sec-WebSocket-Key.
inline constexpr const char* kKey = "dGhlIHNhbXBsZSBub25jZQ==";

// GET `target` ("/ws?token=...") asking for an upgrade with `key` and `version` as given.
std::string upgrade_request(const std::string& target, const std::string& key = kKey,
                            const std::string& version = "13");
// One frame: `first` is FIN/RSV/opcode; masked unless told otherwise.
std::string frame(unsigned char first, std::string_view payload, bool masked = true);

struct Frame {
    int opcode = -1;  // -1: the connection ended (or the safety net ran out) first
    std::string payload;
};

struct Close {
    int code = 0;  // 1005 when the close frame carried no code
    std::string reason;
    bool operator==(const Close&) const = default;
};

}  // namespace ws

// A WebSocket client over a raw connection: writes exactly the frames given, reads the server's
// (unmasked) frames. It answers nothing on its own, server pings included. Every wait has a 20 s
// safety net; nothing measures time.
class WsClient {
public:
    // Connects to 127.0.0.1:port and upgrades GET /ws?format=json&token=<token>; REQUIREs the 101.
    WsClient(std::uint16_t port, const std::string& token);

    // Sends `bytes` as given; false when the server had already closed or reset the connection.
    bool send(std::string_view bytes);
    // One masked FIN text frame (REQUIREs that it was sent).
    void send_text(std::string_view text);

    // The next data or close frame; server pings and pongs are skipped (and not answered)
    // unless wanted.
    ws::Frame next(bool want_pings = false);
    // A ping envelope answered with its pong.
    bool answers_ping(const std::string& cid);
    // Reads to the server's close frame (data frames before it are skipped), then answers it as
    // a client must and closes its side. nullopt when the connection ended without one.
    std::optional<ws::Close> close_frame();
    // True once the server has closed the TCP connection.
    bool closed_by_server();
    // The raw bytes received until they contain `needle`, the server closed, or the safety net
    // ran out.
    std::string read_until(const std::string& needle);

private:
    bool fill(std::chrono::steady_clock::time_point deadline);
    std::optional<ws::Frame> parse();

    RawConnection conn_;
    std::string in_;
};

}  // namespace nk::test
