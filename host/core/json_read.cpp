#include "core/json_read.hpp"

#include <fmt/format.h>
#include <rapidjson/error/en.h>

namespace nk {

Status parse_json(std::string_view text, rapidjson::Document& doc, const JsonLimits& limits) {
    return json_status(json_read::parse_document(text.data(), text.size(), doc, limits.max_depth),
                       limits);
}

Status json_status(const json_read::Result& result, const JsonLimits& limits) {
    if (result)
        return Status::ok();
    if (result.too_deep) {
        if (limits.on_too_deep)
            limits.on_too_deep();
        return Status::invalid_argument(fmt::format(
            "proto: syntax error (offset {}): nesting deeper than {} levels (socket.max_json_depth)",
            result.parse.Offset(), limits.max_depth));
    }
    return Status::invalid_argument(fmt::format("proto: syntax error (offset {}): {}",
                                                result.parse.Offset(),
                                                rapidjson::GetParseError_En(result.parse.Code())));
}

}  // namespace nk
