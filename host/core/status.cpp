#include "core/status.hpp"

#include <cstdio>

namespace nk {

int Status::http_status_for(Code code) {
    switch (code) {
        case Code::ok: return 200;
        case Code::cancelled: return 499;
        case Code::unknown: return 500;
        case Code::invalid_argument: return 400;
        case Code::deadline_exceeded: return 504;
        case Code::not_found: return 404;
        case Code::already_exists: return 409;
        case Code::permission_denied: return 403;
        case Code::resource_exhausted: return 429;
        case Code::failed_precondition: return 400;
        case Code::aborted: return 409;
        case Code::out_of_range: return 400;
        case Code::unimplemented: return 501;
        case Code::internal: return 500;
        case Code::unavailable: return 503;
        case Code::data_loss: return 500;
        case Code::unauthenticated: return 401;
    }
    return 500;
}

void append_json_string(std::string& out, std::string_view s) {
    out.push_back('"');
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof buf, "\\u%04x", c);
                    out += buf;
                } else {
                    out.push_back(static_cast<char>(c));
                }
        }
    }
    out.push_back('"');
}

std::string Status::to_json() const {
    std::string out = "{\"code\":";
    out += std::to_string(code_number());
    out += ",\"message\":";
    append_json_string(out, message_);
    out += '}';
    return out;
}

}  // namespace nk
