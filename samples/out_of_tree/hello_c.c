/* A complete plain-C plugin (nk/sdk.h only, no other dependency): RPC "hello_c" echoes its
 * payload. */
#include <nk/sdk.h>

NK_PLUGIN_ABI()

static nk_status hello_c(void* user_data, const nk_context* ctx, const nk_logger* logger,
                         const nk_module* nk, nk_str payload, nk_sink* r_payload,
                         nk_sink* r_error) {
    (void)user_data;
    (void)ctx;
    (void)logger;
    (void)nk;
    (void)r_error;
    nk_sink_write(r_payload, payload.ptr, payload.len);
    return NK_OK;
}

NK_INIT_MODULE_C(ctx, logger, nk, initializer) {
    (void)ctx;
    (void)nk;
    logger->info(logger, nk_str_c("hello_c plugin loaded"), NULL, 0);
    return initializer->register_rpc(initializer, nk_str_c("hello_c"), hello_c, NULL, NULL);
}
