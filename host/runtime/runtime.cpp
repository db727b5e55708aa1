#include "runtime/runtime.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <unordered_map>
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

// What the log says when a C++ exception crossed the C ABI into the host (a C-ABI callback
// written in C++ without catching, e.g. registered through initializer.raw()).
constexpr const char* kEscaped = "an exception escaped the plugin's callback into the host";

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

struct BoundRoute {
    std::shared_ptr<ModuleGeneration> module;
    const ModuleGeneration::HttpRoute* route = nullptr;  // owned by `module` (read-only)
};

struct Runtime::Snapshot {
    std::vector<std::shared_ptr<ModuleGeneration>> modules;
    std::map<std::string, BoundRoute, std::less<>> http_exact;
    std::vector<std::pair<std::string, BoundRoute>> http_prefix;  // longest prefix first
    const BoundRoute* find_route(std::string_view path) const {
        if (const auto it = http_exact.find(path); it != http_exact.end())
            return &it->second;
        for (const auto& [prefix, bound] : http_prefix) {
            if (path.substr(0, prefix.size()) == prefix)
                return &bound;
        }
        return nullptr;
    }
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

const char* to_string(ReloadResult r) {
    switch (r) {
        case ReloadResult::loaded:
            return "loaded";
        case ReloadResult::unchanged:
            return "unchanged";
        case ReloadResult::refused:
            return "refused";
        case ReloadResult::pending:
            return "pending";
        case ReloadResult::unloaded:
            return "unloaded";
    }
    return "unknown";
}

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Whether `p` (under `root`) is a plugin file the runtime loads: *.so, no hidden component.
bool is_module_file(const fs::path& root, const fs::path& p) {
    if (!has_so_extension(p))
        return false;
    std::error_code ec;
    const fs::path rel = fs::relative(p, root, ec);
    for (const auto& part : ec ? p : rel) {
        if (is_hidden(part))
            return false;
    }
    return true;
}

// Runs `handlers` (registration order) on their own threads with `mode`, waiting at most
// `grace` in total. True when every handler returned in time; a handler still running then is
// left behind (logged) and keeps its module generation loaded.
bool run_bounded(const std::vector<Bound<nk_on_shutdown_fn>>& handlers,
                 const std::shared_ptr<HostServices>& host,
                 std::string_view mode, std::chrono::milliseconds grace) {
    const auto deadline = Clock::now() + grace;
    const std::int64_t grace_sec =
        std::max<std::int64_t>(std::chrono::ceil<std::chrono::seconds>(grace).count(), 0);
    bool all = true;
    for (const auto& bound : handlers) {
        struct State {
            std::mutex m;
            std::condition_variable cv;
            bool done = false;
        };
        auto state = std::make_shared<State>();
        std::thread t([state, bound, host, mode = std::string(mode), grace_sec] {
            RequestContext rc;
            CallContext c(*host, rc, mode);
            CallScope scope(*bound.module, "shutdown", "");
            try {
                bound.cb.fn(bound.cb.user_data, c.get(), bound.module->logger(),
                            bound.module->module(), grace_sec);
            } catch (...) {
                bound.module->fault("shutdown", "", kEscaped);
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
            all = false;
        }
    }
    return all;
}

}  // namespace

// ---- inotify watcher ----------------------------------------------------------------------

// Watches runtime.path and its subfolders (new ones included) and reports what happened to
// plugin files. Used by the reloader thread only.
class Runtime::Watcher {
  public:
    enum class Kind { created, written, closed, moved_in, removed, rescan };
    struct Change {
        fs::path path;
        Kind kind;
    };

    explicit Watcher(fs::path root) : root_(std::move(root)) {
        fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (fd_ < 0)
            throw std::runtime_error(std::string("inotify_init1: ") + std::strerror(errno));
        add_tree(root_, nullptr);
    }
    ~Watcher() {
        if (fd_ >= 0)
            ::close(fd_);
    }
    Watcher(const Watcher&) = delete;
    Watcher& operator=(const Watcher&) = delete;

    int fd() const { return fd_; }

    // Drains the events available now.
    std::vector<Change> read() {
        std::vector<Change> out;
        alignas(inotify_event) char buf[16384];
        for (;;) {
            const ssize_t n = ::read(fd_, buf, sizeof buf);
            if (n <= 0)
                break;
            for (ssize_t off = 0; off < n;) {
                const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
                off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
                handle(*ev, out);
            }
        }
        return out;
    }

  private:
    static constexpr std::uint32_t kMask = IN_CREATE | IN_MODIFY | IN_CLOSE_WRITE | IN_MOVED_TO |
                                           IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF |
                                           IN_MOVE_SELF | IN_EXCL_UNLINK | IN_ONLYDIR;

    void handle(const inotify_event& ev, std::vector<Change>& out) {
        if (ev.mask & IN_Q_OVERFLOW) {
            out.push_back({root_, Kind::rescan});
            return;
        }
        if (ev.mask & IN_IGNORED) {
            dirs_.erase(ev.wd);
            return;
        }
        const auto dir = dirs_.find(ev.wd);
        if (dir == dirs_.end())
            return;
        if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
            if (dir->second == root_)
                out.push_back({root_, Kind::rescan});
            return;
        }
        if (ev.len == 0)
            return;
        const fs::path path = dir->second / ev.name;
        if (ev.mask & IN_ISDIR) {
            if (is_hidden(path.filename()))
                return;
            if (ev.mask & (IN_CREATE | IN_MOVED_TO))
                add_tree(path, &out);  // a new subfolder: watch it, report what it holds
            else if (ev.mask & (IN_MOVED_FROM | IN_DELETE))
                out.push_back({root_, Kind::rescan});  // its files left without their own events
            return;
        }
        if (!is_module_file(root_, path))
            return;
        if (ev.mask & IN_CREATE)
            out.push_back({path, Kind::created});
        if (ev.mask & IN_MODIFY)
            out.push_back({path, Kind::written});
        if (ev.mask & IN_CLOSE_WRITE)
            out.push_back({path, Kind::closed});
        if (ev.mask & IN_MOVED_TO)
            out.push_back({path, Kind::moved_in});
        if (ev.mask & (IN_DELETE | IN_MOVED_FROM))
            out.push_back({path, Kind::removed});
    }

    // Watches `dir` and every non-hidden folder below it; with `found`, reports the plugin
    // files already there (written before the watch existed) as moved in.
    void add_tree(const fs::path& dir, std::vector<Change>* found) {
        const int wd = ::inotify_add_watch(fd_, dir.c_str(), kMask);
        if (wd < 0) {
            spdlog::warn("Cannot watch {} for module changes: {}", dir.string(),
                         std::strerror(errno));
            return;
        }
        dirs_[wd] = dir;
        std::error_code ec;
        for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
            const fs::path& p = it->path();
            if (is_hidden(p.filename()))
                continue;
            if (it->is_directory(ec))
                add_tree(p, found);
            else if (found != nullptr && it->is_regular_file(ec) && has_so_extension(p))
                found->push_back({p, Kind::moved_in});
        }
    }

