/* A plugin built against the frozen ABI 1.0 header that emits events: its nk_event is the
 * 1.0 size, so the host must read nothing past it (the event is allocated with exactly that
 * size, so AddressSanitizer reports any read beyond) and still give the event an id.
 * RPC "emit_1_0": emits a custom event named by the payload. */
#include <stdlib.h>
#include <string.h>

#include "nk/sdk.h"

#if NK_ABI_VERSION_MAJOR != 1 || NK_ABI_VERSION_MINOR != 0
#error "emit_1_0 must be built against the frozen ABI 1.0 header"
#endif

NK_PLUGIN_ABI()

static nk_status emit(void* ud, const nk_context* ctx, const nk_logger* logger,
                      const nk_module* nk, nk_str payload, nk_sink* r_payload, nk_sink* r_error) {
    (void)ud;
    (void)logger;
    nk_event* evt = (nk_event*)malloc(sizeof(nk_event));
    if (evt == NULL)
        return NK_INTERNAL;
    memset(evt, 0, sizeof(nk_event));
    evt->size = sizeof(nk_event);
    evt->kind = NK_EVENT_CUSTOM;
    evt->name = payload;
    nk_status st = nk->event(nk, ctx, evt, r_error);
    free(evt);
    if (st == NK_OK)
        nk_sink_write_c(r_payload, "sent");
    return st;
}

NK_INIT_MODULE_C(ctx, logger, nk, initializer) {
    (void)ctx;
    (void)logger;
    (void)nk;
    return initializer->register_rpc(initializer, nk_str_c("emit_1_0"), emit, NULL, NULL);
}
