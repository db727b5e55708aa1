// Posting a request's blocking work to the BlockingPool, with the pool's
// limits answered the same way by every endpoint:
//   - pool refuses (queue full by count or bytes) → 503 code 14 and Retry-After;
//   - the client goes before the job runs → the job is dropped unrun;
// both counted in metrics (WorkMetrics). Thread-safe.
#pragma once

#include <cstddef>
#include <functional>

#include "auth/login_throttle.hpp"
#include "core/blocking_pool.hpp"
#include "core/status.hpp"
#include "net/http.hpp"

namespace nk::metrics {
class Counter;
class Gauge;
class Registry;
}  // namespace nk::metrics

namespace nk::api {

struct Services;

// The series counting refused and dropped work, and the queue depth per lane, registered once
// (at startup, so they read 0 before anything trips).
class WorkMetrics {
public:
    explicit WorkMetrics(metrics::Registry& registry);
    void refused(BlockingPool::Lane lane, BlockingPool::Posted why);
    void abandoned(BlockingPool::Lane lane);
    void throttled(auth::LoginThrottle::Limit limit);
    // The pool's BlockingPool::Options::queued_changed.
    void queued(BlockingPool::Lane lane, std::size_t jobs);

private:
    metrics::Gauge* depth_[BlockingPool::kLanes];
    metrics::Counter* refused_count_[BlockingPool::kLanes];
    metrics::Counter* refused_bytes_[BlockingPool::kLanes];
    metrics::Counter* abandoned_[BlockingPool::kLanes];
    metrics::Counter* throttled_account_address_;
    metrics::Counter* throttled_address_;
};

using ErrorResponse = net::Response (*)(const Status&);

// Runs `run` on services.pool for the request `respond` answers; `bytes` is what the job holds
// while queued (its request body or payload). When the pool refuses the job, `respond` gets
// error_response(unavailable) with Retry-After added; when the job is dropped because the client
// went, it gets a code-1 (cancelled) answer nobody reads. `run` must answer `respond` itself.
void post_request_work(Services& services, const net::Responder& respond, std::function<void()> run,
                       std::size_t bytes, BlockingPool::Lane lane = BlockingPool::Lane::general,
                       ErrorResponse error_response = &net::Response::error);

}  // namespace nk::api
