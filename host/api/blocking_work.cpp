#include "api/blocking_work.hpp"

#include "api/services.hpp"
#include "metrics/registry.hpp"

namespace nk::api {

namespace {

constexpr const char* kLaneNames[BlockingPool::kLanes] = {"general", "password"};
// Seconds a refused client is asked to wait: the queue drains in well under that at any sane
// size, and a fixed small value spreads retries without stranding clients.
constexpr const char* kRetryAfterSec = "1";

std::size_t index(BlockingPool::Lane lane) { return static_cast<std::size_t>(lane); }

}  // namespace

WorkMetrics::WorkMetrics(metrics::Registry& registry) {
    for (std::size_t i = 0; i < BlockingPool::kLanes; ++i) {
        const char* lane = kLaneNames[i];
        refused_count_[i] = &registry.counter(
            "blocking_queue_rejected",
            "Requests answered 503 because the blocking queue was full "
            "(socket.blocking_queue_size, socket.blocking_queue_max_bytes).",
            {{"lane", lane}, {"limit", "count"}});
        refused_bytes_[i] = &registry.counter(
            "blocking_queue_rejected",
            "Requests answered 503 because the blocking queue was full "
            "(socket.blocking_queue_size, socket.blocking_queue_max_bytes).",
            {{"lane", lane}, {"limit", "bytes"}});
        abandoned_[i] = &registry.counter(
            "blocking_queue_abandoned",
            "Queued requests dropped unrun because their client closed the connection.",
            {{"lane", lane}});
        depth_[i] = &registry.gauge("blocking_queue_depth",
                                    "Jobs queued for the blocking pool and not yet running.",
                                    {{"lane", lane}});
    }
    const char* help =
        "Password logins answered 429 before hashing because of earlier failures "
        "(session.login_failures_per_account_address, session.login_failures_per_address).";
    throttled_account_address_ =
        &registry.counter("login_throttled", help, {{"limit", "account_address"}});
    throttled_address_ = &registry.counter("login_throttled", help, {{"limit", "address"}});
}

void WorkMetrics::refused(BlockingPool::Lane lane, BlockingPool::Posted why) {
    if (why == BlockingPool::Posted::queue_full) refused_count_[index(lane)]->inc();
    if (why == BlockingPool::Posted::queue_bytes_full) refused_bytes_[index(lane)]->inc();
}

void WorkMetrics::abandoned(BlockingPool::Lane lane) { abandoned_[index(lane)]->inc(); }

void WorkMetrics::queued(BlockingPool::Lane lane, std::size_t jobs) {
    depth_[index(lane)]->set(static_cast<std::int64_t>(jobs));
}

void WorkMetrics::throttled(auth::LoginThrottle::Limit limit) {
    if (limit == auth::LoginThrottle::Limit::account_address) throttled_account_address_->inc();
    if (limit == auth::LoginThrottle::Limit::address) throttled_address_->inc();
}

void post_request_work(Services& services, const net::Responder& respond, std::function<void()> run,
                       std::size_t bytes, BlockingPool::Lane lane, ErrorResponse error_response) {
    WorkMetrics* metrics = services.work_metrics;
    BlockingPool::Job job;
    job.run = std::move(run);
    job.bytes = bytes;
    job.lane = lane;
    job.abandoned = [respond] { return respond.abandoned(); };
    job.on_drop = [respond, metrics, lane] {
        if (metrics != nullptr) metrics->abandoned(lane);
        respond(net::Response::error(
            Status(Code::cancelled, "Request cancelled: the client closed the connection.")));
    };
    const auto posted = services.pool->post(std::move(job));
    if (posted == BlockingPool::Posted::accepted) return;
    if (posted == BlockingPool::Posted::stopping) {
        respond(error_response(Status::unavailable("Server is shutting down.")));
        return;
    }
    if (metrics != nullptr) metrics->refused(lane, posted);
    net::Response r = error_response(Status::unavailable("Server is busy, try again later."));
    r.headers.emplace_back("Retry-After", kRetryAfterSec);
    respond(std::move(r));
}

}  // namespace nk::api
