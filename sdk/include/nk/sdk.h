/*
 * nk/sdk.h — the stable C ABI between nkhost and its plugins.
 *
 * Plain C99, no dependencies beyond <stddef.h> and <stdint.h>. A plugin is a
 * shared library (.so, .dll on Windows) that exports two symbols:
 *
 *   NK_PLUGIN_ABI()   defines `nk_plugin_abi`, a function returning the ABI
 *                     version the plugin was compiled against. The host calls
 *                     it BEFORE InitModule and refuses the plugin unless the
 *                     major versions are equal and plugin minor <= host minor.
 *   InitModule        nk_status InitModule(const nk_context*, const nk_logger*,
 *                     const nk_module*, const nk_initializer*); 0 (NK_OK) = success.
 *
 * RULES OF THIS HEADER (never broken, see docs/abi.md):
 *  - Every table and struct starts with a `size` field (bytes, set by whoever
 *    fills it). Structs only grow at the end; a field or signature never
 *    changes meaning (add `foo_v2` instead). Test for a slot that may be
 *    missing with NK_HAS_FIELD(table_ptr, type, field).
 *  - Adding a slot bumps NK_ABI_VERSION_MINOR; anything else bumps the major.
 *  - Strings are `nk_str` views {ptr, len}: not NUL-terminated, may contain any
 *    byte. Maps are arrays of nk_kv.
 *  - OWNERSHIP: everything the host passes in is BORROWED and valid only for
 *    the duration of the call, unless stated otherwise. Data flowing out of a
 *    call (RPC replies, rewritten requests, error messages) is written into a
 *    host-provided nk_sink, which copies it: nothing allocated on one side is
 *    ever freed on the other.
 *  - Statuses, never exceptions, cross the boundary. A C++ plugin must catch
 *    everything in its callbacks (sdk.hpp does it for you).
 *  - Direction prefixes: `nk_on_*` types are implemented by the plugin and
 *    called by the host; table slots (nk_logger, nk_module, nk_initializer)
 *    are implemented by the host and called by the plugin.
 *  - Static constructors run inside dlopen, before the host has checked the
 *    ABI: do no work in them (no threads, no I/O, no registration).
 *
 * THREADING (the whole contract):
 *  - InitModule runs once, on the loading thread, before any other callback.
 *  - Event handlers run on event worker threads: different events run
 *    CONCURRENTLY on several workers; all handlers of one event run in order on
 *    one worker. There is no ordering between events.
 *  - Before/after hooks, RPC functions and HTTP route handlers run on the host's blocking pool,
 *    CONCURRENTLY with each other and with event handlers.
 *  - Shutdown handlers run once per module generation, on a host control thread:
 *    during graceful shutdown (ctx execution_mode "shutdown"), or when the
 *    generation is retired (hot reload, SIGHUP): with mode "reload" when a new
 *    generation of the same file replaces it (its state handoff follows), with
 *    mode "shutdown" when the file was removed. They run after the
 *    generation's last other callback returned and must return within the
 *    grace they are given (runtime.hot_reload_grace_ms on a reload).
 *  - State handoff (ABI 1.1): see register_handoff.
 *  - So every user_data must be safe for concurrent use by the plugin itself.
 *  - The nk_logger, nk_module and nk_initializer pointers given to InitModule
 *    (and to callbacks) stay valid until the module is unloaded and may be used
 *    from any thread. nk_context / nk_event / nk_str arguments are valid only
 *    during the call that received them.
 *  - A registration's `destroy(user_data)` (optional, may be NULL) is called
 *    exactly once, when the module is unloaded or fails to load, after the last
 *    call into any of its callbacks has returned, never concurrently with them.
 */
#ifndef NK_SDK_H
#define NK_SDK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- versions ------------------------------------------------------------ */

#define NK_ABI_VERSION_MAJOR 1
#define NK_ABI_VERSION_MINOR 2

/* Returned by the plugin's `nk_plugin_abi` export. */
typedef struct nk_abi_version {
    uint32_t major;
    uint32_t minor;
} nk_abi_version;

