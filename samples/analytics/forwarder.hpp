// forwarder.hpp — sends events to a collector in the Segment HTTP Tracking API batch format.
//
//   POST {endpoint}/v1/batch   Authorization: Basic base64(write_key + ":")
//   {"batch":[{"type":"track","event":..,"userId":..,"properties":{..},"timestamp":..,
//              "messageId":..}, ...],"sentAt":".."}
//
// Event handlers call Enqueue(), which only appends to a bounded in-memory buffer (split into
// shards so that workers do not contend on one lock) and never waits for the network. One
// thread of the forwarder's own sends batches: when `batch_size` events are waiting or every
// `flush_interval`, whichever comes first. A batch that fails with a network error, a 5xx or a
// 429 is retried, unchanged (the same messageIds, so the collector can deduplicate), after an
// exponential backoff with jitter (or the 429's Retry-After), for as long as it takes; other
// 4xx answers are logged and the batch is counted as rejected. While a batch is retried new
// events keep filling the buffer; when it is full the oldest event is dropped and counted.
// Nothing is lost silently: enqueued = delivered + rejected + dropped + buffered + in flight.
//
// Lifetime: Start() in InitModule; Drain() at server shutdown (sends what it holds within a
// time budget), Halt() on a hot reload (stops at once, keeps the buffer for Save()).
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "stats.hpp"  // JsonWriter
#include "nk/sdk.hpp"

namespace httplib {
class Client;
}

namespace analytics {

// The ANALYTICS_* keys of runtime.env (README.md lists them with their defaults).
struct ForwarderOptions {
    std::string endpoint;                 // ANALYTICS_ENDPOINT; empty: forwarding off
    std::string write_key;                // ANALYTICS_WRITE_KEY
    std::size_t batch_size = 100;         // ANALYTICS_BATCH_SIZE, 1..2000
    std::chrono::milliseconds flush_interval{1000};  // ANALYTICS_FLUSH_INTERVAL_MS, 10..600000
    std::size_t buffer_limit = 10000;     // ANALYTICS_BUFFER_LIMIT, 1..10000000
    std::chrono::milliseconds timeout{5000};  // ANALYTICS_TIMEOUT_MS, 100..600000

    // Reads the keys from `env`; false with `error` set when a value is malformed or out of range.
    static bool FromEnv(const std::map<std::string, std::string>& env, ForwarderOptions& out,
                        std::string& error);
};

class Forwarder {
  public:
    // `logger` must stay valid while the forwarder runs (the module's logger does).
    Forwarder(ForwarderOptions options, nk::Logger logger);
    ~Forwarder();  // Halt()
    Forwarder(const Forwarder&) = delete;
    Forwarder& operator=(const Forwarder&) = delete;

    bool enabled() const { return !options_.endpoint.empty(); }

    void Start();
    // Buffers one track event (its JSON object, messageId included). Thread-safe, never blocks
    // on the network.
    void Enqueue(std::string message_id, std::string track_json);
    // Stops the thread after sending everything held, trying until `budget` has passed.
    void Drain(std::chrono::milliseconds budget);
    // Stops the thread now; what is held stays (for Save).
    void Halt();

    // The "forwarder" member of the stats JSON.
    void WriteJson(JsonWriter& w) const;
    // Handoff: counters and unsent events (after Halt), and their merge into this forwarder.
    void Save(JsonWriter& w) const;
    bool Merge(const rapidjson::Value& saved);

  private:
    struct Item {
        std::string message_id;
        std::string json;
    };
    struct Shard {
        mutable std::mutex mutex;
        std::deque<Item> items;
    };
    static constexpr std::size_t kShards = 8;
    enum class Mode { run, drain, halt };
    enum class Outcome { delivered, retry, rejected };

    void Run();
    void DrainAll(std::chrono::steady_clock::time_point deadline);
    void TakeBatch();
    Outcome SendInflight(std::chrono::milliseconds timeout, std::chrono::milliseconds& retry_after);
    std::chrono::milliseconds Backoff(int attempt);
    void Push(Shard& shard, Item item);  // returns after dropping the shard's oldest if full

    ForwarderOptions options_;
    nk::Logger logger_;
    std::string host_;         // "scheme://host:port"
    std::string batch_path_;   // "/prefix/v1/batch"
    std::size_t shard_limit_;  // buffer_limit split over the shards

    std::array<Shard, kShards> shards_;
    std::atomic<std::size_t> next_shard_{0};

    mutable std::mutex inflight_mutex_;  // the batch being sent (the thread's, read by Save)
    std::vector<Item> inflight_;

    std::mutex wake_mutex_;
    std::condition_variable wake_;
    Mode mode_ = Mode::run;  // guarded by wake_mutex_
    std::chrono::steady_clock::time_point drain_deadline_;

    std::mutex client_mutex_;
    std::unique_ptr<httplib::Client> client_;  // used by the thread only; stop()ped by Halt
    std::thread thread_;
    std::mt19937_64 jitter_{std::random_device{}()};  // the thread's only

    std::atomic<std::int64_t> buffered_{0}, enqueued_{0}, delivered_{0}, dropped_{0},
        rejected_{0}, retries_{0}, batches_{0}, failed_requests_{0};
    mutable std::mutex error_mutex_;
    std::string last_error_;
};

// A random (version 4) UUID: the messageId of an event the host gave no id (a host before
// ABI 1.1). Thread-safe.
std::string random_uuid();

}  // namespace analytics
