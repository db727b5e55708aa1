#include "runtime/runtime.hpp"

#include <algorithm>
#include <cctype>
#include <condition_variable>
#include <exception>
#include <stdexcept>
#include <thread>
#include <utility>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "metrics/registry.hpp"
#include "runtime/module.hpp"
#include "runtime/module_copies.hpp"

namespace nk::runtime {

namespace {

template <class Fn>
struct Bound {
    std::shared_ptr<ModuleGeneration> module;
    Callback<Fn> cb;
};

// Collects what a plugin writes into an nk_sink.
struct StringSink {
    std::string text;
    nk_sink sink{this, &StringSink::write};
    static void write(void* host, const char* p, std::size_t n) {
        if (p != nullptr && n != 0)
            static_cast<StringSink*>(host)->text.append(p, n);
    }
};

Code code_of(nk_status st) {
    return st > 0 && st <= 16 ? static_cast<Code>(st) : Code::internal;
}

std::string lower_id(std::string_view id) {
    std::string out(id);
    for (char& ch : out)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    return out;
}

bool is_hidden(const std::filesystem::path& p) {
    const std::string name = p.filename().string();
    return !name.empty() && name[0] == '.';
}

bool has_so_extension(const std::filesystem::path& p) {
    std::string ext = p.extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return ext == ".so";
}

}  // namespace

struct Runtime::Snapshot {
    std::vector<std::shared_ptr<ModuleGeneration>> modules;
    std::map<std::string, Bound<nk_on_before_fn>, std::less<>> before;
    std::map<std::string, Bound<nk_on_after_fn>, std::less<>> after;
    std::map<std::string, Bound<nk_on_rpc_fn>, std::less<>> rpcs;
    std::vector<Bound<nk_on_shutdown_fn>> shutdown;
};

std::vector<std::filesystem::path> find_module_files(const std::filesystem::path& root) {
    namespace fs = std::filesystem;
    std::vector<fs::path> out;
    std::error_code ec;
    if (!fs::is_directory(root, ec))
        return out;
    fs::recursive_directory_iterator it(root, fs::directory_options::skip_permission_denied, ec);
    for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const fs::path& p = it->path();
        if (is_hidden(p)) {
            if (it->is_directory(ec))
                it.disable_recursion_pending();
            continue;
        }
        if (it->is_regular_file(ec) && has_so_extension(p))
            out.push_back(p);
    }
    std::sort(out.begin(), out.end());  // lexical, like Go's filepath.Walk
    return out;
}

std::filesystem::path effective_module_path(const Options& options) {
    if (!options.path.empty())
        return options.path;
    std::filesystem::path data_dir = options.data_dir.empty() ? "data" : options.data_dir;
    return data_dir / "modules";
}

Runtime::Runtime(Options options, Dependencies deps)
    : host_(std::make_shared<HostServices>(std::move(options), std::move(deps.version))) {
    host_->events.store(deps.events, std::memory_order_release);
    host_->accounts = deps.accounts;
    host_->metrics = deps.metrics;
    host_->json = counted_json_limits(host_->options.max_json_depth, deps.metrics);
    snapshot_.store(std::make_shared<const Snapshot>());
}

Runtime::~Runtime() {
    // Drop our references; generations still held by running calls unload when those return.
    handler_source_.publish({});
    snapshot_.store(std::make_shared<const Snapshot>());
}

void Runtime::set_event_sink(events::EventSink* sink) {
    host_->events.store(sink, std::memory_order_release);
}

std::shared_ptr<const Runtime::Snapshot> Runtime::snapshot() const {
    return snapshot_.load();
}

Status Runtime::load_all() {
    namespace fs = std::filesystem;
    const fs::path root = effective_module_path(host_->options);
    std::error_code ec;
    fs::create_directories(root, ec);  // Nakama creates runtime.path when missing
    if (const auto removed = remove_stale_module_copies(module_copies_dir(host_->options))) {
        spdlog::info("Removed private module copies left by stopped processes count={}", removed);
    }

    std::vector<std::shared_ptr<ModuleGeneration>> loaded;
    std::vector<ModuleReport> reports;
    for (const fs::path& file : find_module_files(root)) {
        auto gen = std::make_shared<ModuleGeneration>(host_, file, next_generation_++);
        ModuleReport report;
        report.path = file;
        report.name = gen->name();
        Status st = gen->load();
        report.abi_major = gen->abi().major;
        report.abi_minor = gen->abi().minor;
        if (!st) {
            report.error = st.message();
            reports.push_back(report);
            const std::string line =
                fmt::format("Failed to load runtime module {}: {}", file.string(), st.message());
            gen.reset();  // destroys what it registered, unloads, removes the copy
            if (!host_->options.skip_failed_modules) {
                spdlog::error("{}", line);
                std::lock_guard lock(reports_mutex_);
                reports_ = std::move(reports);
                return Status(st.code(), line);
            }
            spdlog::warn("{} (skipped: runtime.skip_failed_modules)", line);
            continue;
        }
        report.loaded = true;
        report.registered = gen->describe();
        spdlog::info("Loaded runtime module {} (ABI {}.{}): {}", file.string(), report.abi_major,
                     report.abi_minor,
                     report.registered.empty()
                         ? std::string("nothing registered")
                         : fmt::format("{}", fmt::join(report.registered, ", ")));
        reports.push_back(std::move(report));
        loaded.push_back(std::move(gen));
    }
    publish(std::move(loaded));
    std::lock_guard lock(reports_mutex_);
    reports_ = std::move(reports);
    return Status::ok();
}