/* Name of the ABI info symbol (for hosts and tools). */
#define NK_ABI_SYMBOL "nk_plugin_abi"
#define NK_INIT_SYMBOL "InitModule"

/* ---- export macros ------------------------------------------------------- */

#if defined(_WIN32) || defined(__CYGWIN__)
#define NK_EXPORT __declspec(dllexport)
#else
#define NK_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
#define NK_EXTERN_C extern "C"
#else
#define NK_EXTERN_C
#endif

/* Put NK_PLUGIN_ABI() once in one source file of the plugin. */
#define NK_PLUGIN_ABI()                                                      \
    NK_EXTERN_C NK_EXPORT nk_abi_version nk_plugin_abi(void) {               \
        nk_abi_version v;                                                    \
        v.major = NK_ABI_VERSION_MAJOR;                                      \
        v.minor = NK_ABI_VERSION_MINOR;                                      \
        return v;                                                            \
    }

/* True when the table `p` (pointer to struct `type`) is large enough to hold
 * `field`: use it before calling a slot added in a later minor version. */
#define NK_HAS_FIELD(p, type, field) \
    ((p) != NULL && (size_t)(p)->size >= offsetof(type, field) + sizeof(((type*)0)->field))

/* ---- status codes (gRPC codes; the host maps them to HTTP like Nakama) --- */

typedef int32_t nk_status;

#define NK_OK 0
#define NK_CANCELLED 1
#define NK_UNKNOWN 2
#define NK_INVALID_ARGUMENT 3          /* HTTP 400 */
#define NK_DEADLINE_EXCEEDED 4
#define NK_NOT_FOUND 5                 /* HTTP 404 */
#define NK_ALREADY_EXISTS 6            /* HTTP 409 */
#define NK_PERMISSION_DENIED 7         /* HTTP 403 */
#define NK_RESOURCE_EXHAUSTED 8
#define NK_FAILED_PRECONDITION 9       /* HTTP 400 */
#define NK_ABORTED 10
#define NK_OUT_OF_RANGE 11
#define NK_UNIMPLEMENTED 12            /* HTTP 501 */
#define NK_INTERNAL 13                 /* HTTP 500 */
#define NK_UNAVAILABLE 14              /* HTTP 503 */
#define NK_DATA_LOSS 15
#define NK_UNAUTHENTICATED 16          /* HTTP 401 */

/* ---- strings, maps, sinks ------------------------------------------------ */

/* A borrowed byte string. `ptr` may be NULL when `len` is 0. */
typedef struct nk_str {
    const char* ptr;
    size_t len;
} nk_str;

typedef struct nk_kv {
    nk_str key;
    nk_str value;
} nk_kv;

/* Where data flows OUT of a call. `write` copies `len` bytes and APPENDS them
 * to what was written before (call it any number of times). The sink is owned
 * by the host and valid only during the call that received it. */
typedef struct nk_sink {
    void* host; /* opaque, pass back to write */
    void (*write)(void* host, const char* ptr, size_t len);
} nk_sink;

/* ---- context ------------------------------------------------------------- */

/* Who and where a call comes from (Nakama's runtime context keys). Borrowed:
 * valid only during the call that received it; copy what you keep. Empty
 * strings mean "not set". */
typedef struct nk_context {
    uint32_t size;
    nk_str execution_mode;   /* "run_once", "event", "before", "after", "rpc", "shutdown";
                                1.1: "reload" (a reload retires the generation), "http"
                                (a plugin HTTP route) */
    nk_str node;             /* config `name` */
    nk_str version;          /* host version */
    const nk_kv* env;        /* runtime.env */
    size_t env_count;
    nk_str user_id;
    nk_str username;
    const nk_kv* vars;       /* session vars */
    size_t vars_count;
    int64_t user_session_exp; /* unix seconds, 0 when unknown */
    nk_str session_id;       /* realtime sessions only */
    nk_str lang;             /* realtime sessions only */
    nk_str client_ip;
    nk_str client_port;
} nk_context;

/* ---- events -------------------------------------------------------------- */