    fs::path root_;
    int fd_ = -1;
    std::unordered_map<int, fs::path> dirs_;
};

// ---- runtime ------------------------------------------------------------------------------

Runtime::Runtime(Options options, Dependencies deps)
    : host_(std::make_shared<HostServices>(std::move(options), std::move(deps.version))) {
    host_->events.store(deps.events, std::memory_order_release);
    host_->accounts = deps.accounts;
    host_->storage = deps.storage;
    host_->metrics = deps.metrics;
    host_->json = counted_json_limits(host_->options.max_json_depth, deps.metrics);
    snapshot_.store(std::make_shared<const Snapshot>());
    if (host_->options.stuck_call_ms > 0)
        watchdog_ = std::make_unique<CallWatchdog>(
            std::chrono::milliseconds(host_->options.stuck_call_ms), deps.metrics);
}

Runtime::~Runtime() {
    stop_reloader(std::chrono::milliseconds(0));
    // Drop our references; generations still held by running calls unload when those return.
    handler_source_.publish({});
    snapshot_.store(std::make_shared<const Snapshot>());
}

void Runtime::set_event_sink(events::EventSink* sink) {
    host_->events.store(sink, std::memory_order_release);
}

void Runtime::set_on_publish(std::function<void()> fn) {
    std::lock_guard lock(control_mutex_);
    on_publish_ = std::move(fn);
}

std::shared_ptr<const Runtime::Snapshot> Runtime::snapshot() const {
    return snapshot_.load();
}

namespace {
// Size and mtime of `file` (hash left 0); nullopt when it cannot be read.
template <class Fp>
std::optional<Fp> stat_file(const fs::path& file) {
    std::error_code ec;
    Fp fp;
    fp.size = fs::file_size(file, ec);
    if (ec)
        return std::nullopt;
    fp.mtime = fs::last_write_time(file, ec);
    if (ec)
        return std::nullopt;
    return fp;
}
}  // namespace

Status Runtime::load_all() {
    const fs::path root = effective_module_path(host_->options);
    std::error_code ec;
    if (!fs::exists(root, ec)) {
        // Nakama creates runtime.path when missing; say so (a typo in the path loads nothing).
        if (fs::create_directories(root, ec)) {
            spdlog::warn("runtime.path {} did not exist; created it (no plugins to load)",
                         root.string());
        } else if (ec) {
            spdlog::warn("runtime.path {} does not exist and cannot be created: {}",
                         root.string(), ec.message());
        }
    }
    if (const auto removed = remove_stale_module_copies(module_copies_dir(host_->options))) {
        spdlog::info("Removed private module copies left by stopped processes count={}", removed);
    }

    std::lock_guard control(control_mutex_);
    std::map<fs::path, Loaded> loaded;
    std::vector<ModuleReport> reports;
    for (const fs::path& file : find_module_files(root)) {
        auto gen = std::make_shared<ModuleGeneration>(host_, file, next_generation_++);
        ModuleReport report;
        report.path = file;
        report.name = gen->name();
        const auto fp = stat_file<Fingerprint>(file);
        if (on_loading_)
            on_loading_(file);
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
        Fingerprint f = fp.value_or(Fingerprint{});
        f.hash = gen->content_hash();
        count_reload(gen->name(), ReloadResult::loaded, gen->generation());
        loaded[file] = {std::move(gen), f};
    }
    loaded_ = std::move(loaded);
    publish_loaded();
    std::lock_guard lock(reports_mutex_);
    reports_ = std::move(reports);
    return Status::ok();
}

