// Support for the security suites: a real nkhost process on a free loopback port, raw sockets
// that send exactly the bytes given, and small helpers for tokens and metrics.
#pragma once

#include <httplib.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
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

}  // namespace nk::test
