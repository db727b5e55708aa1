#include "api/session_vars.hpp"

#include "api/account_common.hpp"
#include "auth/tokens.hpp"

namespace nk::api {

Status check_vars_size(const auth::Tokens& tokens, const std::map<std::string, std::string>& vars) {
    if (vars.empty())
        return Status::ok();
    std::string json;
    account_detail::append_vars(json, vars);
    const std::size_t max = tokens.options().max_vars_bytes;
    if (json.size() <= max)
        return Status::ok();
    return Status::invalid_argument("Session vars too large, must be at most " +
                                    std::to_string(max) + " bytes as JSON.");
}

}  // namespace nk::api