std::vector<ModuleReport> Runtime::reports() const {
    std::lock_guard lock(reports_mutex_);
    return reports_;
}

void Runtime::set_on_loading(std::function<void(const fs::path&)> fn) {
    std::lock_guard lock(control_mutex_);
    on_loading_ = std::move(fn);
}

std::vector<Runtime::RpcConflict> Runtime::rpc_conflicts() const {
    std::lock_guard lock(control_mutex_);
    return rpc_conflicts_;
}

std::size_t Runtime::module_count() const {
    return snapshot()->modules.size();
}

std::uint64_t Runtime::module_generation(std::string_view name) const {
    for (const auto& m : snapshot()->modules) {
        if (m->name() == name)
            return m->generation();
    }
    return 0;
}

std::size_t Runtime::retiring() const {
    std::lock_guard lock(retire_mutex_);
    return retiring_ + pending_retirements_.load();
}

std::shared_ptr<ModuleGeneration> Runtime::current_of(const fs::path& file) const {
    std::lock_guard lock(control_mutex_);
    const auto it = loaded_.find(file);
    return it == loaded_.end() ? nullptr : it->second.generation;
}

void Runtime::count_reload(const std::string& module, ReloadResult r, std::uint64_t generation) {
    if (host_->metrics == nullptr)
        return;
    host_->metrics
        ->counter("module_reloads",
                  "Module loads and reloads by module and result (loaded, unchanged, refused, "
                  "pending, unloaded)",
                  {{"module", module}, {"result", to_string(r)}})
        .inc();
    if (r == ReloadResult::loaded || r == ReloadResult::unloaded) {
        host_->metrics
            ->gauge("module_generation",
                    "Generation number of the module's code now serving (0: not loaded)",
                    {{"module", module}})
            .set(static_cast<std::int64_t>(r == ReloadResult::loaded ? generation : 0));
    }
}

ReloadResult Runtime::reload_locked(const fs::path& file, bool created,
                                    std::vector<Retiring>& retire) {
    const std::string name = file.stem().string();
    const auto it = loaded_.find(file);
    const std::string keeps =
        it == loaded_.end()
            ? std::string("nothing loaded from it")
            : fmt::format("generation {} keeps serving", it->second.generation->generation());
    auto fp = stat_file<Fingerprint>(file);
    if (!fp) {
        std::error_code ec;
        if (fs::exists(file, ec) || ec) {
            spdlog::error("Module {}: reload of {} refused, {}: cannot read the file", name,
                          file.string(), keeps);
            count_reload(name, ReloadResult::refused, 0);
            return ReloadResult::refused;
        }
        if (it == loaded_.end())
            return ReloadResult::unchanged;
        spdlog::info("Module {}: {} removed; generation {} unloaded", name, file.string(),
                     it->second.generation->generation());
        retire.push_back({it->second.generation, false, Clock::now()});
        loaded_.erase(it);
        count_reload(name, ReloadResult::unloaded, 0);
        return ReloadResult::unloaded;
    }

    auto gen = std::make_shared<ModuleGeneration>(host_, file, next_generation_++);
    if (Status st = gen->stage(); !st) {
        spdlog::error("Module {}: reload of {} refused, {}: {}", name, file.string(), keeps,
                      st.message());
        count_reload(name, ReloadResult::refused, 0);
        return ReloadResult::refused;
    }
    if (it != loaded_.end() && it->second.fingerprint.hash == gen->content_hash()) {
        it->second.fingerprint = *fp;
        it->second.fingerprint.hash = gen->content_hash();
        spdlog::debug("Module {}: {} rewritten with the same content; nothing to reload", name,
                      file.string());
        return ReloadResult::unchanged;
    }
    const auto started = Clock::now();
    if (Status st = gen->load(); !st) {
        if (gen->incomplete() && created) {
            spdlog::info(
                "Module {}: {} is incomplete ({}); waiting for its writer to finish, {}", name,
                file.string(), st.message(), keeps);
            count_reload(name, ReloadResult::pending, 0);
            return ReloadResult::pending;
        }
        spdlog::error("Module {}: reload of {} refused, {}: {}", name, file.string(), keeps,
                      st.message());
        count_reload(name, ReloadResult::refused, 0);
        return ReloadResult::refused;
    }
    const auto registered = gen->describe();
    spdlog::info("Module {}: generation {} loaded from {} in {} ms (ABI {}.{}): {}", name,
                 gen->generation(), file.string(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started)
                     .count(),
                 gen->abi().major, gen->abi().minor,
                 registered.empty() ? std::string("nothing registered")
                                    : fmt::format("{}", fmt::join(registered, ", ")));
    fp->hash = gen->content_hash();
    count_reload(name, ReloadResult::loaded, gen->generation());
    if (it != loaded_.end()) {
        retire.push_back({it->second.generation, true, Clock::now()});
        it->second = {std::move(gen), *fp};
    } else {
        loaded_[file] = {std::move(gen), *fp};
    }
    return ReloadResult::loaded;
}

