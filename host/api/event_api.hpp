// POST /v2/event, Nakama-compatible (nakama-server.md §1):
//   Bearer auth; body = api.Event JSON (unknown members ignored, empty body = empty event);
//   `external` forced true; handler ctx = execution_mode "event" + user fields + client ip/port;
//   200 {} whether the event was queued, dropped (policy drop) or had no handler.
// Beyond Nakama: runtime.event_* limits (400 code 3 naming the limit) and, with policy reject
// and a full queue, 503 code 14 with Retry-After: runtime.event_reject_retry_after_sec.
//
// Without "Event" before/after hooks the whole request runs on the io thread: JWT check,
// in-place JSON decoding and a non-blocking submit, no lock held, no thread hop. With a hook
// registered (Services::runtime) the request moves to Services::pool, as hooks may block.
//
// Services (tokens, events; event_limits, runtime, pool optional) must outlive the server.
// Without tokens or events the endpoint answers 501 code 12.
#pragma once

namespace nk::net {
class Router;
}

namespace nk::api {

struct Services;

void register_event_routes(net::Router& router, Services& services);

}  // namespace nk::api
