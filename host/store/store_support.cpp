#include "store/store_support.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <climits>

#include <fmt/format.h>
#include <openssl/evp.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/json_read.hpp"
#include "metrics/registry.hpp"

namespace nk::store::detail {
namespace {

constexpr const char* kOperationNames[] = {
    "authenticate_device", "authenticate_custom", "authenticate_email", "find_user",
    "get_account",         "update_account",      "delete_account",     "set_disabled",
    "wal_checkpoint",      "storage_write",       "storage_read",       "storage_list",
    "storage_delete",      "wallet_update",       "wallet_ledger",      "open_connection",
};
static_assert(std::size(kOperationNames) == kOperations);

constexpr auto kErrorLogInterval = std::chrono::seconds(1);

std::string hex_of(std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(2 * s.size());
    for (unsigned char c : s) {
        out.push_back(hex[c >> 4]);
        out.push_back(hex[c & 0xF]);
    }
    return out;
}

bool unhex(std::string_view s, std::string& out) {
    if (s.size() % 2 != 0)
        return false;
    out.clear();
    const auto val = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        return -1;
    };
    for (std::size_t i = 0; i < s.size(); i += 2) {
        const int hi = val(s[i]), lo = val(s[i + 1]);
        if (hi < 0 || lo < 0)
            return false;
        out.push_back(static_cast<char>(hi * 16 + lo));
    }
    return true;
}

std::size_t utf8_chars(std::string_view s) {
    std::size_t n = 0;
    for (unsigned char c : s)
        n += (c & 0xC0) != 0x80;
    return n;
}

JsonLimits depth_limit(unsigned max_depth) {
    JsonLimits limits;
    limits.max_depth = max_depth;
    return limits;
}

}  // namespace

std::int64_t unix_now() {
    return std::chrono::duration_cast<std::chrono::seconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

std::string lower_ascii(std::string_view s) {
    std::string out(s);
    for (char& c : out) {
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c + ('a' - 'A'));
    }
    return out;
}

std::string md5_hex(std::string_view data) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr);
    return hex_of(std::string_view(reinterpret_cast<const char*>(digest), len));
}

std::string owner_of(std::string_view caller, const std::string& user_id) {
    if (!caller.empty())
        return std::string(caller);
    return user_id.empty() ? std::string(kSystemUserId) : user_id;
}

bool readable_by(std::string_view caller, const StorageObject& o) {
    return caller.empty() || o.permission_read == 2 ||
           (o.permission_read == 1 && o.user_id == caller);
}

int min_read_for_list(std::string_view caller, std::string_view user_id) {
    if (caller.empty())
        return 0;
    return (!user_id.empty() && user_id == caller) ? 1 : 2;
}

bool parse_wallet(std::string_view text, unsigned max_depth, Wallet& out) {
    out.clear();
    if (text.empty())
        return true;
    rapidjson::Document d;
    if (!parse_json(text, d, depth_limit(max_depth)) || !d.IsObject())
        return false;
    for (auto m = d.MemberBegin(); m != d.MemberEnd(); ++m) {
        if (!m->value.IsInt64())
            return false;
        out[std::string(m->name.GetString(), m->name.GetStringLength())] = m->value.GetInt64();
    }
    return true;
}

std::string wallet_json(const Wallet& w) {
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> wr(sb);
    wr.StartObject();
    for (const auto& [k, v] : w) {
        wr.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
        wr.Int64(v);
    }
    wr.EndObject();
    return std::string(sb.GetString(), sb.GetSize());
}

bool is_json_object(std::string_view text, unsigned max_depth) {
    rapidjson::Document d;
    return parse_json(text, d, depth_limit(max_depth)) && d.IsObject();
}

Status apply_changeset(Wallet& wallet, const Wallet& changeset) {
    for (const auto& [currency, delta] : changeset) {
        auto& balance = wallet[currency];
        if ((delta > 0 && balance > INT64_MAX - delta) ||
            (delta < 0 && balance < INT64_MIN - delta))
            return Status::invalid_argument(
                fmt::format("wallet update rejected: value out of range at path '{}'", currency));
        balance += delta;
        if (balance < 0)
            return Status::invalid_argument(
                fmt::format("wallet update rejected negative value at path '{}'", currency));
    }
    return Status::ok();
}

Status merge_object(std::string_view stored, std::string_view patch_text, unsigned max_depth,
                    std::string& out) {
    const JsonLimits limits = depth_limit(max_depth);
    rapidjson::Document patch;
    if (!parse_json(patch_text, patch, limits) || !patch.IsObject())
        return kBadMetadata;
    rapidjson::Document merged;
    if (!parse_json(stored, merged, limits) || !merged.IsObject())
        merged.SetObject();
    for (auto m = patch.MemberBegin(); m != patch.MemberEnd(); ++m) {
        rapidjson::Value value(m->value, merged.GetAllocator());
        auto existing = merged.FindMember(m->name);
        if (existing != merged.MemberEnd())
            existing->value = value;
        else
            merged.AddMember(rapidjson::Value(m->name, merged.GetAllocator()), value,
                             merged.GetAllocator());
    }
    rapidjson::StringBuffer sb;
    rapidjson::Writer<rapidjson::StringBuffer> w(sb);
    merged.Accept(w);  // depth bounded: both documents were parsed with the limit
    out.assign(sb.GetString(), sb.GetSize());
    return Status::ok();
}

namespace {

bool has_nul(std::string_view s) {
    return s.find('\0') != std::string_view::npos;
}

}  // namespace

