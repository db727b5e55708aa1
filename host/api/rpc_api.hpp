// RPC endpoint (Nakama §9b): POST|GET /v2/rpc/{id}.
//
// Auth: ?http_key= (checked first; wrong → 401 "HTTP key invalid"), else a
// Bearer session token (invalid → 401 "Auth token invalid"), else 401 "Auth
// token or HTTP key required". POST body: a JSON string (the payload); with
// ?unwrap the raw body is the payload and the reply is the raw payload.
// GET takes the payload from ?payload=. Reply 200 {"payload":"..."}.
// Unknown id → 404 "RPC function not found". RPC ids are case-insensitive.
// The function runs on the BlockingPool, never on the io thread. Error bodies
// carry Nakama 3.x's extra "error" key: {"error":m,"message":m,"code":n}.
#pragma once

namespace nk::net {
class Router;
}

namespace nk::api {

struct Services;

void register_rpc_routes(net::Router& router, Services& services);

}  // namespace nk::api
