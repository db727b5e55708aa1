// Runtime: the plugin host. Loads every plugin under runtime.path, keeps
// their registrations in an immutable snapshot (the current set of module
// generations), and serves it to the event pipeline (events::HandlerSource)
// and to the API layer (api::RuntimeBridge: before/after hooks, RPCs).
//
// Wiring (main): Runtime rt(options, deps); EventPipeline pipe(opts, rt, metrics);
// rt.set_event_sink(&pipe); rt.set_on_publish([&] { pipe.handlers_changed(); });
// rt.load_all() (fails startup on its Status); rt.start_reloader(); ... serve ...;
// rt.stop_reloader(grace); pipe.drain(...); rt.run_shutdown_handlers(grace); ~Runtime.
//
// Hot reload: the reloader thread watches runtime.path with inotify (runtime.hot_reload) and
// takes rescan requests (SIGHUP). A changed file is staged (private copy), validated and
// initialised as a new generation on its own; only when all of that succeeded is a new
// snapshot published, with the new generation in place of the old one (all or nothing). The
// old generation is then retired on the retirer thread: once its last call returned, its
// shutdown handlers run (mode "reload"), its state is handed to its successor, and it unloads.
//
// Threading: load_all(), rescan() and the reloader serialise on one control mutex; every other
// member is thread-safe and may run concurrently with them. Each call takes the current
// snapshot (a shared_ptr) and holds it until it returns, so a module generation is unloaded
// only after its last call.
// Lifetime: the event sink, account store and metrics registry must outlive
// every call into plugin code (stop the pipeline and the pool before the runtime).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <condition_variable>
#include <deque>
#include <functional>
#include <optional>
#include <thread>

#include "api/runtime_bridge.hpp"
#include "core/shared_slot.hpp"
#include "core/status.hpp"
#include "events/handlers.hpp"
#include "runtime/call_watch.hpp"
#include "runtime/options.hpp"

namespace nk::store {
class AccountStore;
class StorageStore;
}
namespace nk::metrics {
class Registry;
}

namespace nk::runtime {

class ModuleGeneration;
struct HostServices;

struct Dependencies {
    events::EventSink* events = nullptr;      // nk.event target; may be set later (set_event_sink)
    store::AccountStore* accounts = nullptr;  // nk.account_*; null -> NK_UNIMPLEMENTED
    store::StorageStore* storage = nullptr;   // nk.storage_*, nk.wallet_*; null -> NK_UNIMPLEMENTED
    metrics::Registry* metrics = nullptr;     // after_hook_errors{api}; null -> not counted
    std::string version = "0.1.0";            // ctx.version seen by plugins
};

// One plugin file and what happened to it (for `nkhost check` and logs).
struct ModuleReport {
    std::filesystem::path path;
    std::string name;
    bool loaded = false;
    std::string error;  // the reason when !loaded
    std::uint32_t abi_major = 0, abi_minor = 0;
    std::vector<std::string> registered;  // "after UpdateAccount", "rpc echo", ...
};

// Plugin files under `root`: *.so (case-insensitive), recursive, lexical order,
// hidden files and directories skipped. Missing root -> empty list.
std::vector<std::filesystem::path> find_module_files(const std::filesystem::path& root);

// runtime.path with its default (<data_dir>/modules, data_dir defaulting to ./data).
std::filesystem::path effective_module_path(const Options& options);

// What a reload of one file did (also the `result` label of module_reloads).
enum class ReloadResult {
    loaded,     // a new generation serves (first load or replacement)
    unchanged,  // same content as the generation serving: nothing done
    refused,    // invalid file or InitModule failure: the old generation (if any) keeps serving
    pending,    // an incomplete file just created: waiting for its writer to finish
    unloaded,   // the file is gone: its registrations are removed
};
const char* to_string(ReloadResult r);

class Runtime final : public events::HandlerSource, public api::RuntimeBridge {
  public:
    Runtime(Options options, Dependencies deps);
    ~Runtime() override;
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    // The pipeline is built after the runtime (it takes the HandlerSource).
    void set_event_sink(events::EventSink* sink);

    // Loads every plugin under runtime.path (created when missing, with a warning, as Nakama
    // does) and publishes their registrations. A failing plugin gives an error Status whose
    // message is one line naming the file and the reason, and nothing is
    // published, unless skip_failed_modules (then it is logged and skipped).
    Status load_all();

    // What load_all() did, one entry per file, in load order.
    std::vector<ModuleReport> reports() const;

    // Called by load_all() with each plugin file before it is opened (`nkhost check` prints
    // it, so that a crash in the plugin's code is attributed). Set before load_all().
    void set_on_loading(std::function<void(const std::filesystem::path&)> fn);

    // An RPC id registered by two modules being served: the later one (lexical file order)
    // replaces the earlier one, whose RPC is never called (Nakama: last registration wins).
    struct RpcConflict {
        std::string id;                 // lower case
        std::filesystem::path earlier;  // the module file whose registration is dead
        std::filesystem::path later;    // the module file serving the id
    };
    // The conflicts of the registrations now served (each is logged once, as a warning).
    std::vector<RpcConflict> rpc_conflicts() const;
    std::size_t module_count() const;

    // Runs every shutdown handler (registration order) with mode "shutdown".
    // Waits at most `grace` in total; a handler still running then is left
    // behind (logged) and keeps its module loaded. False when one was left behind.
    bool run_shutdown_handlers(std::chrono::milliseconds grace);