typedef enum nk_event_kind {
    NK_EVENT_CUSTOM = 0,
    NK_EVENT_SESSION_START = 1,
    NK_EVENT_SESSION_END = 2
} nk_event_kind;

/* An event. Handlers receive a borrowed one (valid during the call); a plugin
 * emitting one with nk_module.event fills its own and keeps ownership (the
 * host copies it before returning). */
typedef struct nk_event {
    uint32_t size;
    int32_t kind;             /* nk_event_kind; ignored when emitting (always custom) */
    nk_str name;
    const nk_kv* properties;
    size_t property_count;
    int32_t has_timestamp;    /* 0: no timestamp (Nakama leaves it nil) */
    int32_t timestamp_nanos;
    int64_t timestamp_seconds;
    int32_t external;         /* 1 when sent by a client */
    int32_t reserved;

    /* ---- ABI 1.1: filled by the host for handlers; test with
     * NK_HAS_FIELD(evt, nk_event, received_at_nanos) (a 1.0 host passes a
     * smaller `size`). Ignored when emitting: the host stamps every event it
     * receives, whatever the emitter's header version. */
    nk_str id;                   /* unique, time-ordered: a UUID v7 (RFC 9562) as 36 chars of
                                    lower-case hex and dashes; sorts like received_at */
    int64_t received_at_seconds; /* when the host received the event (unix seconds, UTC) */
    int32_t received_at_nanos;   /* 0..999999999 */
    int32_t reserved2;
} nk_event;

/* ---- logger (host implemented) ------------------------------------------- */

typedef struct nk_logger nk_logger;
typedef struct nk_module nk_module;
typedef struct nk_initializer nk_initializer;

typedef enum nk_log_level {
    NK_LOG_DEBUG = 0,
    NK_LOG_INFO = 1,
    NK_LOG_WARN = 2,
    NK_LOG_ERROR = 3
} nk_log_level;

/* Writes one line tagged with the module's name. `fields` (may be NULL when
 * `field_count` is 0) are structured key/value pairs. Thread-safe; callable
 * from any thread while the module is loaded. */
typedef void (*nk_log_fn)(const struct nk_logger* self, nk_str message, const nk_kv* fields,
                          size_t field_count);

struct nk_logger {
    uint32_t size;
    void* host; /* opaque */
    nk_log_fn debug;
    nk_log_fn info;
    nk_log_fn warn;
    nk_log_fn error;
    /* True when `level` would be written: skip expensive formatting otherwise. */
    int (*enabled)(const struct nk_logger* self, int32_t level);
};

/* ---- module: what plugin code may ask of the host (host implemented) ------ */

/* All functions are thread-safe and callable from any callback (not from
 * static constructors). `ctx` may be NULL (an empty background context).
 * `r_error` may be NULL; on failure the host writes a message into it. */
struct nk_module {
    uint32_t size;
    void* host; /* opaque */

    /* Enqueues a custom event for the event handlers, with the caller's
     * context and `external` as given. Never blocks. NK_OK also when the
     * queue was full and the event dropped (Nakama's behaviour);
     * NK_RESOURCE_EXHAUSTED when the host's policy is to reject,
     * NK_UNAVAILABLE when the host is shutting down. */
    nk_status (*event)(const struct nk_module* self, const nk_context* ctx, const nk_event* evt,
                       nk_sink* r_error);

    /* Writes the account of `user_id` as Nakama's Account JSON
     * ({"user":{...},"wallet":"{}",...}) into `r_account`. May block. */
    nk_status (*account_get_id)(const struct nk_module* self, const nk_context* ctx,
                                nk_str user_id, nk_sink* r_account, nk_sink* r_error);

    /* Updates the account of `user_id` from an UpdateAccountRequest JSON
     * ({"username":..,"display_name":..,...}, absent = untouched). May block. */
    nk_status (*account_update_id)(const struct nk_module* self, const nk_context* ctx,
                                   nk_str user_id, nk_str update_json, nk_sink* r_error);

