/* c_minimal: a plugin in plain C99 against nk/sdk.h only — proof that the ABI is C.
 *
 * - counts events in a user_data block freed by its destroy callback,
 * - after UpdateAccount emits "account_updated" (external = 0) with nk->event,
 * - RPC "c_echo" replies with its payload, RPC "c_count" with the event count.
 * Builds as c_minimal.so on Linux and as a Windows DLL with mingw-w64. */
#include <stdio.h>
#include <stdlib.h>

#include "nk/sdk.h"

NK_PLUGIN_ABI()

/* Event handlers run concurrently on several workers: count atomically. */
typedef struct counter {
    long events;
} counter;
#if defined(__GNUC__)
#define COUNTER_ADD(p) __atomic_fetch_add((p), 1, __ATOMIC_RELAXED)
#define COUNTER_GET(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#else
#define COUNTER_ADD(p) (++*(p))
#define COUNTER_GET(p) (*(p))
#endif

static void counter_destroy(void* user_data) {
    free(user_data);
}

static void on_event(void* user_data, const nk_context* ctx, const nk_logger* logger,
                     const nk_module* nk, const nk_event* evt) {
    counter* c = (counter*)user_data;
    nk_kv field;
    (void)ctx;
    (void)nk;
    COUNTER_ADD(&c->events);
    field.key = nk_str_c("name");
    field.value = evt->name;
    logger->debug(logger, nk_str_c("c_minimal saw an event"), &field, 1);
}

static nk_status after_update_account(void* user_data, const nk_context* ctx,
                                      const nk_logger* logger, const nk_module* nk, nk_str out_json,
                                      nk_str in_json, nk_sink* r_error) {
    nk_event evt = {0};
    (void)user_data;
    (void)ctx;
    (void)logger;
    (void)out_json;
    (void)in_json;
    evt.size = sizeof evt;
    evt.name = nk_str_c("account_updated");
    evt.external = 0;
    return nk->event(nk, NULL, &evt, r_error); /* NULL ctx: Go's context.Background() */
}

static nk_status rpc_echo(void* user_data, const nk_context* ctx, const nk_logger* logger,
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

static nk_status rpc_count(void* user_data, const nk_context* ctx, const nk_logger* logger,
                           const nk_module* nk, nk_str payload, nk_sink* r_payload,
                           nk_sink* r_error) {
    char buf[32];
    (void)ctx;
    (void)logger;
    (void)nk;
    (void)payload;
    (void)r_error;
    snprintf(buf, sizeof buf, "%ld", COUNTER_GET(&((counter*)user_data)->events));
    nk_sink_write_c(r_payload, buf);
    return NK_OK;
}

NK_INIT_MODULE_C(ctx, logger, nk, initializer) {
    nk_status st;
    counter* c = (counter*)calloc(1, sizeof(counter));
    (void)ctx;
    (void)nk;
    if (c == NULL)
        return NK_RESOURCE_EXHAUSTED;
    /* The host owns `c` from here on, even if the call fails. */
    st = initializer->register_event(initializer, on_event, c, counter_destroy);
    if (st != NK_OK)
        return st;
    st = initializer->register_after(initializer, nk_str_c(NK_API_UPDATE_ACCOUNT),
                                     after_update_account, NULL, NULL);
    if (st != NK_OK)
        return st;
    st = initializer->register_rpc(initializer, nk_str_c("c_echo"), rpc_echo, NULL, NULL);
    if (st != NK_OK)
        return st;
    st = initializer->register_rpc(initializer, nk_str_c("c_count"), rpc_count, c, NULL);
    if (st != NK_OK)
        return st;
    logger->info(logger, nk_str_c("c_minimal loaded."), NULL, 0);
    return NK_OK;
}
