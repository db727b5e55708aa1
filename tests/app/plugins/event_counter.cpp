// Test plugin: counts the custom events it handles and, when the server shuts
// down (after the event queue has drained), logs "event_counter handled=<N>".
#include <atomic>
#include <cstdint>
#include <string>

#include "nk/sdk.hpp"

namespace {
std::atomic<long> handled{0};
}

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    if (auto err = initializer.RegisterEvent(
            [](const nk::Context&, nk::Logger&, const nk::Event&) { handled.fetch_add(1); }))
        return err;
    return initializer.RegisterShutdown([](const nk::Context&, nk::Logger& log, nk::Module&, std::int64_t) {
        log.Info("event_counter handled=%ld", handled.load());
    });
}