    /* ---- ABI 1.1 (test with NK_HAS_FIELD(nk, nk_module, metrics_timer_record)) ----
     * Plugin metrics, as Nakama's MetricsCounterAdd / MetricsGaugeSet /
     * MetricsTimerRecord, exported on the Prometheus endpoint as
     * `<metrics.prefix>_custom_<name>` with the label node_name plus `tags`.
     * `name` and every tag key: 1-64 bytes of [a-zA-Z_][a-zA-Z0-9_]*, a key
     * not starting with "__" nor equal to node_name or le; at most 8 tags;
     * tag values: valid UTF-8, at most 256 bytes. A bad name or tag, or a name
     * already used with another type, gives NK_INVALID_ARGUMENT and a message
     * in r_error; nothing is recorded. Each metric holds at most 256 tag sets:
     * an update that would add one more is dropped, counted in
     * `<prefix>_plugin_metric_series_overflow{metric="<name>"}`, and returns
     * NK_RESOURCE_EXHAUSTED (at most 1000 metric names, the same way with
     * metric=""). Lock-free once a tag set exists: fine to call per event. */

    /* Adds `delta` (>= 0) to a counter. */
    nk_status (*metrics_counter_add)(const struct nk_module* self, nk_str name, const nk_kv* tags,
                                     size_t tag_count, int64_t delta, nk_sink* r_error);
    /* Sets a gauge to `value` (finite). */
    nk_status (*metrics_gauge_set)(const struct nk_module* self, nk_str name, const nk_kv* tags,
                                   size_t tag_count, double value, nk_sink* r_error);
    /* Records a duration (>= 0, nanoseconds) in a timer: a Prometheus
     * histogram in seconds (buckets 50 us .. 10 s). */
    nk_status (*metrics_timer_record)(const struct nk_module* self, nk_str name, const nk_kv* tags,
                                      size_t tag_count, int64_t duration_ns, nk_sink* r_error);

    /* ---- ABI 1.2 (test with NK_HAS_FIELD(nk, nk_module, report_fault)) ----
     * Tells the host that the plugin's own code failed unexpectedly in the
     * callback this thread is running (sdk.hpp calls it when an exception
     * escapes a handler; `what` is its text, for the log only). The host logs
     * it at error level naming the module and the call (RPC id, hook id, event
     * name, route), at most one line a second per module and call, and
     * counts it in `plugin_faults{module,call}`. A call that answers a client
     * then answers that call's generic message ("Error calling RPC function.",
     * "Error in before hook.", "Error in HTTP handler.", code 13) whatever the
     * callback wrote to r_error: internal text never reaches a client. The
     * callback should return NK_INTERNAL (void callbacks simply return); an
     * event handler's fault also counts in event_handler_errors. Called
     * outside a host callback, the fault is logged and counted with call
     * "none". */
    void (*report_fault)(const struct nk_module* self, nk_str what);

    /* ---- ABI 1.2: storage objects and wallets (test with
     * NK_HAS_FIELD(nk, nk_module, multi_update)) ----
     * Nakama's StorageRead / StorageWrite / StorageList / StorageDelete and
     * WalletUpdate / WalletsUpdate / WalletLedgerList / WalletLedgerUpdate.
     * Every slot may block (the database): call them from hooks, RPCs, HTTP
     * handlers or event handlers, never while holding a lock other threads
     * need. JSON in and out, as the REST API speaks it (docs/storage.md):
     * a storage object is {"collection","key","user_id","value" (a JSON object
     * as a string),"version","permission_read","permission_write",
     * "create_time","update_time"}. Server calls bypass permissions (as in
     * Nakama) and may use the system user (empty or the nil UUID user_id).
     * Errors: Nakama's codes and messages in r_error (e.g. NK_INVALID_ARGUMENT
     * "Storage write rejected - version check failed."). */

