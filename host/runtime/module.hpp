// ModuleGeneration: one loaded plugin (a private copy of its .so, opened with
// Boost.DLL) plus everything its InitModule registered.
//
// Lifetime: shared. The registry snapshot and every running call hold a
// shared_ptr, so the library stays mapped while a call is inside it. The
// destructor calls every registration's destroy(user_data), then unloads the
// library, then deletes the private copy.
//
// HostServices: what the nk_module table reaches (event sink, account store,
// metrics, env/node). Shared by all generations; its pointers must outlive
// every generation (main stops the pipeline and the pool before the runtime).
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <boost/dll/shared_library.hpp>

#include "core/context.hpp"
#include "core/json_read.hpp"
#include "core/status.hpp"
#include "log/rate_limit.hpp"
#include "nk/sdk.h"
#include "runtime/options.hpp"

namespace nk::events {
class EventSink;
}
namespace nk::store {
class AccountStore;
class StorageStore;
}
namespace nk::metrics {
class Registry;
class PluginMetrics;
}

namespace nk::runtime {

// FNV-1a 64 of a file's bytes (change detection, not security); `ok` false when unreadable.
std::uint64_t content_hash_of(const std::filesystem::path& file, bool& ok);

// Ids accepted by register_before/register_after.
bool is_known_api_id(std::string_view api_id);

struct HostServices {
    Options options;
    std::string version;        // host version, shown to plugins as ctx.version
    std::vector<nk_kv> env_kv;  // views into options.env
    std::atomic<events::EventSink*> events{nullptr};
    store::AccountStore* accounts = nullptr;
    store::StorageStore* storage = nullptr;  // storage objects and wallets (ABI 1.2)
    metrics::Registry* metrics = nullptr;
    JsonLimits json;  // JSON plugins hand back (nk.account_update_id)

    HostServices(Options o, std::string v);
    ~HostServices();

    // nk.metrics_*: the plugin metrics kept in `metrics`, created on first use (null when the
    // host has no registry). Thread-safe.
    metrics::PluginMetrics* plugin_metrics() const;

  private:
    mutable std::once_flag plugin_metrics_once_;
    mutable std::unique_ptr<metrics::PluginMetrics> plugin_metrics_;
};

// Borrowed C view of a RequestContext for one call.
class CallContext {
  public:
    CallContext(const HostServices& host, const RequestContext& ctx, std::string_view mode);
    const nk_context* get() const { return &c_; }

  private:
    std::vector<nk_kv> vars_;
    nk_context c_{};
};

class ModuleGeneration;

// The plugin callback running on this thread: the host opens one around every call into a
// plugin, so that nk_module.report_fault (ABI 1.2) can name the call, and the host can tell
// afterwards that the plugin's code failed (and answer the call's generic message). Scopes
// nest (a stack through `previous_`); each lives on the calling thread's stack.
class CallScope {
  public:
    // `kind`: "rpc", "before", "after", "http", "event", "shutdown", "handoff"; `target`: the
    // RPC id, hook id, event name or route (borrowed: must outlive the scope).
    CallScope(const ModuleGeneration& module, const char* kind, std::string_view target);
    ~CallScope();
    CallScope(const CallScope&) = delete;
    CallScope& operator=(const CallScope&) = delete;

    // The innermost scope on this thread, or null.
    static CallScope* current();

    const ModuleGeneration& module() const { return module_; }
    const char* kind() const { return kind_; }
    std::string_view target() const { return target_; }
    // The plugin reported a fault during this call (report_fault), and its text.
    bool faulted() const { return faulted_; }
    const std::string& fault() const { return fault_; }
    void set_fault(std::string_view what);

  private:
    const ModuleGeneration& module_;
    const char* kind_;
    std::string_view target_;
    bool faulted_ = false;
    std::string fault_;
    CallScope* previous_;
};

template <class Fn>
struct Callback {
    Fn fn = nullptr;
    void* user_data = nullptr;
};

class ModuleGeneration {
  public:
    ModuleGeneration(std::shared_ptr<HostServices> host, std::filesystem::path source,
                     std::uint64_t generation);
    ~ModuleGeneration();
    ModuleGeneration(const ModuleGeneration&) = delete;
    ModuleGeneration& operator=(const ModuleGeneration&) = delete;

    // Copies the source to a private path and hashes the copy's content (the copy is what gets
    // validated and opened, so a writer still busy with the source cannot race the checks).
    // On error the Status message is the reason (without the file name).
    Status stage();
    // Stages when not yet staged, validates the copy (a complete ELF shared object), opens it,
    // checks the ABI and runs InitModule. On error the Status message is the reason.
    Status load();
    // After a failed load(): the copy was an incomplete ELF (a writer may not be done yet).
    bool incomplete() const { return incomplete_; }
    // FNV-1a 64 of the staged copy's bytes (valid after stage()).
    std::uint64_t content_hash() const { return content_hash_; }

    const std::string& name() const { return name_; }
    const std::filesystem::path& source() const { return source_; }
    std::uint64_t generation() const { return generation_; }
    nk_abi_version abi() const { return abi_; }

