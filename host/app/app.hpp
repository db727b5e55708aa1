// App: builds every subsystem from a Config, starts them in dependency order
// and shuts them down in the reverse order, bounded by shutdown_grace_sec.
//
// start():    store (schema) -> event pipeline -> plugins (InitModule) -> HTTP listener
//             (+ Prometheus listener). Throws std::runtime_error with one line on failure.
// shutdown(): stop accepting -> stop module reloads -> close realtime sockets (session_end events are queued)
//             -> finish in-flight HTTP requests -> drain the event queue -> plugin
//             shutdown handlers -> blocking pool -> unload plugins.
// Not thread-safe: call start() and shutdown() from one thread (main).
#pragma once

#include <cstdint>
#include <memory>

#include "config/config.hpp"

namespace nk {

class App {
public:
    explicit App(config::Config config);
    ~App();
    App(const App&) = delete;
    App& operator=(const App&) = delete;

    void start();
    void shutdown();
    // After shutdown(): plugin code that never returned still runs on a server thread (an event
    // handler or a shutdown handler past the grace). Destroying the App would wait for it
    // forever; the caller exits the process instead.
    bool left_threads_behind() const;
    // Re-scans runtime.path and reloads changed plugin files (SIGHUP). Returns at once.
    void reload_modules();
    std::uint16_t port() const;          // the API port (valid after start)
    std::uint16_t metrics_port() const;  // 0 when Prometheus is off

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace nk