    /* {"object_ids":[{"collection","key","user_id"}]} -> {"objects":[...]}
     * (missing objects are absent). */
    nk_status (*storage_read)(const struct nk_module* self, const nk_context* ctx,
                              nk_str request_json, nk_sink* r_response_json, nk_sink* r_error);
    /* {"objects":[{"collection","key","user_id","value","version",
     * "permission_read","permission_write"}]} -> {"acks":[{"collection","key",
     * "user_id","version"}]}. Atomic: all or nothing. permission_read and
     * permission_write default to 1 (owner) when absent; version "*" writes
     * only if absent, a version only if unchanged. */
    nk_status (*storage_write)(const struct nk_module* self, const nk_context* ctx,
                               nk_str request_json, nk_sink* r_response_json, nk_sink* r_error);
    /* Lists `collection` of `user_id` (empty: every user) as `caller_id` may
     * see it (empty: the server, sees everything). limit 1..100; `cursor` from
     * a previous page or empty. -> {"objects":[...],"cursor":"..."} (cursor
     * absent on the last page). */
    nk_status (*storage_list)(const struct nk_module* self, const nk_context* ctx,
                              nk_str caller_id, nk_str user_id, nk_str collection,
                              int32_t limit, nk_str cursor, nk_sink* r_response_json,
                              nk_sink* r_error);
    /* {"object_ids":[{"collection","key","user_id","version"}]}. Atomic. */
    nk_status (*storage_delete)(const struct nk_module* self, const nk_context* ctx,
                                nk_str request_json, nk_sink* r_error);
    /* Adds `changeset_json` ({"gold":-10,"gems":5}) to the wallet of
     * `user_id`, atomically; refused when a currency would go negative.
     * `metadata_json` (a JSON object, may be empty) goes to the ledger entry
     * written when update_ledger != 0. -> {"updated":{...},"previous":{...}}. */
    nk_status (*wallet_update)(const struct nk_module* self, const nk_context* ctx,
                               nk_str user_id, nk_str changeset_json, nk_str metadata_json,
                               int32_t update_ledger, nk_sink* r_response_json,
                               nk_sink* r_error);
    /* {"updates":[{"user_id","changeset":{...},"metadata":{...}}]}: all or
     * nothing. -> {"results":[{"user_id","updated":{...},"previous":{...}}]}. */
    nk_status (*wallets_update)(const struct nk_module* self, const nk_context* ctx,
                                nk_str request_json, int32_t update_ledger,
                                nk_sink* r_response_json, nk_sink* r_error);
    /* -> {"items":[{"id","user_id","changeset":{...},"metadata":"{...}",
     * "create_time","update_time"}],"cursor":"..."}, newest first. */
    nk_status (*wallet_ledger_list)(const struct nk_module* self, const nk_context* ctx,
                                    nk_str user_id, int32_t limit, nk_str cursor,
                                    nk_sink* r_response_json, nk_sink* r_error);
    /* Replaces the metadata of ledger item `item_id` -> the item. */
    nk_status (*wallet_ledger_update)(const struct nk_module* self, const nk_context* ctx,
                                      nk_str item_id, nk_str metadata_json,
                                      nk_sink* r_response_json, nk_sink* r_error);
    /* Nakama's MultiUpdate: storage writes, storage deletes and wallet updates
     * in ONE transaction, all or nothing (e.g. grant an item and charge its
     * price). {"storage_writes":[...],"storage_deletes":[...],
     * "wallet_updates":[...]} (shapes as above) -> {"acks":[...],
     * "wallet_results":[...]}. */
    nk_status (*multi_update)(const struct nk_module* self, const nk_context* ctx,
                              nk_str request_json, int32_t update_ledger,
                              nk_sink* r_response_json, nk_sink* r_error);
};

/* ---- plugin callbacks (plugin implemented) -------------------------------- */

/* Frees a registration's user_data. Called once, see THREADING above. */
typedef void (*nk_on_destroy_fn)(void* user_data);

/* Event handler: no return value, like Nakama's. */
typedef void (*nk_on_event_fn)(void* user_data, const nk_context* ctx, const nk_logger* logger,
                               const nk_module* nk, const nk_event* evt);

/* Before-hook. `in_json` is the request as the REST API received it. To
 * rewrite it, write the complete new JSON into `r_in_json`; write nothing to
 * keep it unchanged. A non-OK status rejects the request with that code and
 * the message written to `r_error` (or a default message). */