void Runtime::finish_reloads(std::vector<Retiring> retire) {
    if (retire.empty())
        return;
    {
        std::lock_guard lock(retire_mutex_);
        const std::size_t n = retire.size();
        for (auto& r : retire) {
            const auto successor = r.replaced ? current_of(r.generation->source()) : nullptr;
            if (successor) {
                spdlog::info("Module {}: generation {} serving; generation {} retiring",
                             r.generation->name(), successor->generation(),
                             r.generation->generation());
            }
            retire_queue_.push_back(std::move(r));
            ++retiring_;
        }
        pending_retirements_.fetch_sub(n);
        show_retiring();
    }
    retire_cv_.notify_all();
}

void Runtime::show_retiring() {
    if (host_->metrics == nullptr)
        return;
    host_->metrics
        ->gauge("module_generations_retiring",
                "Replaced or unloaded module generations not yet unloaded (waiting for their "
                "last call, shutdown handlers or state handoff)")
        .set(static_cast<std::int64_t>(retiring_));
}

ReloadResult Runtime::reload(const fs::path& file) {
    std::vector<Retiring> retire;
    ReloadResult r;
    {
        std::lock_guard lock(control_mutex_);
        r = reload_locked(file, false, retire);
        if (r == ReloadResult::loaded || r == ReloadResult::unloaded)
            publish_loaded(retire.size());
    }
    finish_reloads(std::move(retire));
    return r;
}

std::vector<std::pair<fs::path, ReloadResult>> Runtime::rescan() {
    const fs::path root = effective_module_path(host_->options);
    std::vector<std::pair<fs::path, ReloadResult>> out;
    std::vector<Retiring> retire;
    {
        std::lock_guard lock(control_mutex_);
        std::vector<fs::path> files = find_module_files(root);
        for (const auto& [file, entry] : loaded_) {
            if (!std::binary_search(files.begin(), files.end(), file))
                files.push_back(file);  // gone: unloads
        }
        bool changed = false;
        for (const fs::path& file : files) {
            const auto it = loaded_.find(file);
            if (it != loaded_.end()) {
                const auto fp = stat_file<Fingerprint>(file);
                if (fp && fp->size == it->second.fingerprint.size &&
                    fp->mtime == it->second.fingerprint.mtime) {
                    bool ok = false;
                    if (content_hash_of(file, ok) == it->second.fingerprint.hash && ok)
                        continue;  // same size, mtime and content
                }
            }
            const ReloadResult r = reload_locked(file, false, retire);
            changed = changed || r == ReloadResult::loaded || r == ReloadResult::unloaded;
            if (r != ReloadResult::unchanged)
                out.emplace_back(file, r);
        }
        if (changed)
            publish_loaded(retire.size());
    }
    finish_reloads(std::move(retire));
    spdlog::info("Module rescan of {}: {} file(s) changed", root.string(), out.size());
    return out;
}

void Runtime::request_rescan() {
    rescan_requested_.store(true, std::memory_order_release);
    if (wake_fd_ >= 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }
}

void Runtime::start_reloader() {
    if (reloader_.joinable())
        return;
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0)
        throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    // The watches exist before this returns: a file written right after is seen.
    std::unique_ptr<Watcher> watcher;
    if (host_->options.hot_reload) {
        const fs::path root = effective_module_path(host_->options);
        try {
            watcher = std::make_unique<Watcher>(root);
            spdlog::info("Hot reload on: watching {} (debounce {} ms)", root.string(),
                         host_->options.hot_reload_debounce_ms);
        } catch (const std::exception& e) {
            spdlog::error("Hot reload off: {}", e.what());
        }
    }
    retirer_ = std::thread([this] { retirer_loop(); });
    reloader_ = std::thread(
        [this, w = std::shared_ptr<Watcher>(std::move(watcher))]() mutable { reloader_loop(std::move(w)); });
}

void Runtime::stop_reloader(std::chrono::milliseconds grace) {
    if (!reloader_.joinable() && !retirer_.joinable())
        return;
    stopping_.store(true, std::memory_order_release);
    if (wake_fd_ >= 0) {
        const std::uint64_t one = 1;
        [[maybe_unused]] const ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }
    if (reloader_.joinable())
        reloader_.join();
    {
        std::unique_lock lock(retire_mutex_);
        retire_cv_.wait_for(lock, grace, [&] { return retiring_ == 0; });
        if (retiring_ != 0) {
            spdlog::warn(
                "{} retired module generation(s) still in use at shutdown; they unload when "
                "their last call returns",
                retiring_);
        }
        retirer_stop_ = true;
    }
    retire_cv_.notify_all();
    if (retirer_.joinable())
        retirer_.join();
    if (wake_fd_ >= 0) {
        ::close(wake_fd_);
        wake_fd_ = -1;
    }
}

