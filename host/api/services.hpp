// Services: what REST handlers work with, wired once by the app.
//
// Each register_*_routes() function adds its endpoints to a net::Router and
// keeps a reference to Services, which must outlive the server. Members may
// be null where a subsystem is absent (tests wire only what they exercise);
// a handler whose dependency is null answers 501 code 12.
#pragma once

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
}
namespace nk::events {
class EventSink;
struct Options;
}

namespace nk::api {

class RuntimeBridge;
class WorkMetrics;

struct Services {
    auth::Tokens* tokens = nullptr;           // JWT sign/verify, server key, http key, revocation
    store::AccountStore* accounts = nullptr;  // blocking: call on the pool
    BlockingPool* pool = nullptr;             // where blocking work runs
    events::EventSink* events = nullptr;      // the event pipeline
    const events::Options* event_limits = nullptr;
    RuntimeBridge* runtime = nullptr;         // hooks and RPCs; null = no plugins
    metrics::Registry* metrics = nullptr;
    WorkMetrics* work_metrics = nullptr;      // counts refused and dropped pool work
    auth::LoginThrottle* login_throttle = nullptr;  // failed password logins; null = none
    unsigned proxy_count = 0;                 // informational; net already resolved client_ip
};

}  // namespace nk::api
