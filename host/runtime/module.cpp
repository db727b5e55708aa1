#include "runtime/module.hpp"
#include "runtime/call_watch.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <chrono>
#include <span>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <string>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
#include <spdlog/spdlog.h>

#include "events/handlers.hpp"
#include "log/log.hpp"
#include "metrics/plugin_metrics.hpp"
#include "runtime/elf_check.hpp"
#include "runtime/module_copies.hpp"
#include "store/account_json.hpp"
#include "store/account_store.hpp"
#include "store/storage_json.hpp"
#include "store/storage_store.hpp"

namespace nk::runtime {

namespace {

constexpr std::string_view known_api_ids[] = {
    NK_API_AUTHENTICATE_DEVICE, NK_API_AUTHENTICATE_CUSTOM, NK_API_AUTHENTICATE_EMAIL,
    NK_API_SESSION_REFRESH,     NK_API_SESSION_LOGOUT,      NK_API_GET_ACCOUNT,
    NK_API_UPDATE_ACCOUNT,      NK_API_DELETE_ACCOUNT,      NK_API_EVENT,
    NK_API_WRITE_STORAGE_OBJECTS, NK_API_READ_STORAGE_OBJECTS, NK_API_LIST_STORAGE_OBJECTS,
    NK_API_DELETE_STORAGE_OBJECTS,
};

std::string_view sv(nk_str s) {
    return s.len ? std::string_view(s.ptr, s.len) : std::string_view();
}
nk_str view(std::string_view s) {
    return nk_str{s.data(), s.size()};
}

void write_sink(nk_sink* sink, std::string_view s) {
    if (sink != nullptr && sink->write != nullptr)
        sink->write(sink->host, s.data(), s.size());
}

ModuleGeneration& self_of(const nk_initializer* i) {
    return *static_cast<ModuleGeneration*>(i->host);
}
const ModuleGeneration& self_of(const nk_logger* l) {
    return *static_cast<const ModuleGeneration*>(l->host);
}
const ModuleGeneration& self_of(const nk_module* m) {
    return *static_cast<const ModuleGeneration*>(m->host);
}

RequestContext request_context_of(const nk_context* c) {
    RequestContext rc;
    if (c == nullptr)
        return rc;
    rc.execution_mode = sv(c->execution_mode);
    rc.user_id = sv(c->user_id);
    rc.username = sv(c->username);
    for (std::size_t i = 0; i < c->vars_count; ++i)
        rc.vars[std::string(sv(c->vars[i].key))] = std::string(sv(c->vars[i].value));
    rc.session_expiry = c->user_session_exp;
    rc.session_id = sv(c->session_id);
    rc.lang = sv(c->lang);
    rc.client_ip = sv(c->client_ip);
    rc.client_port = sv(c->client_port);
    return rc;
}

// ---- nk_logger ----
void log_at(const nk_logger* l, nk_log_level level, nk_str msg, const nk_kv* f, size_t n) {
    if (l == nullptr || l->host == nullptr)
        return;
    self_of(l).log(level, sv(msg), f, n);
}
void log_debug(const nk_logger* l, nk_str m, const nk_kv* f, size_t n) {
    log_at(l, NK_LOG_DEBUG, m, f, n);
}
void log_info(const nk_logger* l, nk_str m, const nk_kv* f, size_t n) {
    log_at(l, NK_LOG_INFO, m, f, n);
}
void log_warn(const nk_logger* l, nk_str m, const nk_kv* f, size_t n) {
    log_at(l, NK_LOG_WARN, m, f, n);
}
void log_error(const nk_logger* l, nk_str m, const nk_kv* f, size_t n) {
    log_at(l, NK_LOG_ERROR, m, f, n);
}

spdlog::level::level_enum spd_level(int32_t level) {
    switch (level) {
        case NK_LOG_DEBUG:
            return spdlog::level::debug;
        case NK_LOG_INFO:
            return spdlog::level::info;
        case NK_LOG_WARN:
            return spdlog::level::warn;
        default:
            return spdlog::level::err;
    }
}
int log_enabled(const nk_logger*, int32_t level) {
    return spdlog::default_logger_raw()->should_log(spd_level(level)) ? 1 : 0;
}

// ---- nk_module ----
nk_status module_event(const nk_module* m, const nk_context* ctx, const nk_event* evt,
                       nk_sink* r_error) {
    if (m == nullptr || evt == nullptr) {
        write_sink(r_error, "event is required");
        return NK_INVALID_ARGUMENT;
    }
    try {
        events::EventSink* sink = self_of(m).host().events.load(std::memory_order_acquire);
        if (sink == nullptr) {
            write_sink(r_error, "event pipeline not available");
            return NK_UNAVAILABLE;
        }
        // Only the ABI 1.0 fields of `evt` are read: a plugin built against 1.0 passes a
        // 1.0-sized nk_event (its `size` ends before id / received_at, which the host sets).
        events::Event e;
        e.kind = events::Kind::custom;
        e.name = sv(evt->name);
        e.properties.reserve(evt->property_count);
        for (std::size_t i = 0; i < evt->property_count; ++i) {
            std::string key(sv(evt->properties[i].key));
            bool dup = false;
            for (auto& [k, v] : e.properties)
                if (k == key) {
                    v = sv(evt->properties[i].value);  // keys are unique: last wins
                    dup = true;
                }
            if (!dup)
                e.properties.emplace_back(std::move(key), sv(evt->properties[i].value));
        }
        e.has_timestamp = evt->has_timestamp != 0;
        e.timestamp.seconds = evt->timestamp_seconds;
        e.timestamp.nanos = evt->timestamp_nanos;
        e.external = evt->external != 0;
        e.set_context(request_context_of(ctx));
        events::stamp(e);  // a fresh id and receive time: the host received it now
        switch (sink->submit(std::move(e))) {
            case events::SubmitResult::accepted:
            case events::SubmitResult::dropped:
                return NK_OK;  // Nakama: a drop is not an error
            case events::SubmitResult::rejected:
                write_sink(r_error, "event queue full");
                return NK_RESOURCE_EXHAUSTED;
            case events::SubmitResult::shut_down:
                write_sink(r_error, "event pipeline is shut down");
                return NK_UNAVAILABLE;
        }
        return NK_INTERNAL;
    } catch (const std::exception& ex) {
        write_sink(r_error, ex.what());
        return NK_INTERNAL;
    }
}

nk_status module_account_get_id(const nk_module* m, const nk_context*, nk_str user_id,
                                nk_sink* r_account, nk_sink* r_error) {
    try {
        store::AccountStore* accounts = self_of(m).host().accounts;
        if (accounts == nullptr) {
            write_sink(r_error, "account store not available");
            return NK_UNIMPLEMENTED;
        }
        store::Account a;
        Status st = accounts->get_account(sv(user_id), a);
        if (!st) {
            write_sink(r_error, st.message());
            return st.code_number();
        }
        write_sink(r_account, store::account_json(a));
        return NK_OK;
    } catch (const std::exception& ex) {
        write_sink(r_error, ex.what());
        return NK_INTERNAL;
    }
}

nk_status module_account_update_id(const nk_module* m, const nk_context*, nk_str user_id,
                                   nk_str update_json, nk_sink* r_error) {
    try {
        store::AccountStore* accounts = self_of(m).host().accounts;
        if (accounts == nullptr) {
            write_sink(r_error, "account store not available");
            return NK_UNIMPLEMENTED;
        }
        rapidjson::Document d;
        if (!parse_json(sv(update_json), d, self_of(m).host().json) || !d.IsObject()) {
            write_sink(r_error, "update must be a JSON object");
            return NK_INVALID_ARGUMENT;
        }
        store::AccountUpdate u;
        auto field = [&d](const char* k, std::optional<std::string>& out) {
            auto it = d.FindMember(k);
            if (it != d.MemberEnd() && it->value.IsString())
                out = std::string(it->value.GetString(), it->value.GetStringLength());
        };
        field("username", u.username);
        field("display_name", u.display_name);
        field("avatar_url", u.avatar_url);
        field("lang_tag", u.lang_tag);
        field("location", u.location);
        field("timezone", u.timezone);
        // metadata (ABI 1.2): a JSON object, as an object or as its text.
        auto md = d.FindMember("metadata");
        if (md != d.MemberEnd() && !md->value.IsNull()) {
            rapidjson::Document parsed;
            const rapidjson::Value* obj = &md->value;
            if (md->value.IsString()) {
                if (!parse_json(std::string_view(md->value.GetString(),
                                                 md->value.GetStringLength()),
                                parsed, self_of(m).host().json))
                    obj = nullptr;
                else
                    obj = &parsed;
            }
            if (obj == nullptr || !obj->IsObject()) {
                write_sink(r_error, "metadata must be a JSON object");
                return NK_INVALID_ARGUMENT;
            }
            rapidjson::StringBuffer sb;
            rapidjson::Writer<rapidjson::StringBuffer> w(sb);
            obj->Accept(w);  // parsed with the depth limit: bounded recursion
            if (sb.GetSize() > 16384) {
                write_sink(r_error, "metadata is too large: at most 16384 bytes");
                return NK_INVALID_ARGUMENT;
            }
            u.metadata = std::string(sb.GetString(), sb.GetSize());
        }
        Status st = accounts->update_account(sv(user_id), u);
        if (!st) {
            write_sink(r_error, st.message());
            return st.code_number();
        }
        return NK_OK;
    } catch (const std::exception& ex) {
        write_sink(r_error, ex.what());
        return NK_INTERNAL;
    }
}

// ---- nk_module: storage objects and wallets (ABI 1.2) ----

// Runs `f(store)` for a storage slot: NK_UNIMPLEMENTED without a store, else the code and
// message of the Status it returns (NK_INTERNAL for an exception).
template <class F>
nk_status with_store(const nk_module* m, nk_sink* r_error, F f) {
    try {
        store::StorageStore* s = m != nullptr ? self_of(m).host().storage : nullptr;
        if (s == nullptr) {
            write_sink(r_error, "storage is not available");
            return NK_UNIMPLEMENTED;
        }
        const Status st = f(*s);
        if (st)
            return NK_OK;
        write_sink(r_error, st.message());
        return st.code_number();
    } catch (const std::exception& ex) {
        write_sink(r_error, ex.what());
        return NK_INTERNAL;
    }
}
// The same, with the request parsed first (a JSON object, depth-limited): f(store, doc).
template <class F>
nk_status with_request(const nk_module* m, nk_str request, nk_sink* r_error, F f) {
    return with_store(m, r_error, [&](store::StorageStore& s) -> Status {
        rapidjson::Document d;
        if (!parse_json(sv(request), d, self_of(m).host().json) || !d.IsObject())
            return Status::invalid_argument("request must be a JSON object");
        return f(s, d);
    });
}

std::string ledger_item_json(const store::LedgerItem& item) {
    std::string out = "{\"id\":";
    append_json_string(out, item.id);
    out += ",\"user_id\":";
    append_json_string(out, item.user_id);
    out += ",\"changeset\":";
    store::append_wallet(out, item.changeset);
    out += ",\"metadata\":";
    append_json_string(out, item.metadata);
    out += ",\"create_time\":";
    append_json_string(out, store::detail::rfc3339_seconds(item.create_time));
    out += ",\"update_time\":";
    append_json_string(out, store::detail::rfc3339_seconds(item.update_time));
    return out + "}";
}
std::string wallet_results_json(const char* member, const std::vector<store::WalletResult>& rs) {
    std::string out = "\"";
    out += member;
    out += "\":[";
    for (std::size_t i = 0; i < rs.size(); ++i) {
        if (i > 0)
            out += ',';
        out += "{\"user_id\":";
        append_json_string(out, rs[i].user_id);
        out += ",\"updated\":";
        store::append_wallet(out, rs[i].updated);
        out += ",\"previous\":";
        store::append_wallet(out, rs[i].previous);
        out += '}';
    }
    return out + "]";
}
// {"user_id","changeset":{...},"metadata":{...}} entries of `member`.
Status wallet_changes_of(const rapidjson::Value& d, const char* member, unsigned max_depth,
                         std::vector<store::WalletChange>& out) {
    auto it = d.FindMember(member);
    if (it == d.MemberEnd() || it->value.IsNull())
        return Status::ok();
    if (!it->value.IsArray())
        return Status::invalid_argument(std::string(member) + " must be an array");
    for (const auto& e : it->value.GetArray()) {
        if (!e.IsObject() || !e.HasMember("user_id") || !e["user_id"].IsString())
            return Status::invalid_argument("a wallet update needs a user_id");
        store::WalletChange c;
        c.user_id = e["user_id"].GetString();
        auto cs = e.FindMember("changeset");
        if (cs != e.MemberEnd()) {
            if (!cs->value.IsObject())
                return Status::invalid_argument("changeset must be an object of integers");
            for (auto m = cs->value.MemberBegin(); m != cs->value.MemberEnd(); ++m) {
                if (!m->value.IsInt64())
                    return Status::invalid_argument("changeset must be an object of integers");
                c.changeset[std::string(m->name.GetString(), m->name.GetStringLength())] =
                    m->value.GetInt64();
            }
        }
        auto md = e.FindMember("metadata");
        if (md != e.MemberEnd() && !md->value.IsNull()) {
            if (!md->value.IsObject())
                return Status::invalid_argument("metadata must be a JSON object");
            rapidjson::StringBuffer sb;
            rapidjson::Writer<rapidjson::StringBuffer> w(sb);
            md->value.Accept(w);  // parsed with the depth limit: bounded recursion
            c.metadata.assign(sb.GetString(), sb.GetSize());
        }
        out.push_back(std::move(c));
    }
    (void)max_depth;
    return Status::ok();
}

std::string ledger_page_json(const store::LedgerPage& page) {
    std::string out = "{\"items\":[";
    for (std::size_t i = 0; i < page.items.size(); ++i) {
        if (i > 0)
            out += ',';
        out += ledger_item_json(page.items[i]);
    }
    out += ']';
    if (!page.cursor.empty()) {
        out += ",\"cursor\":";
        append_json_string(out, page.cursor);
    }
    return out + "}";
}

nk_status module_storage_read(const nk_module* m, const nk_context*, nk_str request,
                              nk_sink* r_response, nk_sink* r_error) {
    return with_request(m, request, r_error, [&](store::StorageStore& s, const auto& d) {
        std::vector<store::StorageId> ids;
        std::vector<store::StorageObject> objects;
        Status st = store::read_storage_ids(d, "object_ids", ids);
        if (st && (st = s.storage_read("", ids, objects)))
            write_sink(r_response, store::storage_objects_json(objects));
        return st;
    });
}
nk_status module_storage_write(const nk_module* m, const nk_context*, nk_str request,
                               nk_sink* r_response, nk_sink* r_error) {
    return with_request(m, request, r_error, [&](store::StorageStore& s, const auto& d) {
        std::vector<store::StorageWrite> writes;
        std::vector<store::StorageAck> acks;
        Status st = store::read_storage_writes(d, "objects", writes);
        if (st && (st = s.storage_write("", writes, acks)))
            write_sink(r_response, store::storage_acks_json(acks));
        return st;
    });
}
nk_status module_storage_list(const nk_module* m, const nk_context*, nk_str caller_id,
                              nk_str user_id, nk_str collection, int32_t limit, nk_str cursor,
                              nk_sink* r_response, nk_sink* r_error) {
    return with_store(m, r_error, [&](store::StorageStore& s) {
        store::StoragePage page;
        const Status st =
            s.storage_list(sv(caller_id), sv(user_id), sv(collection), limit, sv(cursor), page);
        if (st)
            write_sink(r_response, store::storage_objects_json(page.objects, page.cursor));
        return st;
    });
}
nk_status module_storage_delete(const nk_module* m, const nk_context*, nk_str request,
                                nk_sink* r_error) {
    return with_request(m, request, r_error, [&](store::StorageStore& s, const auto& d) {
        std::vector<store::StorageId> ids;
        Status st = store::read_storage_ids(d, "object_ids", ids);
        return st ? s.storage_delete("", ids) : st;
    });
}
nk_status module_wallet_update(const nk_module* m, const nk_context* ctx, nk_str user_id,
                               nk_str changeset, nk_str metadata, int32_t update_ledger,
                               nk_sink* r_response, nk_sink* r_error) {
    // As wallets_update with one update: {"updates":[{"user_id","changeset","metadata"}]}.
    std::string request = "{\"updates\":[{\"user_id\":";
    append_json_string(request, sv(user_id));
    request += ",\"changeset\":";
    request += changeset.len == 0 ? std::string_view("{}") : sv(changeset);
    if (metadata.len != 0) {
        request += ",\"metadata\":";
        request += sv(metadata);
    }
    request += "}]}";
    (void)ctx;
    return with_request(m, view(request), r_error, [&](store::StorageStore& s, const auto& d) {
        std::vector<store::WalletChange> changes;
        std::vector<store::WalletResult> results;
        Status st = wallet_changes_of(d, "updates", 0, changes);
        if (st && (st = s.wallets_update(changes, update_ledger != 0, results)) &&
            !results.empty()) {
            std::string out = "{\"updated\":";
            store::append_wallet(out, results[0].updated);
            out += ",\"previous\":";
            store::append_wallet(out, results[0].previous);
            write_sink(r_response, out + "}");
        }
        return st;
    });
}
nk_status module_wallets_update(const nk_module* m, const nk_context*, nk_str request,
                                int32_t update_ledger, nk_sink* r_response, nk_sink* r_error) {
    return with_request(m, request, r_error, [&](store::StorageStore& s, const auto& d) {
        std::vector<store::WalletChange> changes;
        std::vector<store::WalletResult> results;
        Status st = wallet_changes_of(d, "updates", 0, changes);
        if (st && (st = s.wallets_update(changes, update_ledger != 0, results)))
            write_sink(r_response, "{" + wallet_results_json("results", results) + "}");
        return st;
    });
}
nk_status module_wallet_ledger_list(const nk_module* m, const nk_context*, nk_str user_id,
                                    int32_t limit, nk_str cursor, nk_sink* r_response,
                                    nk_sink* r_error) {
    return with_store(m, r_error, [&](store::StorageStore& s) {
        store::LedgerPage page;
        const Status st = s.wallet_ledger_list(sv(user_id), limit, sv(cursor), page);
        if (st)
            write_sink(r_response, ledger_page_json(page));
        return st;
    });
}
nk_status module_wallet_ledger_update(const nk_module* m, const nk_context*, nk_str item_id,
                                      nk_str metadata, nk_sink* r_response, nk_sink* r_error) {
    return with_store(m, r_error, [&](store::StorageStore& s) {
        store::LedgerItem item;
        const Status st = s.wallet_ledger_update(sv(item_id), sv(metadata), item);
        if (st)
            write_sink(r_response, ledger_item_json(item));
        return st;
    });
}
nk_status module_multi_update(const nk_module* m, const nk_context*, nk_str request,
                              int32_t update_ledger, nk_sink* r_response, nk_sink* r_error) {
    return with_request(m, request, r_error, [&](store::StorageStore& s, const auto& d) {
        std::vector<store::StorageWrite> writes;
        std::vector<store::StorageId> deletes;
        std::vector<store::WalletChange> changes;
        std::vector<store::StorageAck> acks;
        std::vector<store::WalletResult> results;
        Status st = store::read_storage_writes(d, "storage_writes", writes);
        if (st)
            st = store::read_storage_ids(d, "storage_deletes", deletes);
        if (st)
            st = wallet_changes_of(d, "wallet_updates", 0, changes);
        if (st && (st = s.multi_update(writes, deletes, changes, update_ledger != 0, acks, results))) {
            std::string out = "{\"acks\":";
            store::append_acks(out, acks);
            out += "," + wallet_results_json("wallet_results", results) + "}";
            write_sink(r_response, out);
        }
        return st;
    });
}

// ---- nk_module: plugin metrics (ABI 1.1) ----

// Tags of one call, as views; false (and r_error written) when there are too many to check.
bool tags_of(const nk_kv* tags, std::size_t count, nk_sink* r_error,
             std::array<metrics::PluginMetrics::Tag, metrics::PluginMetrics::kMaxTags>& out) {
    if (count > out.size()) {
        write_sink(r_error, fmt::format("at most {} tags", out.size()));
        return false;
    }
    if (count > 0 && tags == nullptr) {
        write_sink(r_error, "tags is NULL");
        return false;
    }
    for (std::size_t i = 0; i < count; ++i)
        out[i] = {sv(tags[i].key), sv(tags[i].value)};
    return true;
}

template <class Record>
nk_status record_metric(const nk_module* m, nk_str name, const nk_kv* tags, std::size_t count,
                        nk_sink* r_error, Record record) {
    if (m == nullptr)
        return NK_INVALID_ARGUMENT;
    try {
        metrics::PluginMetrics* pm = self_of(m).host().plugin_metrics();
        if (pm == nullptr) {
            write_sink(r_error, "metrics are not available");
            return NK_UNIMPLEMENTED;
        }
        std::array<metrics::PluginMetrics::Tag, metrics::PluginMetrics::kMaxTags> views;
        if (!tags_of(tags, count, r_error, views))
            return NK_INVALID_ARGUMENT;
        const Status st =
            record(*pm, sv(name), std::span<const metrics::PluginMetrics::Tag>(views.data(), count));
        if (st)
            return NK_OK;
        write_sink(r_error, st.message());
        return st.code_number();
    } catch (const std::exception& ex) {
        write_sink(r_error, ex.what());
        return NK_INTERNAL;
    }
}

nk_status module_metrics_counter_add(const nk_module* m, nk_str name, const nk_kv* tags,
                                     size_t count, int64_t delta, nk_sink* r_error) {
    return record_metric(m, name, tags, count, r_error, [delta](auto& pm, auto n, auto t) {
        return pm.counter_add(n, t, delta);
    });
}
nk_status module_metrics_gauge_set(const nk_module* m, nk_str name, const nk_kv* tags,
                                   size_t count, double value, nk_sink* r_error) {
    return record_metric(m, name, tags, count, r_error, [value](auto& pm, auto n, auto t) {
        return pm.gauge_set(n, t, value);
    });
}
nk_status module_metrics_timer_record(const nk_module* m, nk_str name, const nk_kv* tags,
                                      size_t count, int64_t duration_ns, nk_sink* r_error) {
    return record_metric(m, name, tags, count, r_error, [duration_ns](auto& pm, auto n, auto t) {
        return pm.timer_record(n, t, std::chrono::nanoseconds(duration_ns));
    });
}

// ---- nk_module: faults (ABI 1.2) ----
void module_report_fault(const nk_module* m, nk_str what) {
    if (m == nullptr || m->host == nullptr)
        return;
    try {
        const ModuleGeneration& self = self_of(m);
        CallScope* scope = CallScope::current();
        if (scope != nullptr && &scope->module() == &self) {
            scope->set_fault(sv(what));
            self.fault(scope->kind(), scope->target(), sv(what));
        } else {
            self.fault("none", "", sv(what));
        }
    } catch (...) {
    }
}

// Why the last registration refused on this thread was refused (initializer.last_error).
thread_local std::string t_last_refusal;

}  // namespace

namespace {
thread_local CallScope* t_call_scope = nullptr;
}  // namespace

CallScope::CallScope(const ModuleGeneration& module, const char* kind, std::string_view target)
    : module_(module), kind_(kind), target_(target), previous_(t_call_scope) {
    t_call_scope = this;
    if (previous_ == nullptr)
        call_watch::begin(module, kind, target_);
}
CallScope::~CallScope() {
    if (previous_ == nullptr)
        call_watch::end();
    t_call_scope = previous_;
}
CallScope* CallScope::current() {
    return t_call_scope;
}
void CallScope::set_fault(std::string_view what) {
    if (!faulted_)
        fault_ = what;  // the first fault of the call is the one that ended it
    faulted_ = true;
}

void ModuleGeneration::fault(const char* kind, std::string_view target,
                             std::string_view what) const {
    try {
        if (host_->metrics != nullptr) {
            host_->metrics
                ->counter("plugin_faults",
                          "Plugin calls that failed in the plugin's own code (an exception "
                          "escaped a handler), by module and kind of call",
                          {{"module", name_}, {"call", kind}})
                .inc();
        }
        if (std::string_view(kind) == "event")
            return;  // the event pipeline logs it (rate-limited) and counts event_handler_errors
        std::optional<std::uint64_t> suppressed;
        {
            std::lock_guard lock(fault_mutex_);
            // One limit per call (RPC id, hook id, route): bounded by what the module
            // registered. Event faults never get here.
            std::string key = fmt::format("{}:{}", kind, target);
            auto it = fault_limits_.find(key);
            if (it == fault_limits_.end())
                it = fault_limits_
                         .emplace(std::move(key),
                                  std::make_unique<log::RateLimit>(std::chrono::seconds(1)))
                         .first;
            suppressed = it->second->allow();
        }
        if (!suppressed)
            return;
        std::string_view call = kind;
        if (call == "rpc")
            call = "RPC";
        else if (call == "before")
            call = "before-hook";
        else if (call == "after")
            call = "after-hook";
        else if (call == "http")
            call = "HTTP handler";
        else if (call == "shutdown")
            call = "shutdown handler";
        else if (call == "handoff")
            call = "state handoff";
        else if (call == "none")
            call = "code outside a host call";
        std::string line = target.empty()
                               ? fmt::format("Module {}: {}: {}", name_, call, what)
                               : fmt::format("Module {}: {} {}: {}", name_, call, target, what);
        if (*suppressed > 0)
            line += fmt::format(" ({} more like it in the last second not logged)", *suppressed);
        log::write(spdlog::level::err, line,
                   {{"module", name_}, {"call", std::string(kind)}, {"target", std::string(target)}});
    } catch (...) {
    }
}

namespace {
constexpr std::uint64_t kFnvOffset = 14695981039346656037ull;
std::uint64_t fnv1a(std::uint64_t hash, const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
        hash ^= static_cast<unsigned char>(p[i]);
        hash *= 1099511628211ull;
    }
    return hash;
}
}  // namespace

