#include "realtime/envelope.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>

#include "core/status.hpp"

namespace nk::realtime {

std::optional<Envelope> parse_envelope(std::string_view text, const JsonLimits& limits) {
    rapidjson::Document doc;
    if (!parse_json(text, doc, limits) || !doc.IsObject()) return std::nullopt;

    Envelope env;
    bool have_kind = false;
    for (const auto& member : doc.GetObject()) {
        std::string_view key(member.name.GetString(), member.name.GetStringLength());
        if (key == "cid") {
            if (member.value.IsNull()) continue;
            if (!member.value.IsString()) return std::nullopt;
            env.cid.assign(member.value.GetString(), member.value.GetStringLength());
            continue;
        }
        if (member.value.IsNull()) continue;
        if (!member.value.IsObject() || have_kind) return std::nullopt;
        have_kind = true;
        env.kind.assign(key);
    }
    if (!have_kind) {
        env.type = Envelope::Type::empty;
    } else if (env.kind == "ping") {
        env.type = Envelope::Type::ping;
    } else if (env.kind == "pong") {
        env.type = Envelope::Type::pong;
    } else {
        env.type = Envelope::Type::other;
    }
    return env;
}

namespace {

void open_envelope(std::string& out, std::string_view cid) {
    out += '{';
    if (!cid.empty()) {
        out += "\"cid\":";
        append_json_string(out, cid);
        out += ',';
    }
}

}  // namespace

std::string encode_pong(std::string_view cid) {
    std::string out;
    out.reserve(24 + cid.size());
    open_envelope(out, cid);
    out += "\"pong\":{}}";
    return out;
}

std::string encode_error(std::string_view cid, EnvelopeError code, std::string_view message) {
    std::string out;
    out.reserve(48 + cid.size() + message.size());
    open_envelope(out, cid);
    out += "\"error\":{\"code\":";
    out += std::to_string(static_cast<int>(code));
    out += ",\"message\":";
    append_json_string(out, message);
    out += "}}";
    return out;
}

}  // namespace nk::realtime
