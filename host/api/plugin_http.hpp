// Plugin HTTP routes: what plugins register with register_http (ABI 1.1), served on the API
// port under the reserved prefix /plugins (a route "/stats" answers /plugins/stats).
//
// On the io thread: pin the runtime's registrations, match the route (unknown → 404 code 5
// "Not Found", known path with another method → 501 code 12 "Method Not Allowed", as for built-in
// routes), check the route's auth (none; the server key as HTTP Basic auth; ?http_key=; a
// Bearer session token, which fills the context with the user). Then the handler runs on the
// blocking pool with the same pin, so a hot reload in between cannot change which generation
// answers. Limits, CORS and gzip are the listener's, as for every other route. A handler error
// status answers Nakama's {"code","message"} with that code's HTTP status; a throwing handler
// answers 500 "Error in HTTP handler.".
#pragma once

namespace nk::net {
class Router;
}

namespace nk::api {

struct Services;

inline constexpr char kPluginHttpPrefix[] = "/plugins";

void register_plugin_http_routes(net::Router& router, Services& services);

}  // namespace nk::api