void Runtime::reloader_loop(std::shared_ptr<Watcher> watcher) {
    const auto debounce = std::chrono::milliseconds(host_->options.hot_reload_debounce_ms);
    struct FileState {
        std::optional<Clock::time_point> due;  // none: waiting for a writer to close the file
        bool writer_open = false;              // created/modified, not yet closed
        bool created = false;                  // (re)created since it was last loaded
    };
    std::map<fs::path, FileState> files;
    while (!stopping_.load(std::memory_order_acquire)) {
        int timeout_ms = -1;
        const auto now = Clock::now();
        for (const auto& [path, st] : files) {
            if (!st.due)
                continue;
            const auto left =
                std::chrono::ceil<std::chrono::milliseconds>(*st.due - now).count();
            const int ms = static_cast<int>(std::clamp<std::int64_t>(left, 0, 60'000));
            timeout_ms = timeout_ms < 0 ? ms : std::min(timeout_ms, ms);
        }
        pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {watcher ? watcher->fd() : -1, POLLIN, 0}};
        const int n = ::poll(fds, watcher ? 2 : 1, timeout_ms);
        if (n < 0 && errno != EINTR) {
            spdlog::error("Module reloader: poll failed: {}", std::strerror(errno));
            break;
        }
        if (stopping_.load(std::memory_order_acquire))
            break;
        bool rescan_now = false;
        if (n > 0 && (fds[0].revents & POLLIN)) {
            std::uint64_t value = 0;
            [[maybe_unused]] const ssize_t r = ::read(wake_fd_, &value, sizeof value);
            rescan_now = rescan_requested_.exchange(false, std::memory_order_acq_rel);
            if (rescan_now)
                spdlog::info("Module rescan requested (SIGHUP)");
        }
        if (watcher && n > 0 && (fds[1].revents & POLLIN)) {
            for (const auto& change : watcher->read()) {
                if (change.kind == Watcher::Kind::rescan) {
                    rescan_now = true;
                    continue;
                }
                auto [it, fresh] = files.try_emplace(change.path);
                FileState& st = it->second;
                if (fresh)
                    spdlog::info("Module file change detected: {}", change.path.string());
                st.due = Clock::now() + debounce;
                switch (change.kind) {
                    case Watcher::Kind::created:
                        st.created = true;
                        st.writer_open = true;
                        break;
                    case Watcher::Kind::written:
                        st.writer_open = true;
                        break;
                    case Watcher::Kind::closed:
                    case Watcher::Kind::moved_in:
                    case Watcher::Kind::removed:
                        st.writer_open = false;
                        break;
                    case Watcher::Kind::rescan:
                        break;
                }
            }
        }
        if (rescan_now) {
            rescan();
            files.clear();  // the rescan saw everything
            continue;
        }
        // Files quiet for the debounce window, whose writer has closed them, reload together.
        std::vector<fs::path> due;
        const auto t = Clock::now();
        for (auto& [path, st] : files) {
            if (!st.due || *st.due > t)
                continue;
            if (st.writer_open) {
                spdlog::info("Module file {} still open for writing; waiting for it to close",
                             path.string());
                st.due.reset();
                continue;
            }
            due.push_back(path);
        }
        if (due.empty())
            continue;
        std::vector<Retiring> retire;
        {
            std::lock_guard lock(control_mutex_);
            bool changed = false;
            for (const auto& path : due) {
                FileState& st = files[path];
                const ReloadResult r = reload_locked(path, st.created, retire);
                changed = changed || r == ReloadResult::loaded || r == ReloadResult::unloaded;
                if (r == ReloadResult::pending)
                    st.due.reset();  // the next close-write or rename brings it back
                else
                    files.erase(path);
            }
            if (changed)
                publish_loaded(retire.size());
        }
        finish_reloads(std::move(retire));
    }
}

void Runtime::retirer_loop() {
    // Generations wait here until nothing but this list holds them (their last call returned:
    // no snapshot, handler set or running shutdown handler refers to them any more).
    std::vector<Retiring> waiting;
    const auto grace = std::chrono::milliseconds(host_->options.hot_reload_grace_ms);
    for (;;) {
        {
            std::unique_lock lock(retire_mutex_);
            if (waiting.empty()) {
                retire_cv_.wait(lock, [&] { return retirer_stop_ || !retire_queue_.empty(); });
            }
            while (!retire_queue_.empty()) {
                waiting.push_back(std::move(retire_queue_.front()));
                retire_queue_.pop_front();
            }
            if (retirer_stop_) {
                retiring_ -= std::min(retiring_, waiting.size());
                return;  // what is left unloads when its last call returns
            }
        }
        bool progressed = false;
        for (auto it = waiting.begin(); it != waiting.end();) {
            if (it->generation.use_count() > 1) {
                ++it;
                continue;
            }
            retire_one(std::move(*it), grace);
            it = waiting.erase(it);
            progressed = true;
            std::lock_guard lock(retire_mutex_);
            --retiring_;
            show_retiring();
            retire_cv_.notify_all();
        }
        if (!progressed && !waiting.empty()) {
            std::unique_lock lock(retire_mutex_);
            retire_cv_.wait_for(lock, std::chrono::milliseconds(1),
                                [&] { return retirer_stop_ || !retire_queue_.empty(); });
        }
    }
}

void Runtime::retire_one(Retiring r, std::chrono::milliseconds grace) {
    std::shared_ptr<ModuleGeneration> gen = std::move(r.generation);
    const std::string name = gen->name();
    const std::uint64_t number = gen->generation();
    const auto drained_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - r.since).count();
    std::vector<Bound<nk_on_shutdown_fn>> handlers;
    for (const auto& cb : gen->shutdown)
        handlers.push_back({gen, cb});
    const bool finished =
        run_bounded(handlers, host_, r.replaced ? "reload" : "shutdown", grace);
    handlers.clear();

    std::string handoff = "no state handoff";
    if (r.replaced && gen->handoff.save != nullptr && !finished) {
        handoff = "state not handed over: a shutdown handler is still running";
    } else if (r.replaced && gen->handoff.save != nullptr) {
        StringSink blob;
        std::uint32_t version = 0;
        RequestContext rc;
        {
            CallContext c(*host_, rc, "reload");
            CallScope scope(*gen, "handoff", "save");
            try {
                gen->handoff.save(gen->handoff.user_data, c.get(), gen->logger(), gen->module(),
                                  &version, &blob.sink);
            } catch (...) {
                gen->fault("handoff", "save", kEscaped);
            }
        }
        const auto successor = current_of(gen->source());
        if (successor == nullptr || successor->handoff.load == nullptr) {
            handoff = fmt::format("{} bytes of state dropped (no successor takes it)",
                                  blob.text.size());
        } else {
            CallContext c(*host_, rc, "reload");
            nk_status st = NK_INTERNAL;
            CallScope scope(*successor, "handoff", "load");
            try {
                st = successor->handoff.load(successor->handoff.user_data, c.get(),
                                             successor->logger(), successor->module(), version,
                                             {blob.text.data(), blob.text.size()});
            } catch (...) {
                successor->fault("handoff", "load", kEscaped);
            }
            handoff = st == NK_OK
                          ? fmt::format("state handed to generation {} ({} bytes, version {})",
                                        successor->generation(), blob.text.size(), version)
                          : fmt::format("generation {} did not take the state ({} bytes, "
                                        "version {}, status {}): it keeps its own",
                                        successor->generation(), blob.text.size(), version, st);
            if (host_->metrics != nullptr) {
                host_->metrics
                    ->counter("module_handoffs", "State handoffs between module generations",
                              {{"module", name}, {"result", st == NK_OK ? "taken" : "refused"}})
                    .inc();
            }
        }
    }
    const bool last = gen.use_count() == 1;
    gen.reset();  // destroy callbacks, dlclose, private copy deleted (now, or when a stuck
                  // shutdown handler returns)
    spdlog::info("Module {}: generation {} retired ({} ms after the swap; {}){}", name, number,
                 drained_ms, handoff, last ? "" : "; unloads when its shutdown handler returns");
}