std::uint64_t content_hash_of(const std::filesystem::path& file, bool& ok) {
    std::ifstream in(file, std::ios::binary);
    ok = static_cast<bool>(in);
    std::uint64_t hash = kFnvOffset;
    std::vector<char> buffer(1 << 16);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        hash = fnv1a(hash, buffer.data(), static_cast<std::size_t>(in.gcount()));
    }
    ok = ok && !in.bad();
    return hash;
}

bool is_known_api_id(std::string_view api_id) {
    for (auto id : known_api_ids)
        if (id == api_id)
            return true;
    return false;
}

HostServices::HostServices(Options o, std::string v)
    : options(std::move(o)), version(std::move(v)) {
    for (const auto& [k, val] : options.env)
        env_kv.push_back({view(k), view(val)});
}

HostServices::~HostServices() = default;

metrics::PluginMetrics* HostServices::plugin_metrics() const {
    // `metrics` is set once after construction, before any module loads.
    std::call_once(plugin_metrics_once_, [this] {
        if (metrics != nullptr)
            plugin_metrics_ = std::make_unique<metrics::PluginMetrics>(*metrics);
    });
    return plugin_metrics_.get();
}

CallContext::CallContext(const HostServices& host, const RequestContext& ctx,
                         std::string_view mode) {
    for (const auto& [k, v] : ctx.vars)
        vars_.push_back({view(k), view(v)});
    c_.size = sizeof(nk_context);
    c_.execution_mode = view(mode);
    c_.node = view(host.options.node);
    c_.version = view(host.version);
    c_.env = host.env_kv.data();
    c_.env_count = host.env_kv.size();
    c_.user_id = view(ctx.user_id);
    c_.username = view(ctx.username);
    c_.vars = vars_.data();
    c_.vars_count = vars_.size();
    c_.user_session_exp = ctx.session_expiry;
    c_.session_id = view(ctx.session_id);
    c_.lang = view(ctx.lang);
    c_.client_ip = view(ctx.client_ip);
    c_.client_port = view(ctx.client_port);
}

