// The bytes a client sends on one HTTP connection, read as the server reads them: Beast's request
// parser with the server's limits (net/http_parse) and read buffer, arriving in pieces as from a
// socket; for each request the framing checks, the Request handlers see (path, query, headers,
// X-Forwarded-For), the body decoded per Content-Encoding, and the match in the server's own
// route table. Pipelined requests follow while the connection stays open.
//
// Byte 0 sets how the bytes are cut into reads, byte 1 the limits and socket.proxy_count; the
// rest is what the client sends.
#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/asio/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/websocket/rfc6455.hpp>

#include "api/account.hpp"
#include "api/event_api.hpp"
#include "api/health.hpp"
#include "api/plugin_http.hpp"
#include "api/rpc_api.hpp"
#include "api/services.hpp"
#include "api/storage.hpp"
#include "net/content_coding.hpp"
#include "net/http_parse.hpp"
#include "net/router.hpp"

namespace {

namespace http = boost::beast::http;

void check(bool ok) {
    if (!ok) __builtin_trap();
}

// The client's bytes as a socket delivers them: reads of varying size, then end of stream.
class PieceStream {
  public:
    PieceStream(std::string_view bytes, std::uint8_t cut) : bytes_(bytes), cut_(cut), state_(cut) {}

    template <class MutableBuffers>
    std::size_t read_some(const MutableBuffers& buffers, boost::system::error_code& ec) {
        ec = {};
        if (pos_ == bytes_.size()) {
            ec = boost::asio::error::eof;
            return 0;
        }
        std::size_t piece = bytes_.size() - pos_;
        if (cut_ != 0) {  // 0: everything that is there, as a fast client's single segment
            state_ = state_ * 1103515245u + 12345u;
            piece = std::min<std::size_t>(piece, 1 + (state_ >> 8) % (4u * cut_));
        }
        const std::size_t n = boost::asio::buffer_copy(
            buffers, boost::asio::const_buffer(bytes_.data() + pos_, piece));
        pos_ += n;
        return n;
    }
    template <class MutableBuffers>
    std::size_t read_some(const MutableBuffers& buffers) {
        boost::system::error_code ec;
        const std::size_t n = read_some(buffers, ec);
        if (ec)
            throw boost::system::system_error(ec);
        return n;
    }

  private:
    std::string_view bytes_;
    std::size_t pos_ = 0;
    std::uint8_t cut_;
    std::uint32_t state_;
};

// The server's route table, as the application registers it (handlers are matched, never run).
const nk::net::Router& routes() {
    static nk::api::Services services;
    static nk::net::Router router;
    static const bool registered = [] {
        nk::api::register_health_routes(router);
        nk::api::register_account_routes(router, services);
        nk::api::register_event_routes(router, services);
        nk::api::register_rpc_routes(router, services);
        nk::api::register_storage_routes(router, services);
        nk::api::register_plugin_http_routes(router, services);
        router.add_upgrade("/ws", [](nk::net::Request&&, nk::net::Upgrade&) {});
        return true;
    }();
    (void)registered;
    return router;
}

nk::net::Options options_for(std::uint8_t b) {
    nk::net::Options o;  // the server's defaults
    switch (b & 3) {
        case 1:  // small limits, reached by small inputs
            o.max_header_size_bytes = 512;
            o.max_request_size_bytes = 2048;
            break;
        case 2:  // a header limit above the read buffer's 64 KiB minimum
            o.max_header_size_bytes = 70000;
            o.max_request_size_bytes = 1 << 20;
            break;
        case 3:
            o.max_header_size_bytes = 64;
            o.max_request_size_bytes = 1;
            break;
        default: break;
    }
    o.proxy_count = (b >> 2) & 3;
    return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    const nk::net::Options options = options_for(data[1]);
    const nk::net::Router& router = routes();
    PieceStream stream(std::string_view(reinterpret_cast<const char*>(data) + 2, size - 2),
                       data[0]);
    boost::beast::flat_buffer buffer(nk::net::read_buffer_limit(options));
    for (;;) {  // one request per turn, while the connection stays open
        nk::net::RequestParser parser;
        nk::net::limit_request_parser(parser, options);
        boost::system::error_code ec;
        http::read_header(stream, buffer, parser, ec);
        if (ec)
            return 0;  // refused (431, 400) or the client closed: the connection ends
        if (nk::net::framing_error(parser.get()))
            return 0;  // 400 and close
        http::read(stream, buffer, parser, ec);
        if (ec)
            return 0;  // 413, 400 or closed
        auto& message = parser.get();
        check(message.body().size() <= options.max_request_size_bytes);
        check(buffer.size() <= nk::net::read_buffer_limit(options));

        nk::net::Request req =
            nk::net::request_from_message(message, "192.0.2.1", "40000", options.proxy_count);
        (void)nk::net::accepts_gzip(message[http::field::accept_encoding]);
        if (nk::net::invalid_utf8(req)) {
            if (!req.keep_alive)
                return 0;
            continue;  // 400, connection kept
        }
        if (req.method == nk::net::Method::get && router.find_upgrade(req.path) &&
            boost::beast::websocket::is_upgrade(message)) {
            return 0;  // the connection goes to the WebSocket handler
        }
        req.body = std::move(message.body());
        const auto encoding = message[http::field::content_encoding];
        if (!encoding.empty()) {
            const auto result =
                nk::net::decode_body(encoding, req.body, options.max_request_size_bytes);
            if (result == nk::net::DecodeResult::ok)
                check(req.body.size() <= options.max_request_size_bytes);
        }
        if (req.method == nk::net::Method::options) {
            nk::net::KeyValues ignored;
            (void)router.match(nk::net::Method::get, req.path, ignored);
        } else {
            const auto match = router.match(req.method, req.path, req.path_params);
            check(match.route_id < router.route_count());
            if (match.kind == nk::net::Router::Match::Kind::handler) {
                check(match.handler != nullptr);
                for (const auto& [name, value] : req.path_params)
                    check(!value.empty() && value.find('/') == std::string::npos);
            }
        }
        if (!req.keep_alive)
            return 0;
    }
}