std::vector<ModuleReport> Runtime::reports() const {
    std::lock_guard lock(reports_mutex_);
    return reports_;
}

std::size_t Runtime::module_count() const {
    return snapshot()->modules.size();
}

void Runtime::publish(std::vector<std::shared_ptr<ModuleGeneration>> modules) {
    auto snap = std::make_shared<Snapshot>();
    events::HandlerSet set;
    auto event_fn = [](const std::shared_ptr<ModuleGeneration>& m, Callback<nk_on_event_fn> cb) {
        return [m, cb](const events::Event& e) {
            const RequestContext& rc = e.context();
            std::string_view mode =
                rc.execution_mode.empty() ? std::string_view("event") : rc.execution_mode;
            CallContext ctx(m->host(), rc, mode);
            std::vector<nk_kv> props;
            props.reserve(e.properties.size());
            for (const auto& [k, v] : e.properties)
                props.push_back({{k.data(), k.size()}, {v.data(), v.size()}});
            nk_event ce{};
            ce.size = sizeof(nk_event);
            ce.kind = static_cast<int32_t>(e.kind);
            ce.name = {e.name.data(), e.name.size()};
            ce.properties = props.data();
            ce.property_count = props.size();
            ce.has_timestamp = e.has_timestamp ? 1 : 0;
            ce.timestamp_seconds = e.timestamp.seconds;
            ce.timestamp_nanos = e.timestamp.nanos;
            ce.external = e.external ? 1 : 0;
            try {
                cb.fn(cb.user_data, ctx.get(), m->logger(), m->module(), &ce);
            } catch (const std::exception& ex) {
                throw std::runtime_error(
                    fmt::format("event handler of module {} threw: {}", m->name(), ex.what()));
            } catch (...) {
                throw std::runtime_error(
                    fmt::format("event handler of module {} threw an exception", m->name()));
            }
        };
    };
    for (const auto& m : modules) {
        for (const auto& cb : m->events)
            set.custom.push_back(event_fn(m, cb));
        for (const auto& cb : m->session_start)
            set.session_start.push_back(event_fn(m, cb));
        for (const auto& cb : m->session_end)
            set.session_end.push_back(event_fn(m, cb));
        // One hook / RPC per id: a later module replaces an earlier one (Nakama: last wins).
        for (const auto& [id, cb] : m->before)
            snap->before[id] = {m, cb};
        for (const auto& [id, cb] : m->after)
            snap->after[id] = {m, cb};
        for (const auto& [id, cb] : m->rpcs)
            snap->rpcs[id] = {m, cb};
        for (const auto& cb : m->shutdown)
            snap->shutdown.push_back({m, cb});
    }
    snap->modules = std::move(modules);
    auto index = std::make_unique<HookIndex>();
    for (const auto& [id, bound] : snap->before)
        index->before.push_back(id);  // std::map: already sorted
    for (const auto& [id, bound] : snap->after)
        index->after.push_back(id);
    {
        std::lock_guard lock(hook_indexes_mutex_);
        hook_index_.store(index.get(), std::memory_order_release);
        hook_indexes_.push_back(std::move(index));
    }
    snapshot_.store(std::move(snap));
    handler_source_.publish(std::move(set));
}

std::shared_ptr<const events::HandlerSet> Runtime::handlers() const {
    return handler_source_.handlers();
}

std::uint64_t Runtime::generation() const {
    return handler_source_.generation();
}

bool Runtime::has_handlers(events::Kind k) const {
    return handler_source_.has_handlers(k);
}

bool Runtime::has_before(std::string_view api_id) const {
    const HookIndex* index = hook_index_.load(std::memory_order_acquire);
    return index != nullptr && std::binary_search(index->before.begin(), index->before.end(),
                                                  api_id, std::less<>{});
}

bool Runtime::has_after(std::string_view api_id) const {
    const HookIndex* index = hook_index_.load(std::memory_order_acquire);
    return index != nullptr && std::binary_search(index->after.begin(), index->after.end(),
                                                  api_id, std::less<>{});
}

