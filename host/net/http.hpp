// The HTTP vocabulary handlers see: Request, Response, Responder, Handler.
//
// Handlers are called on an io thread and must not block. A handler that
// needs to block posts its work to the BlockingPool, moving the Request and
// the Responder into the task, and calls the Responder from there: the
// Responder is thread-safe and posts the response back to the connection's
// own executor. Calling it inline (on the io thread) costs no thread hop.
// A Responder must be called exactly once; if it is destroyed uncalled, the
// connection answers 500 so the client never hangs. abandoned() tells queued
// work that the client has gone, so it can be dropped unrun.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.hpp"

namespace nk::net {

enum class Method { get, head, post, put, patch, delete_, options, other };

using KeyValues = std::vector<std::pair<std::string, std::string>>;

struct Request {
    Method method = Method::other;
    std::string target;       // raw request target, e.g. "/v2/rpc/foo?http_key=x&"
    std::string path;         // percent-decoded path without the query
    KeyValues query;          // percent-decoded, '+' as space; empty parameters ("&&", trailing "?") dropped
    KeyValues path_params;    // captures of "{name}" segments of the matched route
    KeyValues headers;        // as received (names in the case sent)
    std::string body;         // already decompressed (Content-Encoding gzip/deflate)
    std::string client_ip;    // honours socket.proxy_count and X-Forwarded-For
    std::string client_port;
    bool keep_alive = true;

    // Case-insensitive header lookup; empty view when absent.
    std::string_view header(std::string_view name) const;
    // First value of a query parameter, or nullopt when absent.
    std::optional<std::string_view> query_param(std::string_view name) const;
    // Value of a "{name}" route capture; empty when absent.
    std::string_view path_param(std::string_view name) const;
};

struct Response {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
    KeyValues headers;  // extra headers (e.g. Retry-After, WWW-Authenticate)

    static Response json(int status, std::string body) {
        Response r;
        r.status = status;
        r.body = std::move(body);
        return r;
    }
    static Response empty_object() { return json(200, "{}"); }
    // Nakama's error body and status. Code 16 also sets WWW-Authenticate.
    static Response error(const Status& s);
};

// Sends the response of one request. Thread-safe. Copies share one slot:
// the first call sends, later calls are ignored; when the last copy is
// destroyed without a call, the connection answers 500 (never a hang).
class Responder {
public:
    using SendFn = std::function<void(Response&&)>;
    // Set (never cleared) by the connection once its client has closed or reset it.
    using GoneFlag = std::shared_ptr<const std::atomic<bool>>;
    Responder() = default;
    explicit Responder(SendFn fn, GoneFlag client_gone = {});

    void operator()(Response&& response) const;
    explicit operator bool() const { return static_cast<bool>(state_); }
    // True once the client is known to have gone: nobody will read the response. Cheap and
    // thread-safe (one atomic load); false when unknown.
    bool abandoned() const;

private:
    struct State;
    std::shared_ptr<State> state_;
};

using Handler = std::function<void(Request&& request, Responder respond)>;

}  // namespace nk::net