typedef nk_status (*nk_on_before_fn)(void* user_data, const nk_context* ctx,
                                     const nk_logger* logger, const nk_module* nk,
                                     nk_str in_json, nk_sink* r_in_json, nk_sink* r_error);

/* After-hook: runs after the core operation succeeded, before the response.
 * `out_json` is empty for endpoints without a response body (UpdateAccount,
 * Event, SessionLogout, DeleteAccount), `in_json` empty for those without a
 * request body (GetAccount, DeleteAccount). A non-OK status is counted and
 * logged; it never changes the response. */
typedef nk_status (*nk_on_after_fn)(void* user_data, const nk_context* ctx,
                                    const nk_logger* logger, const nk_module* nk,
                                    nk_str out_json, nk_str in_json, nk_sink* r_error);

/* RPC function: `payload` in, reply written to `r_payload`. A non-OK status
 * becomes the HTTP error with the message written to `r_error`. */
typedef nk_status (*nk_on_rpc_fn)(void* user_data, const nk_context* ctx,
                                  const nk_logger* logger, const nk_module* nk, nk_str payload,
                                  nk_sink* r_payload, nk_sink* r_error);

/* Shutdown handler: runs during graceful shutdown and when a reload retires
 * the generation (ctx execution_mode says which, see THREADING); should
 * return within `grace_seconds`. A plugin that started threads stops them
 * here: the module's code is unmapped soon after. */
typedef void (*nk_on_shutdown_fn)(void* user_data, const nk_context* ctx,
                                  const nk_logger* logger, const nk_module* nk,
                                  int64_t grace_seconds);

/* State handoff (ABI 1.1), see register_handoff.
 * save: called once on a generation a reload retires, after its last other
 *   callback returned and its shutdown handlers ran. Write the state into
 *   `r_blob` and its format version into `*r_version` (preset to 0); writing
 *   nothing hands over nothing.
 * load: called once on the new generation with what its predecessor saved,
 *   while the new generation is ALREADY SERVING (concurrently with its own
 *   callbacks): merge the blob into what it has counted since it started.
 *   Return NK_OK when taken; any other status (an unknown `version`, a blob
 *   it cannot read) is logged and the new generation keeps its own state. */
typedef void (*nk_on_handoff_save_fn)(void* user_data, const nk_context* ctx,
                                      const nk_logger* logger, const nk_module* nk,
                                      uint32_t* r_version, nk_sink* r_blob);
typedef nk_status (*nk_on_handoff_load_fn)(void* user_data, const nk_context* ctx,
                                           const nk_logger* logger, const nk_module* nk,
                                           uint32_t version, nk_str blob);

/* ---- plugin HTTP routes (ABI 1.1), see register_http ---------------------- */

/* Who may call a route. */
typedef enum nk_http_auth {
    NK_HTTP_AUTH_NONE = 0,        /* anyone */
    NK_HTTP_AUTH_SERVER_KEY = 1,  /* HTTP Basic auth with socket.server_key (as authenticate) */
    NK_HTTP_AUTH_HTTP_KEY = 2,    /* ?http_key=runtime.http_key (as server-to-server RPCs) */
    NK_HTTP_AUTH_SESSION = 3      /* Authorization: Bearer <session token>; ctx has the user */
} nk_http_auth;

/* A request to a plugin route. Borrowed: valid only during the call. */
typedef struct nk_http_request {
    uint32_t size;
    nk_str method;            /* "GET", "POST", "PUT", "PATCH", "DELETE" (HEAD is served as GET) */
    nk_str path;              /* percent-decoded, with the host's prefix, e.g. "/plugins/stats" */
    nk_str route;             /* the path the plugin registered, e.g. "/stats" or "/files/{*}" */
    nk_str query;             /* the raw query string, without '?' */
    const nk_kv* query_params; /* percent-decoded query parameters, in order */
    size_t query_param_count;
    const nk_kv* headers;     /* as received (names in the case the client sent) */
    size_t header_count;
    nk_str body;              /* already decompressed (Content-Encoding gzip/deflate) */
} nk_http_request;

