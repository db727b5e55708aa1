// stats.hpp — the live figures of the analytics sample, kept in memory.
//
// Threading: every Record*/Snapshot/Save/Merge call may run concurrently with every other (event
// handlers run on several workers at once, the stats RPC on the blocking pool, the handoff on the
// retirer thread). There is no lock shared by all events: each structure is split into shards
// chosen by a hash of its own key (event name, session id, user id), or is a set of atomics.
//
// Memory is bounded whatever clients send:
//   - event names: each shard (counts by name are sharded by thread) counts at most `max_names`
//     distinct names; a name new to a full shard is counted there under "(other)";
//   - open sessions: at most `max_open_sessions` start times are remembered; a session beyond it
//     still counts as active, but its length is not measured (`untracked`);
//   - daily active users: one HyperLogLog of 2^14 one-byte registers (16 KiB) per UTC day, for
//     the last kDauDays days;
//   - session lengths: a fixed log-scale histogram (kLengthBuckets atomics).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace analytics {

using JsonWriter = rapidjson::Writer<rapidjson::StringBuffer>;

// Milliseconds since the Unix epoch (system clock): the time base of every figure here.
std::int64_t now_ms();

// The ANALYTICS_MAX_* keys of runtime.env (README.md).
struct StatsLimits {
    std::size_t max_names = 1000;             // ANALYTICS_MAX_EVENT_NAMES, 1..100000
    std::size_t max_open_sessions = 1000000;  // ANALYTICS_MAX_OPEN_SESSIONS, 0..100000000

    static bool FromEnv(const std::map<std::string, std::string>& env, StatsLimits& out,
                        std::string& error);
};

class Stats {
  public:
    static constexpr int kMinutes = 60;       // per-minute counts kept for the last hour
    static constexpr int kDauDays = 7;        // daily active users kept for the last week
    static constexpr int kHllBits = 14;       // 2^14 registers: standard error 1.04/128 = 0.81%
    static constexpr int kLengthBuckets = 160;  // session lengths up to 2^40 ms, ratio 2^(1/4)

    explicit Stats(StatsLimits limits = {});

    // A custom event named `name` (or a session event, by its name) handled at `at_ms`.
    void RecordEvent(const std::string& name, std::int64_t at_ms);
    // A user seen at `at_ms` (any event that carries a user id): daily active users.
    void RecordUser(const std::string& user_id, std::int64_t at_ms);
    void RecordSessionStart(const std::string& session_id, std::int64_t at_ms);
    void RecordSessionEnd(const std::string& session_id, std::int64_t at_ms);

    // Sessions open now (never negative).
    std::int64_t SessionsActive() const {
        return std::max<std::int64_t>(sessions_active_.load(std::memory_order_relaxed), 0);
    }

    // The "events", "top_events", "sessions" and "daily_active_users" members of the stats JSON
    // (see README.md), written into an object the caller has opened.
    void WriteJson(JsonWriter& w, std::int64_t at_ms) const;

    // Handoff across a hot reload: everything above as a JSON value (Save), and the merge of a
    // predecessor's value into this one's own figures (Merge; false when it is malformed).
    void Save(JsonWriter& w) const;
    bool Merge(const rapidjson::Value& saved);

  private:
    static constexpr int kShards = 16;

    struct NameCounts {
        std::uint64_t total = 0;
        std::array<std::uint32_t, kMinutes> per_minute{};  // slot = minute % 60
        std::array<std::int64_t, kMinutes> minute_of{};    // which minute a slot holds
        void Add(std::int64_t minute, std::uint64_t n);
    };
    struct NameShard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, NameCounts> names;
    };
    struct SessionShard {
        mutable std::mutex mutex;
        std::unordered_map<std::string, std::int64_t> started_ms;
    };
    // One UTC day's HyperLogLog, the registers split into shards by their index.
    struct DayShard {
        mutable std::mutex mutex;
        std::map<std::int64_t, std::vector<std::uint8_t>> registers_by_day;  // day -> registers
    };

    void AddName(NameShard& shard, const std::string& name, std::int64_t minute,
                 std::uint64_t total, const NameCounts* merge_from);
    static void AddCounts(NameCounts& c, std::int64_t minute, std::uint64_t total,
                          const NameCounts* merge_from);
    void AddLength(std::int64_t length_ms);
    void AddRegister(std::int64_t day, std::uint32_t index, std::uint8_t rank);
    std::vector<std::pair<std::int64_t, double>> DailyEstimates() const;

    StatsLimits limits_;
    std::array<NameShard, kShards> name_shards_;
    std::array<SessionShard, kShards> session_shards_;
    std::atomic<std::size_t> open_tracked_{0};
    std::array<DayShard, kShards> day_shards_;

    std::atomic<std::int64_t> events_total_{0};
    std::atomic<std::int64_t> sessions_active_{0};
    std::atomic<std::int64_t> sessions_started_{0};
    std::atomic<std::int64_t> sessions_ended_{0};
    std::atomic<std::int64_t> sessions_untracked_{0};       // started beyond max_open_sessions
    std::atomic<std::int64_t> sessions_open_untracked_{0};  // of those, not ended yet
    std::atomic<std::int64_t> sessions_unmatched_{0};       // ended, start never seen
    std::array<std::atomic<std::uint64_t>, kLengthBuckets> length_buckets_{};
    std::atomic<std::int64_t> length_max_ms_{0};
};

}  // namespace analytics
