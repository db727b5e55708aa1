// Reading one HTTP/1 request off a connection, as the server does it: the Beast parser under the
// socket.* limits, the framing checks that refuse request smuggling, and the Request handlers
// see. Pure functions of their arguments (thread-safe); the bytes come from the client, so each
// bounds what it reads. Internal to net: the server's connections and the fuzz target
// (tests/fuzz/http_request_fuzz.cpp) call them.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "net/http.hpp"
#include "net/options.hpp"

namespace nk::net {

using RequestParser = boost::beast::http::request_parser<boost::beast::http::string_body>;
using RequestHeader = boost::beast::http::request_header<>;
using RequestMessage = boost::beast::http::request<boost::beast::http::string_body>;

Method method_from_verb(boost::beast::http::verb verb);

// The maximum of a connection's read buffer: max(socket.max_header_size_bytes, 64 KiB). Beast
// reads the header section, chunk-size lines (with their extensions) and the trailer section in
// this buffer, so it is what bounds the latter two (a read that finds it full fails with
// http::error::buffer_overflow).
std::size_t read_buffer_limit(const Options& options);

// Sets the limits of a fresh parser (one per request): socket.max_header_size_bytes on the header
// section (http::error::header_limit over it) and socket.max_request_size_bytes on the body as
// sent (http::error::body_limit; decoding a Content-Encoding is bounded again by decode_body).
void limit_request_parser(RequestParser& parser, const Options& options);

// Why a request's framing is refused (400 and close), or nullopt; see http_parse.cpp.
std::optional<std::string_view> framing_error(const RequestHeader& header);

// The request a handler sees, from a parsed message: method, target, percent-decoded path and
// query, headers as received, keep-alive, and the client's address (`socket_ip`/`socket_port`,
// or with `proxy_count` > 0 the entry that many from the end of X-Forwarded-For when it parses).
// The body, path parameters and decoding are left to the caller.
Request request_from_message(const RequestMessage& message, std::string_view socket_ip,
                             std::string_view socket_port, unsigned proxy_count);

// Why the percent-decoded path or query of `req` is refused (not UTF-8), or nullopt.
std::optional<std::string> invalid_utf8(const Request& req);

}  // namespace nk::net