/* Where a route handler writes its response (host implemented, valid during the call).
 * Status defaults to 200 and Content-Type to application/json; `body` appends. */
typedef struct nk_http_response nk_http_response;
struct nk_http_response {
    uint32_t size;
    void* host; /* opaque */
    void (*set_status)(nk_http_response* self, int32_t status);
    /* Adds a header (Content-Type replaces the default). Hop-by-hop and framing headers
     * (Connection, Content-Length, Transfer-Encoding, Content-Encoding) are ignored. */
    void (*add_header)(nk_http_response* self, nk_str name, nk_str value);
    nk_sink* body;
};

/* Route handler. NK_OK sends what was written to `response`; any other status
 * discards it and answers Nakama's error JSON with that code's HTTP status and the
 * message written to `r_error` (or a default message). */
typedef nk_status (*nk_on_http_fn)(void* user_data, const nk_context* ctx,
                                   const nk_logger* logger, const nk_module* nk,
                                   const nk_http_request* request, nk_http_response* response,
                                   nk_sink* r_error);

/* Hook ids (Nakama's API method names) for register_before/register_after. */
#define NK_API_AUTHENTICATE_DEVICE "AuthenticateDevice"
#define NK_API_AUTHENTICATE_CUSTOM "AuthenticateCustom"
#define NK_API_AUTHENTICATE_EMAIL "AuthenticateEmail"
#define NK_API_SESSION_REFRESH "SessionRefresh"
#define NK_API_SESSION_LOGOUT "SessionLogout"
#define NK_API_GET_ACCOUNT "GetAccount"
#define NK_API_UPDATE_ACCOUNT "UpdateAccount"
#define NK_API_DELETE_ACCOUNT "DeleteAccount"
#define NK_API_EVENT "Event"
/* ABI 1.2 */
#define NK_API_WRITE_STORAGE_OBJECTS "WriteStorageObjects"
#define NK_API_READ_STORAGE_OBJECTS "ReadStorageObjects"
#define NK_API_LIST_STORAGE_OBJECTS "ListStorageObjects"
#define NK_API_DELETE_STORAGE_OBJECTS "DeleteStorageObjects"

/* ---- initializer (host implemented) ------------------------------------- */

/* Registration works ONLY during InitModule, on the thread that called it.
 * Outside it every function returns NK_FAILED_PRECONDITION (and the host logs
 * it). On NK_OK the host owns user_data and calls destroy at unload. On any
 * other status the registration was refused and the host has called
 * destroy(user_data) before returning: either way the host owns user_data
 * once a register_* function is called.
 * Event registrations are additive; before/after hooks and RPCs with an id
 * already registered replace the earlier one (Nakama: last wins). Unknown hook
 * ids and empty RPC ids give NK_INVALID_ARGUMENT. */
struct nk_initializer {
    uint32_t size;
    void* host; /* opaque */
    nk_status (*register_event)(const struct nk_initializer* self, nk_on_event_fn fn,
                                void* user_data, nk_on_destroy_fn destroy);
    nk_status (*register_event_session_start)(const struct nk_initializer* self,
                                              nk_on_event_fn fn, void* user_data,
                                              nk_on_destroy_fn destroy);
    nk_status (*register_event_session_end)(const struct nk_initializer* self, nk_on_event_fn fn,
                                            void* user_data, nk_on_destroy_fn destroy);
    nk_status (*register_before)(const struct nk_initializer* self, nk_str api_id,
                                 nk_on_before_fn fn, void* user_data, nk_on_destroy_fn destroy);
    nk_status (*register_after)(const struct nk_initializer* self, nk_str api_id,
                                nk_on_after_fn fn, void* user_data, nk_on_destroy_fn destroy);
    nk_status (*register_rpc)(const struct nk_initializer* self, nk_str id, nk_on_rpc_fn fn,
                              void* user_data, nk_on_destroy_fn destroy);
    nk_status (*register_shutdown)(const struct nk_initializer* self, nk_on_shutdown_fn fn,
                                   void* user_data, nk_on_destroy_fn destroy);
    /* Says why InitModule is about to fail: the host puts `message` in its
     * one-line refusal. Only meaningful during InitModule; the last call wins. */
    void (*set_init_error)(const struct nk_initializer* self, nk_str message);