Status check_id(const StorageId& id) {
    if (id.collection.empty() || id.key.empty())
        return kNoCollectionOrKey;
    if (has_nul(id.collection) || has_nul(id.key) || has_nul(id.user_id) || has_nul(id.version))
        return kNulInCollectionOrKey;
    return Status::ok();
}

Status check_reads(const std::vector<StorageId>& ids, const StorageLimits& limits) {
    if (Status st = check_batch(ids.size(), limits); !st)
        return st;
    for (const auto& id : ids)
        if (Status st = check_id(id); !st)
            return st;
    return Status::ok();
}

Status check_collection(std::string_view collection) {
    if (collection.empty())
        return kNoCollection;
    if (has_nul(collection))
        return kNulInCollectionOrKey;
    return Status::ok();
}

Status check_update(const AccountUpdate& update) {
    if (update.empty())
        return kNoFields;
    const std::pair<const char*, const std::optional<std::string>*> fields[] = {
        {"username", &update.username},     {"display_name", &update.display_name},
        {"avatar_url", &update.avatar_url}, {"lang_tag", &update.lang_tag},
        {"location", &update.location},     {"timezone", &update.timezone},
        {"metadata", &update.metadata}};
    for (const auto& [name, value] : fields)
        if (*value && has_nul(**value))
            return Status::invalid_argument(
                fmt::format("Invalid {} value supplied. It must not contain NUL characters.", name));
    return Status::ok();
}

Status check_write(const StorageWrite& w, const StorageLimits& limits) {
    if (w.collection.empty() || w.key.empty())
        return kNoCollectionOrKey;
    if (has_nul(w.collection) || has_nul(w.key) || has_nul(w.user_id) || has_nul(w.version))
        return kNulInCollectionOrKey;
    if (utf8_chars(w.collection) > limits.max_collection_chars ||
        utf8_chars(w.key) > limits.max_key_chars)
        return Status::invalid_argument(fmt::format(
            "Invalid collection or key value supplied. They must be at most {} characters.",
            std::max(limits.max_collection_chars, limits.max_key_chars)));
    if (w.permission_read < 0 || w.permission_read > 2)
        return Status::invalid_argument(
            "Invalid Read permission supplied. It must be either 0, 1 or 2.");
    if (w.permission_write < 0 || w.permission_write > 1)
        return Status::invalid_argument(
            "Invalid Write permission supplied. It must be either 0 or 1.");
    if (w.value.size() > limits.max_value_bytes)
        return Status::invalid_argument(
            fmt::format("Value is too large: at most {} bytes.", limits.max_value_bytes));
    if (!is_json_object(w.value, limits.max_json_depth))
        return Status::invalid_argument("Value must be a JSON object.");
    return Status::ok();
}

Status check_batch(std::size_t n, const StorageLimits& limits) {
    if (n > limits.max_batch)
        return Status::invalid_argument(
            fmt::format("Too many objects in one request: at most {}.", limits.max_batch));
    return Status::ok();
}

Status check_writes(const std::vector<StorageWrite>& writes, std::size_t batch,
                    const StorageLimits& limits) {
    if (Status st = check_batch(batch, limits); !st)
        return st;
    for (const auto& w : writes)
        if (Status st = check_write(w, limits); !st)
            return st;
    return Status::ok();
}

Status check_list_limit(int limit) {
    return limit < 1 || limit > 100 ? kBadLimit : Status::ok();
}

std::string storage_cursor(std::string_view key, std::string_view user_id) {
    return hex_of(key) + "." + hex_of(user_id);
}

bool parse_storage_cursor(std::string_view cursor, std::string& key, std::string& user_id) {
    const auto dot = cursor.find('.');
    return dot != std::string_view::npos && unhex(cursor.substr(0, dot), key) &&
           unhex(cursor.substr(dot + 1), user_id);
}

std::string ledger_cursor(std::int64_t seq) {
    return hex_of(std::to_string(seq));
}

bool parse_ledger_cursor(std::string_view cursor, std::int64_t& seq) {
    std::string text;
    if (!unhex(cursor, text) || text.empty() ||
        text.find_first_not_of("0123456789") != std::string::npos || text.size() > 18)
        return false;
    seq = std::stoll(text);
    return true;
}

const char* operation_name(Operation op) {
    return kOperationNames[static_cast<std::size_t>(op)];
}

ErrorReporter::ErrorReporter(metrics::Registry* registry) {
    for (std::size_t i = 0; i < kOperations; ++i) {
        logs_[i] = std::make_unique<log::RateLimit>(kErrorLogInterval);
        if (registry != nullptr) {
            counts_[i] = &registry->counter("database_errors",
                                            "Database calls that failed, by operation.",
                                            {{"operation", kOperationNames[i]}});
        }
    }
}

ErrorReporter::~ErrorReporter() = default;

void ErrorReporter::report(Operation op, log::Fields details) {
    const auto i = static_cast<std::size_t>(op);
    if (counts_[i] != nullptr)
        counts_[i]->inc();
    if (const auto suppressed = logs_[i]->allow()) {
        log::Fields fields = {{"operation", kOperationNames[i]}};
        fields.insert(fields.end(), details.begin(), details.end());
        if (*suppressed > 0)
            fields.emplace_back("suppressed", std::to_string(*suppressed));
        log::write(spdlog::level::err, "Database error", fields);
    }
}

}  // namespace nk::store::detail
