#include "api/health.hpp"

#include "net/router.hpp"

namespace nk::api {

void register_health_routes(net::Router& router) {
    router.add(net::Method::get, "/", [](net::Request&&, net::Responder respond) {
        net::Response r;
        r.status = 200;
        r.content_type = "text/plain; charset=utf-8";
        respond(std::move(r));
    });
    router.add(net::Method::get, "/healthcheck", [](net::Request&&, net::Responder respond) {
        respond(net::Response::empty_object());
    });
}

}  // namespace nk::api
