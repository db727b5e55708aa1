// Health endpoints: GET / → 200 empty text/plain body (what `nakama healthcheck`
// probes); GET /healthcheck → 200 {} (the gateway's Healthcheck). No auth.
#pragma once

namespace nk::net {
class Router;
}

namespace nk::api {

void register_health_routes(net::Router& router);

}  // namespace nk::api
