// Runtime: the plugin host. Loads every plugin under runtime.path, keeps
// their registrations in an immutable snapshot (the current set of module
// generations), and serves it to the event pipeline (events::HandlerSource)
// and to the API layer (api::RuntimeBridge: before/after hooks, RPCs).
//
// Wiring (main): Runtime rt(options, deps); EventPipeline pipe(opts, rt, metrics);
// rt.set_event_sink(&pipe); rt.load_all() (fails startup on its Status);
// ... serve ...; rt.run_shutdown_handlers(grace); pipe.drain(...); ~Runtime.
//
// Threading: load_all() and run_shutdown_handlers() from one control thread;
// every other member is thread-safe and may run concurrently with them. Each
// call takes the current snapshot (a shared_ptr) and holds it until it
// returns, so a module generation is unloaded only after its last call.
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

#include "api/runtime_bridge.hpp"
#include "core/status.hpp"
#include "events/handlers.hpp"
#include "runtime/options.hpp"

namespace nk::store {
class AccountStore;
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

class Runtime final : public events::HandlerSource, public api::RuntimeBridge {
  public:
    Runtime(Options options, Dependencies deps);
    ~Runtime() override;
    Runtime(const Runtime&) = delete;
    Runtime& operator=(const Runtime&) = delete;

    // The pipeline is built after the runtime (it takes the HandlerSource).
    void set_event_sink(events::EventSink* sink);

    // Loads every plugin under runtime.path (created when missing) and
    // publishes their registrations. A failing plugin gives an error Status whose
    // message is one line naming the file and the reason, and nothing is
    // published, unless skip_failed_modules (then it is logged and skipped).
    Status load_all();

    // What load_all() did, one entry per file, in load order.
    std::vector<ModuleReport> reports() const;
    std::size_t module_count() const;

    // Runs every shutdown handler (registration order) with mode "shutdown".
    // Waits at most `grace` in total; a handler still running then is left
    // behind (logged) and keeps its module loaded.
    void run_shutdown_handlers(std::chrono::milliseconds grace);

    // events::HandlerSource
    std::shared_ptr<const events::HandlerSet> handlers() const override;
    bool has_handlers(events::Kind k) const override;
    std::uint64_t generation() const override;

    // api::RuntimeBridge
    bool has_before(std::string_view api_id) const override;
    bool has_after(std::string_view api_id) const override;
    Status before(std::string_view api_id, const RequestContext& ctx,
                  std::string& in_json) override;
    void after(std::string_view api_id, const RequestContext& ctx, std::string_view out_json,
               std::string_view in_json) override;
    bool has_rpc(std::string_view id) const override;
    Status rpc(std::string_view id, const RequestContext& ctx, std::string_view payload,
               std::string& out_payload) override;

    struct Snapshot;

  private:
    std::shared_ptr<const Snapshot> snapshot() const;
    void publish(std::vector<std::shared_ptr<ModuleGeneration>> modules);

    // Which api ids have hooks, for has_before/has_after on every request without loading the
    // snapshot (a std::atomic<std::shared_ptr> load takes a lock and bumps a shared count).
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
    std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
    events::StaticHandlerSource handler_source_;
    std::atomic<std::uint64_t> next_generation_{1};

    mutable std::mutex reports_mutex_;
    std::vector<ModuleReport> reports_;
};

}  // namespace nk::runtime
