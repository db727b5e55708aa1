#include "net/http_parse.hpp"

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "net/router.hpp"
#include "net/text.hpp"

namespace nk::net {

namespace http = boost::beast::http;

namespace {

// A connection's read buffer holds at most max(socket.max_header_size_bytes, this). Beast scans
// a chunk-size line (with its extensions) and the trailer section in that buffer without
// header_limit, so its maximum is what bounds them; 64 KiB is Beast's own read size, so the
// bound never shortens a read of a body.
constexpr std::size_t kMinReadBufferBytes = 65536;
// The server prepares 4096 bytes in an empty buffer to wait for a request: that must fit
// (prepare() throws std::length_error over the maximum).
static_assert(kMinReadBufferBytes >= 4096);

// Parses "1.2.3.4", "1.2.3.4:80", "::1", "[::1]:80" into ip and port.
bool parse_forwarded_entry(std::string_view entry, std::string& ip, std::string& port) {
    entry = trim(entry);
    if (entry.empty()) return false;
    std::string_view host = entry, p;
    if (entry.front() == '[') {
        auto close = entry.find(']');
        if (close == std::string_view::npos) return false;
        host = entry.substr(1, close - 1);
        std::string_view rest = entry.substr(close + 1);
        if (!rest.empty()) {
            if (rest.front() != ':') return false;
            p = rest.substr(1);
        }
    } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
        auto colon = entry.find(':');
        host = entry.substr(0, colon);
        p = entry.substr(colon + 1);
    }
    boost::system::error_code ec;
    auto addr = boost::asio::ip::make_address(std::string(host), ec);
    if (ec) return false;
    if (!p.empty()) {
        unsigned value = 0;
        auto [end, perr] = std::from_chars(p.data(), p.data() + p.size(), value);
        if (perr != std::errc() || end != p.data() + p.size() || value > 65535) return false;
    }
    ip = addr.to_string();
    port = std::string(p);
    return true;
}

}  // namespace

Method method_from_verb(http::verb v) {
    switch (v) {
        case http::verb::get: return Method::get;
        case http::verb::head: return Method::head;
        case http::verb::post: return Method::post;
        case http::verb::put: return Method::put;
        case http::verb::patch: return Method::patch;
        case http::verb::delete_: return Method::delete_;
        case http::verb::options: return Method::options;
        default: return Method::other;
    }
}

std::size_t read_buffer_limit(const Options& options) {
    return std::max(options.max_header_size_bytes, kMinReadBufferBytes);
}

void limit_request_parser(RequestParser& parser, const Options& options) {
    parser.header_limit(static_cast<std::uint32_t>(
        std::min<std::size_t>(options.max_header_size_bytes, UINT32_MAX)));
    parser.body_limit(options.max_request_size_bytes);
}

// A proxy in front may read such a request's length differently and pass the rest on as a second
// request (smuggling):
// - Transfer-Encoding must be one header line saying "chunked", as Go's net/http (and so
//   Nakama) and nginx require. RFC 9112 6.3 refuses a chunked that is not the final coding,
//   which Beast instead ignores (it then reads no body); other codings are not supported, and a
//   list is refused rather than read differently from Beast's own parse.
// - Transfer-Encoding with Content-Length (6.3), or in an HTTP/1.0 request (6.1).
// - An HTTP/1.1 request without Host, any request with more than one (3.2).
std::optional<std::string_view> framing_error(const RequestHeader& req) {
    std::size_t hosts = 0, transfer_encodings = 0;
    bool content_length = false, chunked = false;
    for (const auto& field : req) {
        switch (field.name()) {
            case http::field::host: ++hosts; break;
            case http::field::content_length: content_length = true; break;
            case http::field::transfer_encoding:
                ++transfer_encodings;
                chunked = iequals(trim(field.value()), "chunked");
                break;
            default: break;
        }
    }
    if (hosts > 1) return "Multiple Host headers";
    if (hosts == 0 && req.version() >= 11) return "Missing Host header";
    if (transfer_encodings == 0) return std::nullopt;
    if (content_length) return "Transfer-Encoding and Content-Length together";
    if (req.version() < 11) return "Transfer-Encoding in an HTTP/1.0 request";
    if (transfer_encodings > 1 || !chunked) return "Unsupported Transfer-Encoding (only chunked is)";
    return std::nullopt;
}

Request request_from_message(const RequestMessage& breq, std::string_view socket_ip,
                             std::string_view socket_port, unsigned proxy_count) {
    Request req;
    req.method = method_from_verb(breq.method());
    req.target = std::string(breq.target());
    std::string_view target = req.target;
    auto qpos = target.find('?');
    std::string_view raw_path = target.substr(0, qpos);
    if (raw_path.find('%') != std::string_view::npos) {
        req.path = percent_decode(raw_path, false);
    } else {
        req.path = std::string(raw_path);
    }
    if (qpos != std::string_view::npos) parse_query(target.substr(qpos + 1), req.query);
    req.headers.reserve(static_cast<std::size_t>(std::distance(breq.begin(), breq.end())));
    std::string forwarded;
    bool has_forwarded = false;
    for (const auto& field : breq) {
        req.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
        if (iequals(field.name_string(), "X-Forwarded-For")) {
            if (has_forwarded) forwarded += ',';
            forwarded += field.value();
            has_forwarded = true;
        }
    }
    req.keep_alive = breq.keep_alive();

    // The client: the proxy_count-th entry from the end of X-Forwarded-For, when it parses.
    if (has_forwarded && proxy_count > 0) {
        std::vector<std::string_view> entries;
        std::string_view all = forwarded;
        std::size_t i = 0;
        while (i <= all.size()) {
            std::size_t j = all.find(',', i);
            if (j == std::string_view::npos) j = all.size();
            entries.push_back(all.substr(i, j - i));
            i = j + 1;
        }
        if (entries.size() >= proxy_count &&
            parse_forwarded_entry(entries[entries.size() - proxy_count], req.client_ip,
                                  req.client_port)) {
            return req;
        }
    }
    req.client_ip = std::string(socket_ip);
    req.client_port = std::string(socket_port);
    return req;
}

std::optional<std::string> invalid_utf8(const Request& req) {
    if (!valid_utf8(req.path)) return std::string("Invalid UTF-8 in the request path");
    for (const auto& [k, v] : req.query) {
        if (!valid_utf8(k)) return std::string("Invalid UTF-8 in a query parameter name");
        if (!valid_utf8(v)) return "Invalid UTF-8 in query parameter \"" + k + "\"";
    }
    return std::nullopt;
}

}  // namespace nk::net