ModuleGeneration::ModuleGeneration(std::shared_ptr<HostServices> host, std::filesystem::path source,
                                   std::uint64_t generation)
    : host_(std::move(host)),
      source_(std::move(source)),
      name_(source_.stem().string()),
      generation_(generation) {
    logger_.size = sizeof(nk_logger);
    logger_.host = this;
    logger_.debug = &log_debug;
    logger_.info = &log_info;
    logger_.warn = &log_warn;
    logger_.error = &log_error;
    logger_.enabled = &log_enabled;

    module_.size = sizeof(nk_module);
    module_.host = this;
    module_.event = &module_event;
    module_.account_get_id = &module_account_get_id;
    module_.account_update_id = &module_account_update_id;
    module_.metrics_counter_add = &module_metrics_counter_add;
    module_.metrics_gauge_set = &module_metrics_gauge_set;
    module_.metrics_timer_record = &module_metrics_timer_record;
    module_.report_fault = &module_report_fault;
    module_.storage_read = &module_storage_read;
    module_.storage_write = &module_storage_write;
    module_.storage_list = &module_storage_list;
    module_.storage_delete = &module_storage_delete;
    module_.wallet_update = &module_wallet_update;
    module_.wallets_update = &module_wallets_update;
    module_.wallet_ledger_list = &module_wallet_ledger_list;
    module_.wallet_ledger_update = &module_wallet_ledger_update;
    module_.multi_update = &module_multi_update;

    initializer_.size = sizeof(nk_initializer);
    initializer_.host = this;
    initializer_.register_event = &reg_event;
    initializer_.register_event_session_start = &reg_session_start;
    initializer_.register_event_session_end = &reg_session_end;
    initializer_.register_before = &reg_before;
    initializer_.register_after = &reg_after;
    initializer_.register_rpc = &reg_rpc;
    initializer_.register_shutdown = &reg_shutdown;
    initializer_.set_init_error = &set_init_error;
    initializer_.register_handoff = &reg_handoff;
    initializer_.register_http = &reg_http;
    initializer_.last_error = &last_error;
}