bool Runtime::has_rpc(std::string_view id) const {
    auto s = snapshot();
    return s->rpcs.find(lower_id(id)) != s->rpcs.end();
}

Status Runtime::before(std::string_view api_id, const RequestContext& ctx, std::string& in_json) {
    auto s = snapshot();  // held until return: keeps the module loaded
    auto it = s->before.find(api_id);
    if (it == s->before.end())
        return Status::ok();
    const auto& [module, cb] = it->second;
    CallContext c(*host_, ctx, "before");
    StringSink out, err;
    nk_status st = NK_OK;
    try {
        st = cb.fn(cb.user_data, c.get(), module->logger(), module->module(),
                   {in_json.data(), in_json.size()}, &out.sink, &err.sink);
    } catch (...) {
        spdlog::error("Module {}: before-hook {} threw an exception", module->name(), api_id);
        return Status::internal("Error in before hook.");
    }
    if (st != NK_OK) {
        return Status(code_of(st), err.text.empty()
                                       ? std::string("Request rejected by before hook.")
                                       : std::move(err.text));
    }
    if (!out.text.empty())
        in_json = std::move(out.text);
    return Status::ok();
}

void Runtime::after(std::string_view api_id, const RequestContext& ctx, std::string_view out_json,
                    std::string_view in_json) {
    auto s = snapshot();
    auto it = s->after.find(api_id);
    if (it == s->after.end())
        return;
    const auto& [module, cb] = it->second;
    CallContext c(*host_, ctx, "after");
    StringSink err;
    nk_status st = NK_OK;
    try {
        st = cb.fn(cb.user_data, c.get(), module->logger(), module->module(),
                   {out_json.data(), out_json.size()}, {in_json.data(), in_json.size()}, &err.sink);
    } catch (...) {
        st = NK_INTERNAL;
        err.text = "the hook threw an exception";
    }
    if (st == NK_OK)
        return;
    if (host_->metrics != nullptr) {
        host_->metrics
            ->counter("after_hook_errors", "After-hook failures (the response is unchanged)",
                      {{"api", std::string(api_id)}})
            .inc();
    }
    spdlog::warn("Module {}: after-hook {} failed with code {}: {}", module->name(), api_id, st,
                 err.text);
}

Status Runtime::rpc(std::string_view id, const RequestContext& ctx, std::string_view payload,
                    std::string& out_payload) {
    auto s = snapshot();
    auto it = s->rpcs.find(lower_id(id));
    if (it == s->rpcs.end())
        return Status::not_found("RPC function not found");
    const auto& [module, cb] = it->second;
    CallContext c(*host_, ctx, "rpc");
    StringSink out, err;
    nk_status st = NK_OK;
    try {
        st = cb.fn(cb.user_data, c.get(), module->logger(), module->module(),
                   {payload.data(), payload.size()}, &out.sink, &err.sink);
    } catch (...) {
        spdlog::error("Module {}: RPC {} threw an exception", module->name(), id);
        return Status::internal("Error calling RPC function.");
    }
    if (st != NK_OK) {
        return Status(code_of(st),
                      err.text.empty() ? std::string("Error calling RPC function.") : err.text);
    }
    out_payload = std::move(out.text);
    return Status::ok();
}

void Runtime::run_shutdown_handlers(std::chrono::milliseconds grace) {
    auto s = snapshot();
    if (s->shutdown.empty())
        return;
    const auto deadline = std::chrono::steady_clock::now() + grace;
    const std::int64_t grace_sec = std::chrono::duration_cast<std::chrono::seconds>(grace).count();
    for (const auto& bound : s->shutdown) {
        // Each handler runs on its own thread so a stuck one cannot hold shutdown past `grace`.
        struct State {
            std::mutex m;
            std::condition_variable cv;
            bool done = false;
        };
        auto state = std::make_shared<State>();
        std::thread t([state, bound, host = host_, grace_sec] {
            RequestContext rc;
            CallContext c(*host, rc, "shutdown");
            try {
                bound.cb.fn(bound.cb.user_data, c.get(), bound.module->logger(),
                            bound.module->module(), grace_sec);
            } catch (...) {
                spdlog::error("Module {}: shutdown handler threw an exception",
                              bound.module->name());
            }
            std::lock_guard lock(state->m);
            state->done = true;
            state->cv.notify_all();
        });
        std::unique_lock lock(state->m);
        if (state->cv.wait_until(lock, deadline, [&] { return state->done; })) {
            lock.unlock();
            t.join();
        } else {
            lock.unlock();
            spdlog::warn(
                "Module {}: shutdown handler still running after the grace period; "
                "continuing without it",
                bound.module->name());
            t.detach();  // it holds its module generation, so the code stays mapped
        }
    }
}

}  // namespace nk::runtime
