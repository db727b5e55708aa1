#include <nk/sdk.h>

NK_PLUGIN_ABI()

static void on_event(void* ud, const nk_context* ctx, const nk_logger* logger, const nk_module* nk,
                     const nk_event* evt) {
    (void)ud;
    (void)ctx;
    (void)logger;
    (void)nk;
    (void)evt;
}

NK_INIT_MODULE_C(ctx, logger, nk, initializer) {
    (void)ctx;
    (void)logger;
    (void)nk;
    return initializer->register_event(initializer, on_event, NULL, NULL);
}