namespace {
// Serialises loading (dlopen + InitModule) with unloading (destroy callbacks + dlclose) across
// the process. The dynamic loader serialises them itself, but ThreadSanitizer cannot see its
// lock: a new generation mapped where a retired one was would look like a race on the
// plugin's static data (written by its static destructors at dlclose on the retirer thread,
// then by InitModule on the reloader thread). Loads and unloads are rare; nothing waits on
// this lock for long except another load or unload.
std::mutex& loader_mutex() {
    static std::mutex m;
    return m;
}
}  // namespace

ModuleGeneration::~ModuleGeneration() {
    std::lock_guard loader(loader_mutex());
    {
        std::lock_guard lock(init_mutex_);
        init_open_ = false;
    }
    // Plugin-owned user data goes first, while its code is still mapped.
    for (auto it = owned_.rbegin(); it != owned_.rend(); ++it) {
        try {
            it->destroy(it->user_data);
        } catch (...) {
            spdlog::error("Module {}: a destroy callback threw; ignored", name_);
        }
    }
    owned_.clear();
    try {
        library_.unload();
    } catch (...) {
    }
    std::error_code ec;
    if (!private_dir_.empty())
        std::filesystem::remove_all(private_dir_, ec);
    else if (!copy_.empty())
        std::filesystem::remove(copy_, ec);
}