Status Runtime::before(const Pin& pin, std::string_view api_id, const RequestContext& ctx,
                       std::string& in_json) {
    // Held until return: keeps the module loaded.
    const auto s = pin ? std::static_pointer_cast<const Snapshot>(pin) : snapshot();
    auto it = s->before.find(api_id);
    if (it == s->before.end())
        return Status::ok();
    const auto& [module, cb] = it->second;
    CallContext c(*host_, ctx, "before");
    StringSink out, err;
    nk_status st = NK_OK;
    CallScope scope(*module, "before", api_id);
    try {
        st = cb.fn(cb.user_data, c.get(), module->logger(), module->module(),
                   {in_json.data(), in_json.size()}, &out.sink, &err.sink);
    } catch (...) {
        module->fault("before", api_id, kEscaped);
        return Status::internal("Error in before hook.");
    }
    if (scope.faulted())  // logged and counted; the plugin's internal text stays in the log
        return Status::internal("Error in before hook.");
    if (st != NK_OK) {
        return Status(code_of(st), err.text.empty()
                                       ? std::string("Request rejected by before hook.")
                                       : std::move(err.text));
    }
    if (!out.text.empty())
        in_json = std::move(out.text);
    return Status::ok();
}


void Runtime::after(const Pin& pin, std::string_view api_id, const RequestContext& ctx,
                    std::string_view out_json, std::string_view in_json) {
    const auto s = pin ? std::static_pointer_cast<const Snapshot>(pin) : snapshot();
    auto it = s->after.find(api_id);
    if (it == s->after.end())
        return;
    const auto& [module, cb] = it->second;
    CallContext c(*host_, ctx, "after");
    StringSink err;
    nk_status st = NK_OK;
    bool logged = false;
    {
        CallScope scope(*module, "after", api_id);
        try {
            st = cb.fn(cb.user_data, c.get(), module->logger(), module->module(),
                       {out_json.data(), out_json.size()}, {in_json.data(), in_json.size()},
                       &err.sink);
        } catch (...) {
            st = NK_INTERNAL;
            module->fault("after", api_id, kEscaped);
            logged = true;
        }
        if (scope.faulted()) {
            st = NK_INTERNAL;
            logged = true;  // fault() logged it, rate-limited
        }
    }
    if (st == NK_OK)
        return;
    if (host_->metrics != nullptr) {
        host_->metrics
            ->counter("after_hook_errors", "After-hook failures (the response is unchanged)",
                      {{"api", std::string(api_id)}})
            .inc();
    }
    if (!logged)
        spdlog::warn("Module {}: after-hook {} failed with code {}: {}", module->name(), api_id, st,
                     err.text);
}

