// Plugin for bench_abi: the cheapest useful handlers, through the C++ wrapper
// and as raw C functions, so the bench measures the crossing itself.
#include <atomic>

#include "nk/sdk.hpp"

namespace {
std::atomic<long> calls{0};

void raw_event(void*, const nk_context*, const nk_logger*, const nk_module*, const nk_event* evt) {
    if (evt->name.len != 0)
        calls.fetch_add(1, std::memory_order_relaxed);
}
nk_status raw_after(void*, const nk_context*, const nk_logger*, const nk_module*, nk_str,
                    nk_str in_json, nk_sink*) {
    if (in_json.len != 0)
        calls.fetch_add(1, std::memory_order_relaxed);
    return NK_OK;
}
}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    // handlers()->custom[0]: wrapped; custom[1]: raw C.
    if (auto err =
            initializer.RegisterEvent([](const nk::Context&, nk::Logger&, const nk::Event& evt) {
                if (!evt.name.empty())
                    calls.fetch_add(1, std::memory_order_relaxed);
            }))
        return err;
    initializer.raw()->register_event(initializer.raw(), &raw_event, nullptr, nullptr);
    // UpdateAccount: wrapped (typed request parsed from JSON); Event: raw C.
    if (auto err = initializer.RegisterAfterUpdateAccount(
            [](const nk::Context&, nk::Logger&, nk::Module&, const nk::UpdateAccountRequest& in) {
                if (in.display_name)
                    calls.fetch_add(1, std::memory_order_relaxed);
                return nk::Error();
            }))
        return err;
    initializer.raw()->register_after(initializer.raw(), nk_str_c(NK_API_EVENT), &raw_after,
                                      nullptr, nullptr);
    return {};
}
