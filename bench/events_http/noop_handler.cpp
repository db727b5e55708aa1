// Benchmark plugin: one event handler that does nothing, so the figures show
// the server's own cost (JWT, decode, enqueue, dispatch through the ABI).
#include "nk/sdk.hpp"

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    return initializer.RegisterEvent([](const nk::Context&, nk::Logger&, const nk::Event&) {});
}
