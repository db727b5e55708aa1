#include "api/account_common.hpp"

#include "api/blocking_work.hpp"
#include "api/runtime_bridge.hpp"
#include "api/services.hpp"
#include "core/blocking_pool.hpp"
#include "core/json_read.hpp"
#include "core/json_write.hpp"

namespace nk::api::account_detail {

Status require_services(const Services& s) {
    if (s.tokens == nullptr || s.accounts == nullptr || s.pool == nullptr) {
        return Status::unimplemented("Accounts are not available on this server.");
    }
    return Status::ok();
}

void run_blocking(Services& services, net::Responder respond, std::function<net::Response()> work,
                  std::size_t bytes, BlockingPool::Lane lane) {
    auto task = [respond, work = std::move(work)]() mutable {
        net::Response response;
        try {
            response = work();
        } catch (const std::exception&) {
            response = net::Response::error(Status::internal("Internal server error."));
        }
        respond(std::move(response));
    };
    post_request_work(services, respond, std::move(task), bytes, lane);
}

RequestContext anonymous_context(const net::Request& request) {
    RequestContext ctx;
    ctx.client_ip = request.client_ip;
    ctx.client_port = request.client_port;
    return ctx;
}

Hooks::Hooks(Services& services, std::string_view api_id)
    : runtime_(services.runtime), api_id_(api_id) {
    // The lock-free index first: most requests have no hook and need no pinned snapshot.
    // Without one now, the request runs no hook, as the registrations of this moment say,
    // even if a reload adds one before it ends.
    hooked_ = runtime_ != nullptr &&
              (runtime_->has_before(api_id_) || runtime_->has_after(api_id_));
    if (hooked_)
        pin_ = runtime_->pin();
}

bool Hooks::has_before() const {
    return hooked_ && runtime_->has_before(pin_, api_id_);
}

bool Hooks::has_after() const {
    return hooked_ && runtime_->has_after(pin_, api_id_);
}

Status Hooks::before(RequestContext ctx, std::string& in_json) const {
    if (!has_before())
        return Status::ok();
    ctx.execution_mode = "before";
    return runtime_->before(pin_, api_id_, ctx, in_json);
}

void Hooks::after(RequestContext ctx, std::string_view out_json, std::string_view in_json) const {
    if (!has_after())
        return;
    ctx.execution_mode = "after";
    try {
        runtime_->after(pin_, api_id_, ctx, out_json, in_json);
    } catch (...) {
        // The bridge reports hook failures itself; nothing may reach the client.
    }
}

Status parse_object(std::string_view body, const JsonLimits& limits, rapidjson::Document& doc) {
    std::size_t first = 0;
    while (first < body.size() && (body[first] == ' ' || body[first] == '\n' ||
                                   body[first] == '\r' || body[first] == '\t')) {
        ++first;
    }
    if (first == body.size()) {
        doc.SetObject();
        return Status::ok();
    }
    if (auto s = parse_json(body, doc, limits); !s)
        return s;
    if (!doc.IsObject()) {
        return Status::invalid_argument("proto: syntax error: unexpected token, expected {");
    }
    return Status::ok();
}

Status read_string(const rapidjson::Value& obj, const char* name, std::string& out, bool& present) {
    present = false;
    auto it = obj.FindMember(name);
    if (it == obj.MemberEnd() || it->value.IsNull())
        return Status::ok();
    if (!it->value.IsString()) {
        return Status::invalid_argument(std::string("proto: invalid value for string field ") +
                                        name);
    }
    out.assign(it->value.GetString(), it->value.GetStringLength());
    present = true;
    return Status::ok();
}

Status read_vars(const rapidjson::Value& obj, const char* name,
                 std::map<std::string, std::string>& out, bool& present) {
    present = false;
    auto it = obj.FindMember(name);
    if (it == obj.MemberEnd() || it->value.IsNull())
        return Status::ok();
    if (!it->value.IsObject()) {
        return Status::invalid_argument(std::string("proto: invalid value for map field ") + name);
    }
    out.clear();
    for (const auto& m : it->value.GetObject()) {
        if (!m.value.IsString()) {
            return Status::invalid_argument(
                std::string("proto: invalid value for string map value in field ") + name);
        }
        out[std::string(m.name.GetString(), m.name.GetStringLength())] =
            std::string(m.value.GetString(), m.value.GetStringLength());
    }
    present = true;
    return Status::ok();
}

void append_vars(std::string& out, const std::map<std::string, std::string>& vars) {
    append_json_string_map(out, vars);
}

std::string session_json(bool created, const std::string& token, const std::string& refresh) {
    std::string out = created ? "{\"created\":true,\"token\":" : "{\"token\":";
    append_json_string(out, token);
    out += ",\"refresh_token\":";
    append_json_string(out, refresh);
    out += '}';
    return out;
}

bool parse_bool(std::string_view t, bool& out) {
    if (t == "1" || t == "t" || t == "T" || t == "true" || t == "TRUE" || t == "True") {
        out = true;
        return true;
    }
    if (t == "0" || t == "f" || t == "F" || t == "false" || t == "FALSE" || t == "False") {
        out = false;
        return true;
    }
    return false;
}

bool has_control(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7F)
            return true;
    }
    return false;
}

bool has_space_or_control(std::string_view s) {
    for (unsigned char c : s) {
        if (c < 0x20 || c == 0x7F || c == ' ')
            return true;
    }
    return false;
}

net::Response error(const Status& status) {
    return net::Response::error(status);
}

}  // namespace nk::api::account_detail