void Runtime::publish_loaded(std::size_t retiring) {
    // The generations this publication replaces count as retiring from this moment: whoever
    // sees the new snapshot (and waits for retiring() == 0) also sees them until they are gone.
    pending_retirements_.fetch_add(retiring);
    std::vector<std::shared_ptr<ModuleGeneration>> modules;
    modules.reserve(loaded_.size());
    for (const auto& [file, entry] : loaded_)  // lexical file order, as at startup
        modules.push_back(entry.generation);
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
            // ABI 1.1: the id as text (formatted here, on the worker, only for handlers) and
            // the receive time. A 1.0 plugin reads none of it (its nk_event ends before).
            char id_text[kUuidTextSize];
            format_uuid_to(e.id, id_text);
            ce.id = {id_text, sizeof id_text};
            const auto received_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                                         e.received_at.time_since_epoch())
                                         .count();
            ce.received_at_seconds = received_ns / 1'000'000'000;
            ce.received_at_nanos = static_cast<int32_t>(received_ns % 1'000'000'000);
            if (ce.received_at_nanos < 0) {  // before 1970: floor, nanos stay 0..999999999
                ce.received_at_seconds -= 1;
                ce.received_at_nanos += 1'000'000'000;
            }
            // A fault (report_fault, or an exception crossing the C ABI) is rethrown for the
            // pipeline, which counts it in event_handler_errors and logs it rate-limited.
            std::string fault;
            {
                CallScope scope(*m, "event", e.name);
                try {
                    cb.fn(cb.user_data, ctx.get(), m->logger(), m->module(), &ce);
                } catch (const std::exception& ex) {
                    fault = fmt::format("{}: {}", kEscaped, ex.what());
                    m->fault("event", e.name, fault);
                } catch (...) {
                    fault = kEscaped;
                    m->fault("event", e.name, fault);
                }
                if (fault.empty() && scope.faulted())
                    fault = scope.fault().empty() ? std::string("failed") : scope.fault();
            }
            if (!fault.empty())
                throw std::runtime_error(fmt::format(
                    "event handler of module {} for event \"{}\" failed: {}", m->name(), e.name,
                    fault));
        };
    };
    std::vector<RpcConflict> conflicts;
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
        for (const auto& [id, cb] : m->rpcs) {
            auto& bound = snap->rpcs[id];
            if (bound.module)
                conflicts.push_back({id, bound.module->source(), m->source()});
            bound = {m, cb};
        }
        for (const auto& cb : m->shutdown)
            snap->shutdown.push_back({m, cb});
        for (const auto& [path, route] : m->http) {
            if (route.prefix.empty()) {
                snap->http_exact[path] = {m, &route};
                continue;
            }
            const std::string& prefix = route.prefix;  // a structured binding: not capturable in C++17
            auto same = std::find_if(snap->http_prefix.begin(), snap->http_prefix.end(),
                                     [&](const auto& e) { return e.first == prefix; });
            if (same != snap->http_prefix.end())
                same->second = {m, &route};  // last registration wins
            else
                snap->http_prefix.emplace_back(route.prefix, BoundRoute{m, &route});
        }
    }
    std::stable_sort(snap->http_prefix.begin(), snap->http_prefix.end(),
                     [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
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
    // A generation replacing its own file's is not a conflict (one generation per file here);
    // each conflict is logged when it first appears, not on every publish.
    for (const auto& c : conflicts) {
        const bool known = std::any_of(rpc_conflicts_.begin(), rpc_conflicts_.end(),
                                       [&](const RpcConflict& o) {
                                           return o.id == c.id && o.earlier == c.earlier &&
                                                  o.later == c.later;
                                       });
        if (!known) {
            spdlog::warn(
                "RPC id \"{}\" is registered by module {} ({}) and by module {} ({}); {} "
                "replaces it (the later module wins), so {}'s RPC {} is never called: rename "
                "one of them",
                c.id, c.earlier.stem().string(), c.earlier.string(), c.later.stem().string(),
                c.later.string(), c.later.stem().string(), c.earlier.stem().string(), c.id);
        }
    }
    rpc_conflicts_ = std::move(conflicts);
    if (on_publish_)
        on_publish_();
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

Runtime::Pin Runtime::pin() const {
    return snapshot();
}

bool Runtime::has_before(const Pin& pin, std::string_view api_id) const {
    const auto* s = pin ? static_cast<const Snapshot*>(pin.get()) : nullptr;
    return s != nullptr ? s->before.find(api_id) != s->before.end() : has_before(api_id);
}

bool Runtime::has_after(const Pin& pin, std::string_view api_id) const {
    const auto* s = pin ? static_cast<const Snapshot*>(pin.get()) : nullptr;
    return s != nullptr ? s->after.find(api_id) != s->after.end() : has_after(api_id);
}

api::RuntimeBridge::HttpTarget Runtime::find_http(const Pin& pin, std::string_view method,
                                                  std::string_view path) const {
    const auto s = pin ? std::static_pointer_cast<const Snapshot>(pin) : snapshot();
    const BoundRoute* bound = s->find_route(path);
    if (bound == nullptr)
        return {};
    const auto& methods = bound->route->methods;
    const bool allowed =
        std::find(methods.begin(), methods.end(), method) != methods.end() ||
        (method == "HEAD" && std::find(methods.begin(), methods.end(), "GET") != methods.end());
    return {allowed ? HttpTarget::Kind::found : HttpTarget::Kind::method_not_allowed,
            bound->route->auth};
}

namespace {
// The nk_http_response a route handler writes into (host side).
struct ResponseWriter {
    api::RuntimeBridge::HttpReply* reply;
    StringSink body;
    nk_http_response c{};

    explicit ResponseWriter(api::RuntimeBridge::HttpReply* r) : reply(r) {
        c.size = sizeof(nk_http_response);
        c.host = this;
        c.set_status = &set_status;
        c.add_header = &add_header;
        c.body = &body.sink;
    }
    static void set_status(nk_http_response* self, int32_t status) {
        auto* w = static_cast<ResponseWriter*>(self->host);
        if (status >= 100 && status <= 599)
            w->reply->status = status;
    }
    static void add_header(nk_http_response* self, nk_str name, nk_str value) {
        auto* w = static_cast<ResponseWriter*>(self->host);
        std::string n(name.ptr != nullptr ? std::string_view(name.ptr, name.len) : "");
        std::string v(value.ptr != nullptr ? std::string_view(value.ptr, value.len) : "");
        std::string lower = lower_id(n);
        if (lower.empty() || lower == "connection" || lower == "content-length" ||
            lower == "transfer-encoding" || lower == "content-encoding" ||
            n.find_first_of("\r\n:") != std::string::npos ||
            v.find_first_of("\r\n") != std::string::npos)
            return;  // framing is the host's; no header injection
        if (lower == "content-type")
            w->reply->content_type = std::move(v);
        else
            w->reply->headers.emplace_back(std::move(n), std::move(v));
    }
};

std::vector<nk_kv> kv_view(const api::RuntimeBridge::Pairs* pairs) {
    std::vector<nk_kv> out;
    if (pairs == nullptr)
        return out;
    out.reserve(pairs->size());
    for (const auto& [k, v] : *pairs)
        out.push_back({{k.data(), k.size()}, {v.data(), v.size()}});
    return out;
}
}  // namespace

Status Runtime::http(const Pin& pin, const RequestContext& ctx, const HttpCall& call,
                     HttpReply& reply) {
    const auto s = pin ? std::static_pointer_cast<const Snapshot>(pin) : snapshot();
    const BoundRoute* bound = s->find_route(call.sub_path);
    if (bound == nullptr)
        return Status::not_found("Not Found");
    const auto& module = bound->module;
    const auto& route = *bound->route;
    CallContext c(*host_, ctx, "http");
    const std::vector<nk_kv> query = kv_view(call.query_params);
    const std::vector<nk_kv> headers = kv_view(call.headers);
    nk_http_request req{};
    req.size = sizeof(nk_http_request);
    req.method = {call.method.data(), call.method.size()};
    req.path = {call.path.data(), call.path.size()};
    req.route = {route.path.data(), route.path.size()};
    req.query = {call.query.data(), call.query.size()};
    req.query_params = query.data();
    req.query_param_count = query.size();
    req.headers = headers.data();
    req.header_count = headers.size();
    req.body = {call.body.data(), call.body.size()};
    HttpReply out;
    ResponseWriter writer(&out);
    StringSink err;
    nk_status st = NK_OK;
    CallScope scope(*module, "http", route.path);
    try {
        st = route.cb.fn(route.cb.user_data, c.get(), module->logger(), module->module(), &req,
                         &writer.c, &err.sink);
    } catch (...) {
        module->fault("http", route.path, kEscaped);
        return Status::internal("Error in HTTP handler.");
    }
    if (scope.faulted())
        return Status::internal("Error in HTTP handler.");
    if (st != NK_OK) {
        return Status(code_of(st), err.text.empty() ? std::string("Error in HTTP handler.")
                                                    : std::move(err.text));
    }
    out.body = std::move(writer.body.text);
    reply = std::move(out);
    return Status::ok();
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
    CallScope scope(*module, "rpc", it->first);
    try {
        st = cb.fn(cb.user_data, c.get(), module->logger(), module->module(),
                   {payload.data(), payload.size()}, &out.sink, &err.sink);
    } catch (...) {
        module->fault("rpc", it->first, kEscaped);
        return Status::internal("Error calling RPC function.");
    }
    if (scope.faulted())
        return Status::internal("Error calling RPC function.");
    if (st != NK_OK) {
        return Status(code_of(st),
                      err.text.empty() ? std::string("Error calling RPC function.") : err.text);
    }
    out_payload = std::move(out.text);
    return Status::ok();
}

bool Runtime::run_shutdown_handlers(std::chrono::milliseconds grace) {
    auto s = snapshot();
    return run_bounded(s->shutdown, host_, "shutdown", grace);
}

}  // namespace nk::runtime