    // What InitModule registered (valid after a successful load; read-only afterwards).
    std::vector<Callback<nk_on_event_fn>> events, session_start, session_end;
    std::map<std::string, Callback<nk_on_before_fn>, std::less<>> before;
    std::map<std::string, Callback<nk_on_after_fn>, std::less<>> after;
    std::map<std::string, Callback<nk_on_rpc_fn>, std::less<>> rpcs;
    std::vector<Callback<nk_on_shutdown_fn>> shutdown;
    struct Handoff {
        nk_on_handoff_save_fn save = nullptr;
        nk_on_handoff_load_fn load = nullptr;
        void* user_data = nullptr;
    };
    Handoff handoff;  // ABI 1.1 register_handoff (both null when none)
    struct HttpRoute {
        std::string path;                  // as registered, e.g. "/stats" or "/files/{*}"
        std::string prefix;                // for "/files/{*}": "/files/" (empty: exact route)
        std::vector<std::string> methods;  // upper case, HEAD implied by GET
        std::int32_t auth = NK_HTTP_AUTH_NONE;
        Callback<nk_on_http_fn> cb;
    };
    std::map<std::string, HttpRoute, std::less<>> http;  // ABI 1.1 register_http, by path

    // Human-readable list, e.g. "after UpdateAccount", "rpc echo", "event", for `nkhost check`.
    std::vector<std::string> describe() const;

    const nk_logger* logger() const { return &logger_; }
    const nk_module* module() const { return &module_; }
    const HostServices& host() const { return *host_; }

    // Logs a line tagged with this module's name (what nk_logger does).
    void log(nk_log_level level, std::string_view message, const nk_kv* fields,
             std::size_t count) const;

    // The plugin's own code failed in a call of `kind` on `target` (an exception escaped a
    // handler): counted in plugin_faults{module,call}; logged at most once a second per call
    // (RPC id, hook, route; event handler faults are logged by the event pipeline instead).
    void fault(const char* kind, std::string_view target, std::string_view what) const;

  private:
    struct Owned {
        void* user_data;
        nk_on_destroy_fn destroy;
    };
    nk_status check_registration(const char* what, void* user_data, nk_on_destroy_fn destroy);
    // What every register_* call with one function checks first: check_registration(what), then
    // a function given (else refused: "<label, or what>: no <kind> function (NULL)").
    nk_status admit(const char* what, bool has_fn, std::string_view kind, void* user_data,
                    nk_on_destroy_fn destroy, std::string_view label = {});
    void own(void* user_data, nk_on_destroy_fn destroy);
    // A refused registration: remembers `reason` for last_error (this thread) and, during
    // InitModule, as the reason the module is refused. Returns `st`.
    nk_status refused(nk_status st, std::string reason, void* user_data, nk_on_destroy_fn destroy);
    static void last_error(const nk_initializer*, nk_sink*);
    Status open_and_init();

    static nk_status reg_event(const nk_initializer*, nk_on_event_fn, void*, nk_on_destroy_fn);
    static nk_status reg_session_start(const nk_initializer*, nk_on_event_fn, void*,
                                       nk_on_destroy_fn);
    static nk_status reg_session_end(const nk_initializer*, nk_on_event_fn, void*,
                                     nk_on_destroy_fn);
    static nk_status reg_before(const nk_initializer*, nk_str, nk_on_before_fn, void*,
                                nk_on_destroy_fn);
    static nk_status reg_after(const nk_initializer*, nk_str, nk_on_after_fn, void*,
                               nk_on_destroy_fn);
    static nk_status reg_rpc(const nk_initializer*, nk_str, nk_on_rpc_fn, void*, nk_on_destroy_fn);
    static nk_status reg_shutdown(const nk_initializer*, nk_on_shutdown_fn, void*,
                                  nk_on_destroy_fn);
    static void set_init_error(const nk_initializer*, nk_str);
    static nk_status reg_handoff(const nk_initializer*, nk_on_handoff_save_fn,
                                 nk_on_handoff_load_fn, void*, nk_on_destroy_fn);
    static nk_status reg_http(const nk_initializer*, nk_str, nk_str, std::int32_t, nk_on_http_fn,
                              void*, nk_on_destroy_fn);

    // Declared first: destroyed last (after every destroy(user_data) ran).
    boost::dll::shared_library library_;
    std::shared_ptr<HostServices> host_;
    std::filesystem::path source_;
    std::filesystem::path copy_;
    // With helper libraries (a ".lib" folder beside the source): the folder holding copy_ and
    // its ".lib" copy, <copies>/<name>.<pid>.<generation>.d (empty otherwise).
    std::filesystem::path private_dir_;
    std::string name_;
    std::uint64_t generation_;
    nk_abi_version abi_{0, 0};
    bool staged_ = false;
    bool incomplete_ = false;
    std::uint64_t content_hash_ = 0;

    nk_logger logger_{};
    nk_module module_{};
    nk_initializer initializer_{};

    std::mutex init_mutex_;  // guards the registration state below and the tables above
    bool init_open_ = false;
    std::thread::id init_thread_;
    std::string init_error_;
    std::string refused_;  // the first registration refused during InitModule, and why
    std::vector<Owned> owned_;
    // One log rate limit per kind of failing call (see fault()).
    mutable std::map<std::string, std::unique_ptr<log::RateLimit>, std::less<>> fault_limits_;
    mutable std::mutex fault_mutex_;
};

}  // namespace nk::runtime