void ModuleGeneration::log(nk_log_level level, std::string_view message, const nk_kv* fields,
                           std::size_t count) const {
    try {
        log::Fields f;
        f.reserve(count + 1);
        f.emplace_back("module", name_);
        for (std::size_t i = 0; i < count; ++i)
            f.emplace_back(std::string(sv(fields[i].key)), std::string(sv(fields[i].value)));
        log::write(spd_level(level), message, f);
    } catch (...) {
    }
}

Status ModuleGeneration::stage() {
    // A private, unique copy: dlopen caches by path (a reload must map the new
    // file), and the original may be replaced while the copy is mapped.
    const std::filesystem::path dir = module_copies_dir(host_->options);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec)
        return Status::internal("cannot create " + dir.string() + ": " + ec.message());
    std::ifstream in(source_, std::ios::binary);
    if (!in)
        return Status::not_found("cannot read file: " + std::string(std::strerror(errno)));
    const std::string base = fmt::format("{}.{}.{}", name_, ::getpid(), generation_);
    // Helper libraries shipped in a hidden ".lib" folder beside the plugin: the plugin finds
    // them through its RUNPATH $ORIGIN/.lib, so its copy gets a folder of its own holding a
    // copy of them too (a copy: the originals may change while this generation is loaded).
    const std::filesystem::path helpers = source_.parent_path() / ".lib";
    if (std::filesystem::is_directory(helpers, ec)) {
        private_dir_ = dir / (base + ".d");
        std::filesystem::remove_all(private_dir_, ec);
        ec.clear();
        std::filesystem::create_directories(private_dir_, ec);
        if (!ec)
            std::filesystem::copy(helpers, private_dir_ / ".lib",
                                  std::filesystem::copy_options::recursive |
                                      std::filesystem::copy_options::copy_symlinks,
                                  ec);
        if (ec) {
            const std::string why = ec.message();
            std::filesystem::remove_all(private_dir_, ec);
            private_dir_.clear();
            return Status::internal("cannot copy its helper libraries (" + helpers.string() +
                                    ") under " + dir.string() + ": " + why);
        }
        copy_ = private_dir_ / source_.filename();
    } else {
        copy_ = dir / (base + source_.extension().string());
    }
    std::ofstream out(copy_, std::ios::binary | std::ios::trunc);
    if (!out) {
        if (!private_dir_.empty())
            std::filesystem::remove_all(private_dir_, ec);
        private_dir_.clear();
        copy_.clear();
        return Status::internal("cannot write a copy under " + dir.string());
    }
    // Copy and hash in one pass.
    std::uint64_t hash = kFnvOffset;
    std::vector<char> buffer(1 << 16);
    while (in) {
        in.read(buffer.data(), static_cast<std::streamsize>(buffer.size()));
        const auto n = static_cast<std::size_t>(in.gcount());
        hash = fnv1a(hash, buffer.data(), n);
        out.write(buffer.data(), static_cast<std::streamsize>(n));
    }
    out.close();
    if (in.bad() || !out) {
        std::filesystem::remove(copy_, ec);
        if (!private_dir_.empty())
            std::filesystem::remove_all(private_dir_, ec);
        private_dir_.clear();
        copy_.clear();
        return Status::internal("cannot copy to " + dir.string());
    }
    content_hash_ = hash;
    staged_ = true;
    return Status::ok();
}

