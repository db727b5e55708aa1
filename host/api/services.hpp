// Services: what REST handlers work with, wired once by the app.
//
// Each register_*_routes() function adds its endpoints to a net::Router and
// keeps a reference to Services, which must outlive the server. Members may
// be null where a subsystem is absent (tests wire only what they exercise);
// a handler whose dependency is null answers 501 code 12.
#pragma once

#include <string>

#include "core/json_read.hpp"

namespace nk {
class BlockingPool;
}
namespace nk::metrics {
class Registry;
}
namespace nk::auth {
class Tokens;
class LoginThrottle;
}
namespace nk::store {
class AccountStore;
class StorageStore;
}
namespace nk::events {
class EventSink;
struct Options;
}

namespace nk::api {

class RuntimeBridge;
class WorkMetrics;

// Reaches the user's open realtime sockets without the API depending on realtime (the app
// wires it). Thread-safe; returns at once (the sockets close asynchronously).
class SessionControl {
  public:
    virtual ~SessionControl() = default;
    // Closes the user's sockets with session_end reason "server-side session disconnect"; only
    // those opened with the session token whose tid is `token_id` when that is not empty.
    virtual void disconnect(const std::string& user_id, const std::string& token_id) = 0;
    // Closes, the same way, the user's sockets whose session token no longer authenticates (was
    // revoked), e.g. after session.single_session invalidated the user's earlier sessions.
    virtual void disconnect_revoked(const std::string& user_id) = 0;
};

struct Services {
    auth::Tokens* tokens = nullptr;           // JWT sign/verify, server key, http key, revocation
    store::AccountStore* accounts = nullptr;  // blocking: call on the pool
    store::StorageStore* storage = nullptr;   // storage objects and wallets; blocking, too
    BlockingPool* pool = nullptr;             // where blocking work runs
    events::EventSink* events = nullptr;      // the event pipeline
    const events::Options* event_limits = nullptr;
    RuntimeBridge* runtime = nullptr;         // hooks and RPCs; null = no plugins
    SessionControl* sessions = nullptr;       // realtime sockets; null = no realtime
    metrics::Registry* metrics = nullptr;
    JsonLimits json;                          // every request body and hook message parsed here
    WorkMetrics* work_metrics = nullptr;      // counts refused and dropped pool work
    auth::LoginThrottle* login_throttle = nullptr;  // failed password logins; null = none
    unsigned proxy_count = 0;                 // informational; net already resolved client_ip
};

}  // namespace nk::api