    /* ---- ABI 1.1 (test with NK_HAS_FIELD(initializer, nk_initializer, register_handoff)) */

    /* Hands state from a generation that a reload retires to the one that
     * replaces it (same file): `save` runs on the old one, `load` on the new
     * one, see nk_on_handoff_save_fn. Either may be NULL (a generation that
     * only gives, or only takes). One per module: a second call replaces the
     * first. Nothing is handed over at server shutdown or when the file is
     * removed, nor between different files. */
    nk_status (*register_handoff)(const struct nk_initializer* self, nk_on_handoff_save_fn save,
                                  nk_on_handoff_load_fn load, void* user_data,
                                  nk_on_destroy_fn destroy);

    /* Serves `path` on the API port under the prefix "/plugins" (as Nakama's
     * RegisterHttp): a handler for path "/stats" answers /plugins/stats. `path`
     * starts with '/', has segments of [A-Za-z0-9._~-] and may end in "/{*}"
     * (a prefix route: it also answers every deeper path; an exact route wins). `methods` is a comma-
     * separated list of GET, POST, PUT, PATCH, DELETE (empty = "GET"); HEAD is
     * served by GET. `auth` is an nk_http_auth. Limits, CORS and gzip apply as
     * to every other route. Routes are global, like RPC ids: a later
     * registration of the same path replaces an earlier one. An invalid path,
     * method or auth gives NK_INVALID_ARGUMENT. */
    nk_status (*register_http)(const struct nk_initializer* self, nk_str path, nk_str methods,
                               int32_t auth, nk_on_http_fn fn, void* user_data,
                               nk_on_destroy_fn destroy);

    /* ---- ABI 1.2 (test with NK_HAS_FIELD(initializer, nk_initializer, last_error)) ----
     * Writes into `r_message` why the calling thread's most recent refused
     * register_* call was refused (e.g. "register_rpc: registration is only
     * allowed inside InitModule, on its thread"; "register_before: unknown hook
     * id \"X\" (valid: ...)"). Writes nothing when no call was refused on this
     * thread. Callable from any thread, at any time. */
    void (*last_error)(const struct nk_initializer* self, nk_sink* r_message);
};

/* ---- plugin entry points --------------------------------------------------- */

/* Signature of the plugin's InitModule export. `ctx` has execution_mode
 * "run_once" plus env and node. Returning non-OK aborts the load (startup
 * fails unless runtime.skip_failed_modules); registrations made so far are
 * dropped and their destroy functions called. */
typedef nk_status (*nk_init_module_fn)(const nk_context* ctx, const nk_logger* logger,
                                       const nk_module* nk, const nk_initializer* initializer);
typedef nk_abi_version (*nk_plugin_abi_fn)(void);

/* Declares InitModule with the right linkage and visibility:
 *   NK_INIT_MODULE_C(ctx, logger, nk, initializer) { ... return NK_OK; } */
#define NK_INIT_MODULE_C(ctx, logger, nk, initializer)                                  \
    NK_EXTERN_C NK_EXPORT nk_status InitModule(const nk_context* ctx, const nk_logger* logger, \
                                               const nk_module* nk,                     \
                                               const nk_initializer* initializer)

/* Small helpers (header-only, no allocation). */
static inline nk_str nk_str_from(const char* p, size_t n) {
    nk_str s;
    s.ptr = p;
    s.len = n;
    return s;
}
static inline nk_str nk_str_c(const char* z) {
    size_t n = 0;
    if (z != NULL) {
        while (z[n] != '\0') ++n;
    }
    return nk_str_from(z, n);
}
static inline void nk_sink_write(nk_sink* sink, const char* p, size_t n) {
    if (sink != NULL && sink->write != NULL) sink->write(sink->host, p, n);
}
static inline void nk_sink_write_c(nk_sink* sink, const char* z) {
    nk_str s = nk_str_c(z);
    nk_sink_write(sink, s.ptr, s.len);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* NK_SDK_H */