Status ModuleGeneration::load() {
    if (!staged_) {
        if (Status st = stage(); !st)
            return st;
    }
    const std::string bad_file = check_elf_image(copy_);
    if (!bad_file.empty()) {
        incomplete_ = bad_file == "empty file" || bad_file.rfind("truncated", 0) == 0;
        return Status::invalid_argument(bad_file);
    }
    return open_and_init();
}

namespace {

// The plugin file being opened, for the terminate handler (written under loader_mutex()
// before the handler is installed; a fixed buffer, so the handler need not allocate to read it).
char loading_file[4096];
std::terminate_handler terminate_before_loading = nullptr;

// Installed around dlopen: a static constructor of the plugin that throws, or calls
// std::terminate, aborts the process inside dlopen. Says which plugin did it (flushed to the
// log before anything else can abort), then hands over to the handler it replaced. Also
// called directly when such an exception came out of dlopen instead (see open_and_init).
[[noreturn]] void terminate_while_loading() {
    std::string what;
    if (const std::exception_ptr e = std::current_exception()) {
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& ex) {
            what = std::string(": ") + ex.what();
        } catch (...) {
            what = ": an exception that is not a std::exception";
        }
    }
    const std::string line = fmt::format(
        "{}: aborting: an exception escaped the plugin's static initialisation (or it called "
        "std::terminate) while loading{}; do no work in static constructors, move it into "
        "InitModule (docs/plugin-pitfalls.md)",
        loading_file, what);
    try {
        spdlog::critical("{}", line);
        log::flush();
    } catch (...) {
        const std::string raw = line + "\n";
        [[maybe_unused]] const ssize_t n = ::write(STDERR_FILENO, raw.data(), raw.size());
    }
    if (terminate_before_loading != nullptr)
        terminate_before_loading();
    std::abort();
}

// Installs terminate_while_loading() for the lifetime of the guard (the caller holds
// loader_mutex(), so guards never nest across threads), then restores the previous handler.
class TerminateWhileLoading {
  public:
    explicit TerminateWhileLoading(const std::string& file) {
        const std::size_t n = std::min(file.size(), sizeof loading_file - 1);
        std::memcpy(loading_file, file.data(), n);
        loading_file[n] = '\0';
        terminate_before_loading = std::set_terminate(terminate_while_loading);
        previous_ = terminate_before_loading;
    }
    ~TerminateWhileLoading() { std::set_terminate(previous_); }
    TerminateWhileLoading(const TerminateWhileLoading&) = delete;
    TerminateWhileLoading& operator=(const TerminateWhileLoading&) = delete;

  private:
    std::terminate_handler previous_;
};

// Boost.DLL's "boost::dll::shared_library::load() failed (dlerror system message: <copy>:
// <reason>): <errno text>" as "<file>: <reason>": the dynamic loader's message, naming the
// plugin file rather than its private copy, without the unrelated errno text.
std::string open_failure(const std::string& what, const std::string& copy,
                         const std::string& source) {
    constexpr std::string_view marker = "dlerror system message: ";
    std::string msg = what;
    const auto at = what.find(marker);
    const auto close = what.rfind("): ");
    if (at != std::string::npos && close != std::string::npos && close > at)
        msg = what.substr(at + marker.size(), close - at - marker.size());
    for (auto pos = msg.find(copy); !copy.empty() && pos != std::string::npos;
         pos = msg.find(copy, pos + source.size()))
        msg.replace(pos, copy.size(), source);
    return msg;
}

}  // namespace