    // ---- hot reload -------------------------------------------------------------------
    // Called after every publish of a new snapshot (wire EventPipeline::handlers_changed, so
    // idle workers let go of retired generations). Set before start_reloader().
    void set_on_publish(std::function<void()> fn);
    // Starts the reloader (inotify watcher when runtime.hot_reload; rescan requests always)
    // and the retirer. Call after load_all().
    void start_reloader();
    // Asks the reloader to re-scan runtime.path (SIGHUP). Returns at once; async-signal use is
    // not required (main calls it from its sigwait loop).
    void request_rescan();
    // Re-scans runtime.path now: reloads every file whose size, mtime or content changed,
    // loads new files, unloads removed ones. Returns what happened to each file that changed.
    std::vector<std::pair<std::filesystem::path, ReloadResult>> rescan();
    // Reloads (or unloads, when it is gone) one file now, as the watcher does.
    ReloadResult reload(const std::filesystem::path& file);
    // Stops the reloader and finishes pending retirements, waiting at most `grace` for their
    // last calls and shutdown handlers. Idempotent; the destructor calls it.
    void stop_reloader(std::chrono::milliseconds grace);
    // The generation number serving for module `name` (file stem), 0 when none.
    std::uint64_t module_generation(std::string_view name) const;
    // Generations replaced or unloaded whose retirement has not finished.
    std::size_t retiring() const;

    // events::HandlerSource
    std::shared_ptr<const events::HandlerSet> handlers() const override;
    bool has_handlers(events::Kind k) const override;
    std::uint64_t generation() const override;

    // api::RuntimeBridge
    bool has_before(std::string_view api_id) const override;
    bool has_after(std::string_view api_id) const override;
    Pin pin() const override;
    bool has_before(const Pin& pin, std::string_view api_id) const override;
    bool has_after(const Pin& pin, std::string_view api_id) const override;
    Status before(const Pin& pin, std::string_view api_id, const RequestContext& ctx,
                  std::string& in_json) override;
    void after(const Pin& pin, std::string_view api_id, const RequestContext& ctx,
               std::string_view out_json, std::string_view in_json) override;
    HttpTarget find_http(const Pin& pin, std::string_view method,
                         std::string_view path) const override;
    Status http(const Pin& pin, const RequestContext& ctx, const HttpCall& call,
                HttpReply& reply) override;
    bool has_rpc(std::string_view id) const override;
    Status rpc(std::string_view id, const RequestContext& ctx, std::string_view payload,
               std::string& out_payload) override;

    struct Snapshot;

  private:
    struct Fingerprint {
        std::uintmax_t size = 0;
        std::filesystem::file_time_type mtime{};
        std::uint64_t hash = 0;
    };
    struct Loaded {
        std::shared_ptr<ModuleGeneration> generation;
        Fingerprint fingerprint;
    };
    struct Retiring {
        std::shared_ptr<ModuleGeneration> generation;
        bool replaced = false;  // a successor of the same file serves (mode "reload", handoff)
        std::chrono::steady_clock::time_point since;
    };
    class Watcher;

    std::shared_ptr<const Snapshot> snapshot() const;
    // Publishes loaded_ (lexical file order) as the new snapshot. Caller holds control_mutex_.
    void publish_loaded(std::size_t retiring = 0);
    // Reload steps; the caller holds control_mutex_. `created` = the file was (re)created since
    // its last load (an incomplete ELF is then pending rather than refused).
    ReloadResult reload_locked(const std::filesystem::path& file, bool created,
                               std::vector<Retiring>& retire);
    void finish_reloads(std::vector<Retiring> retire);
    void show_retiring();  // module_generations_retiring; caller holds retire_mutex_
    void count_reload(const std::string& module, ReloadResult r, std::uint64_t generation);
    void reloader_loop(std::shared_ptr<Watcher> watcher);
    void retirer_loop();
    void retire_one(Retiring r, std::chrono::milliseconds grace);
    std::shared_ptr<ModuleGeneration> current_of(const std::filesystem::path& file) const;

    // Which api ids have hooks, for has_before/has_after on every request without loading the
    // snapshot (a load takes a lock and bumps a shared count).
    // Indexes are tiny and published only when modules load, so they are kept until the
    // runtime is destroyed: a reader's raw pointer never dangles.
    struct HookIndex {
        std::vector<std::string> before;  // sorted
        std::vector<std::string> after;   // sorted
    };
    std::atomic<const HookIndex*> hook_index_{nullptr};
    std::mutex hook_indexes_mutex_;
    std::vector<std::unique_ptr<const HookIndex>> hook_indexes_;

    std::shared_ptr<HostServices> host_;
    SharedSlot<Snapshot> snapshot_;
    events::StaticHandlerSource handler_source_;
    std::atomic<std::uint64_t> next_generation_{1};

    mutable std::mutex reports_mutex_;
    std::vector<ModuleReport> reports_;

    // Control state: what serves, per file.
    mutable std::mutex control_mutex_;
    std::map<std::filesystem::path, Loaded> loaded_;
    std::function<void()> on_publish_;
    std::function<void(const std::filesystem::path&)> on_loading_;
    std::vector<RpcConflict> rpc_conflicts_;  // of the published snapshot

    // Reloader thread: inotify (when hot_reload) + rescan requests, woken through an eventfd.
    std::unique_ptr<CallWatchdog> watchdog_;  // null when runtime.stuck_call_ms is 0
    std::thread reloader_;
    int wake_fd_ = -1;
    std::atomic<bool> stopping_{false};
    std::atomic<bool> rescan_requested_{false};

    // Retirer thread.
    mutable std::mutex retire_mutex_;
    std::condition_variable retire_cv_;
    std::deque<Retiring> retire_queue_;
    std::size_t retiring_ = 0;  // queued + in progress
    // Replaced by a published snapshot, not yet queued (finish_reloads runs after the control
    // lock is released).
    std::atomic<std::size_t> pending_retirements_{0};
    bool retirer_stop_ = false;
    std::thread retirer_;
};

}  // namespace nk::runtime