Status ModuleGeneration::open_and_init() {
    std::lock_guard loader(loader_mutex());
    // The last line before the plugin's own code runs (static constructors inside dlopen, then
    // InitModule): a crash in either is attributed by it.
    spdlog::info("loading {}", source_.string());
    {
        TerminateWhileLoading guard(source_.string());
        try {
            library_.load(copy_,
                          boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local);
        } catch (const boost::dll::fs::system_error& e) {
            // dlopen failed (unless a static constructor threw a system_error of its own)
            if (std::string_view(e.what()).find("shared_library::load() failed") !=
                std::string_view::npos) {
                return Status::invalid_argument(
                    "could not open: " +
                    open_failure(e.what(), copy_.string(), source_.string()));
            }
            terminate_while_loading();
        } catch (...) {
            // Thrown by a static constructor and unwound out of dlopen (where it does not
            // terminate first): glibc's loader lock stays held by this thread, so the next
            // dlopen or dlclose on any other thread (a reload, a retirement, shutdown) would
            // hang forever. The process cannot go on: say which plugin, with the exception.
            terminate_while_loading();
        }
    }
    if (!library_.has(NK_ABI_SYMBOL) && !library_.has(NK_INIT_SYMBOL)) {
        return Status::invalid_argument(
            "not a plugin (exports neither " NK_ABI_SYMBOL " nor " NK_INIT_SYMBOL
            "): move it out of runtime.path or into a hidden folder (a name starting with '.')");
    }
    if (!library_.has(NK_ABI_SYMBOL)) {
        return Status::invalid_argument("missing ABI info symbol " NK_ABI_SYMBOL
                                        " (not built with nk/sdk.h NK_PLUGIN_ABI())");
    }
    try {
        abi_ = library_.get<nk_abi_version()>(NK_ABI_SYMBOL)();
    } catch (...) {
        return Status::invalid_argument("ABI info function " NK_ABI_SYMBOL " failed");
    }
    if (abi_.major != NK_ABI_VERSION_MAJOR) {
        return Status(
            Code::failed_precondition,
            fmt::format(
                "ABI version mismatch: plugin built for ABI {}.{}, host speaks ABI {}.{} (major "
                "versions must match)",
                abi_.major, abi_.minor, NK_ABI_VERSION_MAJOR, NK_ABI_VERSION_MINOR));
    }
    if (abi_.minor > NK_ABI_VERSION_MINOR) {
        return Status(
            Code::failed_precondition,
            fmt::format("ABI version mismatch: plugin built for ABI {}.{}, host speaks ABI {}.{} "
                        "(plugin needs "
                        "a newer host)",
                        abi_.major, abi_.minor, NK_ABI_VERSION_MAJOR, NK_ABI_VERSION_MINOR));
    }
    if (!library_.has(NK_INIT_SYMBOL)) {
        return Status::invalid_argument("missing InitModule function");
    }
    auto* init = library_.get<std::remove_pointer_t<nk_init_module_fn>>(NK_INIT_SYMBOL);

    RequestContext rc;
    CallContext ctx(*host_, rc, "run_once");
    {
        std::lock_guard lock(init_mutex_);
        init_open_ = true;
        init_thread_ = std::this_thread::get_id();
    }
    nk_status st = NK_OK;
    std::string thrown;
    try {
        st = init(ctx.get(), &logger_, &module_, &initializer_);
    } catch (const std::exception& e) {
        thrown = std::string("InitModule threw an exception: ") + e.what();
    } catch (...) {
        thrown = "InitModule threw an exception";
    }
    std::string reason, refused;
    {
        std::lock_guard lock(init_mutex_);
        init_open_ = false;
        reason = init_error_;
        refused = refused_;
    }
    if (!thrown.empty())
        return Status::internal(thrown);
    if (st != NK_OK) {
        const Code code = st > 0 && st <= 16 ? static_cast<Code>(st) : Code::internal;
        std::string msg = fmt::format("InitModule returned error code {}", st);
        if (!reason.empty())
            msg += ": " + reason;
        return Status(code == Code::ok ? Code::internal : code, msg);
    }
    if (!refused.empty()) {
        // A module that loads without a registration it asked for is not the module its
        // author wrote (and a reload would swap it in with a hole): refuse it.
        return Status::invalid_argument(fmt::format(
            "InitModule returned OK after a registration was refused: {}; fix the registration "
            "and return its error from InitModule",
            refused));
    }
    return Status::ok();
}

std::vector<std::string> ModuleGeneration::describe() const {
    std::vector<std::string> out;
    if (!events.empty())
        out.push_back(fmt::format("event handlers: {}", events.size()));
    if (!session_start.empty())
        out.push_back(fmt::format("session start handlers: {}", session_start.size()));
    if (!session_end.empty())
        out.push_back(fmt::format("session end handlers: {}", session_end.size()));
    for (const auto& [id, cb] : before)
        out.push_back("before " + id);
    for (const auto& [id, cb] : after)
        out.push_back("after " + id);
    for (const auto& [id, cb] : rpcs)
        out.push_back("rpc " + id);
    if (!shutdown.empty())
        out.push_back(fmt::format("shutdown handlers: {}", shutdown.size()));
    if (handoff.save != nullptr || handoff.load != nullptr)
        out.push_back("state handoff");
    for (const auto& [path, route] : http)
        out.push_back(fmt::format("http {} /plugins{}", fmt::join(route.methods, ","), path));
    return out;
}

// ---- registration --------------------------------------------------------

nk_status ModuleGeneration::check_registration(const char* what, void* user_data,
                                               nk_on_destroy_fn destroy) {
    bool open = false;
    {
        std::lock_guard lock(init_mutex_);
        open = init_open_ && init_thread_ == std::this_thread::get_id();
    }
    if (open)
        return NK_OK;
    return refused(NK_FAILED_PRECONDITION,
                   fmt::format("{} refused: registration is only allowed inside InitModule, on "
                               "its thread",
                               what),
                   user_data, destroy);
}

nk_status ModuleGeneration::refused(nk_status st, std::string reason, void* user_data,
                                    nk_on_destroy_fn destroy) {
    spdlog::error("Module {}: {}", name_, reason);
    {
        std::lock_guard lock(init_mutex_);
        // A refusal during InitModule refuses the module (see open_and_init); a late one (after
        // InitModule returned, or from another thread) only fails that call.
        if (st == NK_INVALID_ARGUMENT && init_open_ && refused_.empty())
            refused_ = reason;
    }
    try {
        t_last_refusal = std::move(reason);
    } catch (...) {
    }
    // The host owns user_data once a register_* function is called: destroy it now.
    if (destroy != nullptr)
        destroy(user_data);
    return st;
}

void ModuleGeneration::last_error(const nk_initializer*, nk_sink* r_message) {
    write_sink(r_message, t_last_refusal);
}

nk_status ModuleGeneration::admit(const char* what, bool has_fn, std::string_view kind,
                                  void* user_data, nk_on_destroy_fn destroy,
                                  std::string_view label) {
    if (nk_status st = check_registration(what, user_data, destroy); st != NK_OK)
        return st;
    if (!has_fn)
        return refused(NK_INVALID_ARGUMENT,
                       fmt::format("{}: no {} function (NULL)", label.empty() ? what : label, kind),
                       user_data, destroy);
    return NK_OK;
}

void ModuleGeneration::own(void* user_data, nk_on_destroy_fn destroy) {
    if (destroy != nullptr)
        owned_.push_back({user_data, destroy});
}

namespace {
std::string valid_hook_ids() {
    std::string out;
    for (auto id : known_api_ids) {
        if (!out.empty())
            out += ", ";
        out += id;
    }
    return out;
}
}  // namespace

nk_status ModuleGeneration::reg_event(const nk_initializer* i, nk_on_event_fn fn, void* ud,
                                      nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    if (nk_status st = self.admit("register_event", fn != nullptr, "handler", ud, destroy);
        st != NK_OK)
        return st;
    self.events.push_back({fn, ud});
    self.own(ud, destroy);
    return NK_OK;
}
nk_status ModuleGeneration::reg_session_start(const nk_initializer* i, nk_on_event_fn fn, void* ud,
                                              nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    if (nk_status st =
            self.admit("register_event_session_start", fn != nullptr, "handler", ud, destroy);
        st != NK_OK)
        return st;
    self.session_start.push_back({fn, ud});
    self.own(ud, destroy);
    return NK_OK;
}
nk_status ModuleGeneration::reg_session_end(const nk_initializer* i, nk_on_event_fn fn, void* ud,
                                            nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    if (nk_status st =
            self.admit("register_event_session_end", fn != nullptr, "handler", ud, destroy);
        st != NK_OK)
        return st;
    self.session_end.push_back({fn, ud});
    self.own(ud, destroy);
    return NK_OK;
}
nk_status ModuleGeneration::reg_before(const nk_initializer* i, nk_str api_id, nk_on_before_fn fn,
                                       void* ud, nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    if (nk_status st = self.admit("register_before", fn != nullptr, "hook", ud, destroy);
        st != NK_OK)
        return st;
    if (!is_known_api_id(sv(api_id)))
        return self.refused(NK_INVALID_ARGUMENT,
                            fmt::format("register_before: unknown hook id \"{}\" (valid: {})",
                                        sv(api_id), valid_hook_ids()),
                            ud, destroy);
    self.before[std::string(sv(api_id))] = {fn, ud};  // last registration wins
    self.own(ud, destroy);
    return NK_OK;
}
nk_status ModuleGeneration::reg_after(const nk_initializer* i, nk_str api_id, nk_on_after_fn fn,
                                      void* ud, nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    if (nk_status st = self.admit("register_after", fn != nullptr, "hook", ud, destroy);
        st != NK_OK)
        return st;
    if (!is_known_api_id(sv(api_id)))
        return self.refused(NK_INVALID_ARGUMENT,
                            fmt::format("register_after: unknown hook id \"{}\" (valid: {})",
                                        sv(api_id), valid_hook_ids()),
                            ud, destroy);
    self.after[std::string(sv(api_id))] = {fn, ud};
    self.own(ud, destroy);
    return NK_OK;
}
nk_status ModuleGeneration::reg_rpc(const nk_initializer* i, nk_str id, nk_on_rpc_fn fn, void* ud,
                                    nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    if (nk_status st = self.admit("register_rpc", fn != nullptr, "RPC", ud, destroy,
                                  fmt::format("register_rpc \"{}\"", sv(id)));
        st != NK_OK)
        return st;
    if (id.len == 0)
        return self.refused(NK_INVALID_ARGUMENT, "register_rpc: empty RPC id", ud, destroy);
    std::string key(sv(id));  // RPC ids are case-insensitive (Nakama lower-cases them)
    for (char& ch : key)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    self.rpcs[key] = {fn, ud};
    self.own(ud, destroy);
    return NK_OK;
}
nk_status ModuleGeneration::reg_shutdown(const nk_initializer* i, nk_on_shutdown_fn fn, void* ud,
                                         nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    if (nk_status st = self.admit("register_shutdown", fn != nullptr, "handler", ud, destroy);
        st != NK_OK)
        return st;
    self.shutdown.push_back({fn, ud});
    self.own(ud, destroy);
    return NK_OK;
}
nk_status ModuleGeneration::reg_handoff(const nk_initializer* i, nk_on_handoff_save_fn save,
                                        nk_on_handoff_load_fn load, void* ud,
                                        nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    nk_status st = self.check_registration("register_handoff", ud, destroy);
    if (st != NK_OK)
        return st;
    if (save == nullptr && load == nullptr)
        return self.refused(NK_INVALID_ARGUMENT, "register_handoff: neither save nor load (both NULL)",
                            ud, destroy);
    self.handoff = {save, load, ud};  // one per module: the last registration wins
    self.own(ud, destroy);
    return NK_OK;
}
namespace {
bool valid_route_path(std::string_view p) {
    if (p.size() >= 4 && p.substr(p.size() - 4) == "/{*}")
        p.remove_suffix(4);
    if (p.size() < 2 || p.size() > 256 || p[0] != '/' || p.back() == '/')
        return false;
    std::size_t from = 1;
    while (from <= p.size()) {
        const auto slash = std::min(p.find('/', from), p.size());
        const std::string_view seg = p.substr(from, slash - from);
        if (seg.empty() || seg == "." || seg == "..")
            return false;
        for (char c : seg) {
            const bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
                            c == '~' || c == '-';
            if (!ok)
                return false;
        }
        from = slash + 1;
    }
    return true;
}
}  // namespace

nk_status ModuleGeneration::reg_http(const nk_initializer* i, nk_str path, nk_str methods,
                                     std::int32_t auth, nk_on_http_fn fn, void* ud,
                                     nk_on_destroy_fn destroy) {
    auto& self = self_of(i);
    nk_status st = self.check_registration("register_http", ud, destroy);
    if (st != NK_OK)
        return st;
    HttpRoute route;
    route.path = std::string(sv(path));
    route.auth = auth;
    route.cb = {fn, ud};
    std::string why;
    if (fn == nullptr)
        why = "no handler function";
    else if (!valid_route_path(route.path))
        why = fmt::format("invalid path \"{}\" (want \"/seg/seg\" of [A-Za-z0-9._~-], "
                          "optionally ending in \"/{{*}}\")",
                          route.path);
    else if (auth < NK_HTTP_AUTH_NONE || auth > NK_HTTP_AUTH_SESSION)
        why = fmt::format("unknown auth mode {}", auth);
    std::string_view list = sv(methods);
    if (list.empty())
        list = "GET";
    while (why.empty() && !list.empty()) {
        const auto comma = list.find(',');
        std::string m(list.substr(0, comma));
        m.erase(0, m.find_first_not_of(' '));
        m.erase(m.find_last_not_of(' ') + 1);
        for (char& c : m)
            c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
        if (m != "GET" && m != "POST" && m != "PUT" && m != "PATCH" && m != "DELETE")
            why = fmt::format("unknown method \"{}\" (GET, POST, PUT, PATCH, DELETE)", m);
        else if (std::find(route.methods.begin(), route.methods.end(), m) == route.methods.end())
            route.methods.push_back(m);
        list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
    }
    if (!why.empty())
        return self.refused(NK_INVALID_ARGUMENT, "register_http: " + why, ud, destroy);
    if (route.path.size() >= 4 && route.path.compare(route.path.size() - 4, 4, "/{*}") == 0)
        route.prefix = route.path.substr(0, route.path.size() - 3);
    self.http[route.path] = std::move(route);  // last registration wins
    self.own(ud, destroy);
    return NK_OK;
}

void ModuleGeneration::set_init_error(const nk_initializer* i, nk_str message) {
    auto& self = self_of(i);
    std::lock_guard lock(self.init_mutex_);
    if (self.init_open_)
        self.init_error_ = sv(message);
}

}  // namespace nk::runtime
