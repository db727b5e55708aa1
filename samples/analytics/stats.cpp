#include "stats.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <thread>

#include "env.hpp"
#include "nk/sdk.hpp"  // nk::json::format_rfc3339

namespace analytics {

namespace {

constexpr std::int64_t kMinuteMs = 60 * 1000;
constexpr std::int64_t kDayMs = 24 * 60 * kMinuteMs;
constexpr const char* kOtherName = "(other)";

// A hash that is the same in every build (the handoff carries HyperLogLog registers from one
// generation to the next): FNV-1a, then splitmix64's finaliser to spread the bits.
std::uint64_t stable_hash(const std::string& s) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : s) {
        h ^= c;
        h *= 1099511628211ull;
    }
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

std::size_t shard_of(const std::string& key, int shards) {
    return static_cast<std::size_t>(stable_hash(key) % static_cast<std::uint64_t>(shards));
}

std::int64_t floor_div(std::int64_t a, std::int64_t b) {
    return a / b - (a % b != 0 && (a < 0) != (b < 0));
}

// Session-length histogram: bucket i holds lengths in [r^i, r^(i+1)) ms with r = 2^(1/4)
// (bucket 0 also holds 0 ms). A quantile is reported as its bucket's geometric middle, so it is
// within a factor r^(1/2) = 1.09 of the true value: at most 9% off.
constexpr double kBucketRatio = 1.189207115002721;  // 2^(1/4)
int length_bucket(std::int64_t ms) {
    if (ms < 1)
        return 0;
    const int b = static_cast<int>(std::floor(std::log2(static_cast<double>(ms)) * 4.0));
    return std::clamp(b, 0, Stats::kLengthBuckets - 1);
}
double bucket_middle(int b) {
    return std::pow(kBucketRatio, b + 0.5);
}

void write_string(JsonWriter& w, const std::string& s) {
    w.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
}
std::string utc_day(std::int64_t day) {
    return nk::json::format_rfc3339(day * 86400, 0).substr(0, 10);  // "2026-12-04"
}

// Fetch-max on an atomic (CAS loop; lock-free).
template <class T>
void store_max(std::atomic<T>& a, T v) {
    T cur = a.load(std::memory_order_relaxed);
    while (v > cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
}

}  // namespace

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

bool StatsLimits::FromEnv(const std::map<std::string, std::string>& env, StatsLimits& out,
                          std::string& error) {
    long long names = static_cast<long long>(out.max_names),
              sessions = static_cast<long long>(out.max_open_sessions);
    if (!EnvInteger(env, "ANALYTICS_MAX_EVENT_NAMES", 1, 100000, names, error) ||
        !EnvInteger(env, "ANALYTICS_MAX_OPEN_SESSIONS", 0, 100000000, sessions, error))
        return false;
    out.max_names = static_cast<std::size_t>(names);
    out.max_open_sessions = static_cast<std::size_t>(sessions);
    return true;
}

Stats::Stats(StatsLimits limits) : limits_(limits) {}

void Stats::NameCounts::Add(std::int64_t minute, std::uint64_t n) {
    const auto slot = static_cast<std::size_t>((minute % kMinutes + kMinutes) % kMinutes);
    if (minute_of[slot] != minute) {  // the slot held an older minute: start it afresh
        if (minute < minute_of[slot])
            return;  // older than the hour kept here
        minute_of[slot] = minute;
        per_minute[slot] = 0;
    }
    per_minute[slot] += static_cast<std::uint32_t>(n);
}

// ---- recording ------------------------------------------------------------------------------

void Stats::RecordEvent(const std::string& name, std::int64_t at_ms) {
    events_total_.fetch_add(1, std::memory_order_relaxed);
    // Counts by name are split by thread, not by name: workers counting the same popular event
    // then take different locks. The stats RPC adds the shards up.
    const std::size_t shard = std::hash<std::thread::id>{}(std::this_thread::get_id()) % kShards;
    AddName(name_shards_[shard], name, floor_div(at_ms, kMinuteMs), 1, nullptr);
}

void Stats::AddName(NameShard& shard, const std::string& name, std::int64_t minute,
                    std::uint64_t total, const NameCounts* merge_from) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto it = shard.names.find(name);
    if (it == shard.names.end()) {
        // A name new to this shard is admitted while it holds fewer than max_names (and the
        // "(other)" entry always is).
        if (shard.names.size() >= limits_.max_names && name != kOtherName) {
            AddCounts(shard.names[kOtherName], minute, total, merge_from);
            return;
        }
        it = shard.names.emplace(name, NameCounts{}).first;
    }
    AddCounts(it->second, minute, total, merge_from);
}

void Stats::AddCounts(NameCounts& c, std::int64_t minute, std::uint64_t total,
                      const NameCounts* merge_from) {
    c.total += total;
    if (merge_from == nullptr) {
        c.Add(minute, total);
        return;
    }
    for (int i = 0; i < kMinutes; ++i)
        if (merge_from->per_minute[i] != 0)
            c.Add(merge_from->minute_of[i], merge_from->per_minute[i]);
}

void Stats::RecordUser(const std::string& user_id, std::int64_t at_ms) {
    const std::uint64_t h = stable_hash(user_id);
    const auto index = static_cast<std::uint32_t>(h >> (64 - kHllBits));
    // Rank: position of the first 1 bit in the remaining 50 bits (a guard bit bounds it).
    const std::uint64_t rest = (h << kHllBits) | (std::uint64_t{1} << (kHllBits - 1));
    const auto rank = static_cast<std::uint8_t>(__builtin_clzll(rest) + 1);
    AddRegister(floor_div(at_ms, kDayMs), index, rank);
}

void Stats::AddRegister(std::int64_t day, std::uint32_t index, std::uint8_t rank) {
    constexpr std::uint32_t per_shard = (1u << kHllBits) / kShards;
    DayShard& shard = day_shards_[index / per_shard];
    std::lock_guard<std::mutex> lock(shard.mutex);
    auto& days = shard.registers_by_day;
    if (days.find(day) == days.end()) {
        if (!days.empty() && day <= days.begin()->first && days.size() >= kDauDays)
            return;  // older than every day kept
        days[day].assign(per_shard, 0);
        while (days.size() > kDauDays)
            days.erase(days.begin());
    }
    std::uint8_t& reg = days[day][index % per_shard];
    reg = std::max(reg, rank);
}

void Stats::RecordSessionStart(const std::string& session_id, std::int64_t at_ms) {
    sessions_started_.fetch_add(1, std::memory_order_relaxed);
    sessions_active_.fetch_add(1, std::memory_order_relaxed);
    SessionShard& shard = session_shards_[shard_of(session_id, kShards)];
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (open_tracked_.load(std::memory_order_relaxed) >= limits_.max_open_sessions) {
        sessions_untracked_.fetch_add(1, std::memory_order_relaxed);
        sessions_open_untracked_.fetch_add(1, std::memory_order_relaxed);
        return;
    }
    if (shard.started_ms.emplace(session_id, at_ms).second)
        open_tracked_.fetch_add(1, std::memory_order_relaxed);
}

void Stats::RecordSessionEnd(const std::string& session_id, std::int64_t at_ms) {
    std::int64_t started = -1;
    {
        SessionShard& shard = session_shards_[shard_of(session_id, kShards)];
        std::lock_guard<std::mutex> lock(shard.mutex);
        auto it = shard.started_ms.find(session_id);
        if (it != shard.started_ms.end()) {
            started = it->second;
            shard.started_ms.erase(it);
            open_tracked_.fetch_sub(1, std::memory_order_relaxed);
        }
    }
    if (started >= 0) {
        sessions_active_.fetch_sub(1, std::memory_order_relaxed);
        AddLength(std::max<std::int64_t>(at_ms - started, 0));
    } else {
        // Not remembered: one of the sessions started beyond the limit, or one that started
        // before this plugin was loaded (it was never counted as active).
        std::int64_t open = sessions_open_untracked_.load(std::memory_order_relaxed);
        while (open > 0 && !sessions_open_untracked_.compare_exchange_weak(open, open - 1)) {
        }
        if (open > 0)
            sessions_active_.fetch_sub(1, std::memory_order_relaxed);
        else
            sessions_unmatched_.fetch_add(1, std::memory_order_relaxed);
    }
    // Counted last, with release: a reader that sees this end counted (the stats RPC reads
    // `ended` before the lengths) also sees its length and the active count it changed.
    sessions_ended_.fetch_add(1, std::memory_order_release);
}

void Stats::AddLength(std::int64_t length_ms) {
    length_buckets_[static_cast<std::size_t>(length_bucket(length_ms))].fetch_add(
        1, std::memory_order_relaxed);
    store_max(length_max_ms_, length_ms);
}

// ---- reading --------------------------------------------------------------------------------

std::vector<std::pair<std::int64_t, double>> Stats::DailyEstimates() const {
    // Gather each day's registers from every shard, then the HyperLogLog estimate with the
    // small-range (linear counting) correction: exact in practice for a few hundred users.
    constexpr std::uint32_t per_shard = (1u << kHllBits) / kShards;
    constexpr double m = 1 << kHllBits;
    std::map<std::int64_t, std::vector<std::uint8_t>> days;
    for (int s = 0; s < kShards; ++s) {
        std::lock_guard<std::mutex> lock(day_shards_[s].mutex);
        for (const auto& [day, regs] : day_shards_[s].registers_by_day) {
            auto& all = days[day];
            all.resize(1u << kHllBits);
            std::copy(regs.begin(), regs.end(), all.begin() + s * per_shard);
        }
    }
    std::vector<std::pair<std::int64_t, double>> out;
    for (auto it = days.rbegin(); it != days.rend() && out.size() < kDauDays; ++it) {
        double sum = 0;
        int zeros = 0;
        for (std::uint8_t r : it->second) {
            sum += std::ldexp(1.0, -r);
            zeros += r == 0;
        }
        double estimate = (0.7213 / (1 + 1.079 / m)) * m * m / sum;
        if (estimate <= 2.5 * m && zeros > 0)
            estimate = m * std::log(m / zeros);
        out.emplace_back(it->first, std::round(estimate));
    }
    return out;
}

void Stats::WriteJson(JsonWriter& w, std::int64_t at_ms) const {
    const std::int64_t minute_now = floor_div(at_ms, kMinuteMs);
    // Add the shards' counts up by name (one shard lock at a time).
    std::map<std::string, NameCounts> merged;
    for (const auto& shard : name_shards_) {
        std::lock_guard<std::mutex> lock(shard.mutex);
        for (const auto& [name, counts] : shard.names)
            AddCounts(merged[name], 0, counts.total, &counts);
    }
    std::vector<std::pair<std::string, NameCounts>> names(merged.begin(), merged.end());
    // Per-minute series, oldest first; the last element is the current minute.
    auto series = [&](const NameCounts& c, std::array<std::uint64_t, kMinutes>& out) {
        for (int i = 0; i < kMinutes; ++i) {
            const std::int64_t minute = minute_now - (kMinutes - 1) + i;
            const auto slot = static_cast<std::size_t>((minute % kMinutes + kMinutes) % kMinutes);
            if (c.minute_of[slot] == minute)
                out[static_cast<std::size_t>(i)] += c.per_minute[slot];
        }
    };

    w.Key("events");
    w.StartObject();
    w.Key("total");
    w.Int64(events_total_.load());
    std::array<std::uint64_t, kMinutes> all_minutes{};
    w.Key("minute_start");
    write_string(w, nk::json::format_rfc3339((minute_now - (kMinutes - 1)) * 60, 0));
    w.Key("by_name");
    w.StartObject();
    for (const auto& [name, counts] : names) {
        std::array<std::uint64_t, kMinutes> minutes{};
        series(counts, minutes);
        std::uint64_t hour = 0;
        for (int i = 0; i < kMinutes; ++i) {
            hour += minutes[i];
            all_minutes[i] += minutes[i];
        }
        write_string(w, name);
        w.StartObject();
        w.Key("total");
        w.Uint64(counts.total);
        w.Key("last_hour");
        w.Uint64(hour);
        w.Key("per_minute");
        w.StartArray();
        for (auto n : minutes)
            w.Uint64(n);
        w.EndArray();
        w.EndObject();
    }
    w.EndObject();
    w.Key("per_minute");
    w.StartArray();
    for (auto n : all_minutes)
        w.Uint64(n);
    w.EndArray();
    w.EndObject();

    w.Key("top_events");
    std::sort(names.begin(), names.end(), [](const auto& a, const auto& b) {
        return a.second.total != b.second.total ? a.second.total > b.second.total
                                                : a.first < b.first;
    });
    w.StartArray();
    for (std::size_t i = 0; i < names.size() && i < 10; ++i) {
        w.StartObject();
        w.Key("name");
        write_string(w, names[i].first);
        w.Key("count");
        w.Uint64(names[i].second.total);
        w.EndObject();
    }
    w.EndArray();

    // `ended` first (acquire): every end it counts has its active count and length in what is
    // read after it (RecordSessionEnd counts the end last).
    const std::int64_t ended = sessions_ended_.load(std::memory_order_acquire);
    w.Key("sessions");
    w.StartObject();
    w.Key("active");
    w.Int64(std::max<std::int64_t>(sessions_active_.load(), 0));
    w.Key("started");
    w.Int64(sessions_started_.load());
    w.Key("ended");
    w.Int64(ended);
    w.Key("untracked");
    w.Int64(sessions_untracked_.load());
    w.Key("unmatched_ends");
    w.Int64(sessions_unmatched_.load());
    std::array<std::uint64_t, kLengthBuckets> buckets{};
    std::uint64_t count = 0;
    for (int i = 0; i < kLengthBuckets; ++i)
        count += buckets[static_cast<std::size_t>(i)] = length_buckets_[static_cast<std::size_t>(i)].load();
    const std::int64_t max_ms = length_max_ms_.load();
    auto quantile = [&](double q) -> std::int64_t {
        const auto rank = static_cast<std::uint64_t>(std::ceil(q * static_cast<double>(count)));
        std::uint64_t seen = 0;
        for (int i = 0; i < kLengthBuckets; ++i) {
            seen += buckets[static_cast<std::size_t>(i)];
            if (seen >= rank && seen > 0)
                return std::min<std::int64_t>(std::llround(i == 0 ? 0.0 : bucket_middle(i)), max_ms);
        }
        return 0;
    };
    w.Key("length_ms");
    w.StartObject();
    w.Key("count");
    w.Uint64(count);
    w.Key("p50");
    w.Int64(quantile(0.50));
    w.Key("p95");
    w.Int64(quantile(0.95));
    w.Key("max");
    w.Int64(max_ms);
    w.EndObject();
    w.EndObject();

    w.Key("daily_active_users");
    w.StartArray();  // newest day first
    for (const auto& [day, users] : DailyEstimates()) {
        w.StartObject();
        w.Key("day");
        write_string(w, utc_day(day));
        w.Key("users");
        w.Int64(static_cast<std::int64_t>(users));
        w.EndObject();
    }
    w.EndArray();
}

// ---- handoff --------------------------------------------------------------------------------

void Stats::Save(JsonWriter& w) const {
    w.StartObject();
    w.Key("events_total");
    w.Int64(events_total_.load());
    w.Key("names");
    w.StartArray();  // [name, total, [[minute, count], ...]]
    for (const auto& shard : name_shards_) {
        std::lock_guard<std::mutex> lock(shard.mutex);
        for (const auto& [name, c] : shard.names) {
            w.StartArray();
            write_string(w, name);
            w.Uint64(c.total);
            w.StartArray();
            for (int i = 0; i < kMinutes; ++i) {
                if (c.per_minute[i] == 0)
                    continue;
                w.StartArray();
                w.Int64(c.minute_of[i]);
                w.Uint(c.per_minute[i]);
                w.EndArray();
            }
            w.EndArray();
            w.EndArray();
        }
    }
    w.EndArray();
    w.Key("open_sessions");
    w.StartArray();  // [session id, start ms]
    for (const auto& shard : session_shards_) {
        std::lock_guard<std::mutex> lock(shard.mutex);
        for (const auto& [id, start] : shard.started_ms) {
            w.StartArray();
            write_string(w, id);
            w.Int64(start);
            w.EndArray();
        }
    }
    w.EndArray();
    w.Key("sessions");
    w.StartArray();  // started, ended, untracked, open untracked, unmatched, max length
    for (const auto* a : {&sessions_started_, &sessions_ended_, &sessions_untracked_,
                          &sessions_open_untracked_, &sessions_unmatched_, &length_max_ms_})
        w.Int64(a->load());
    w.EndArray();
    w.Key("length_buckets");
    w.StartArray();
    for (const auto& b : length_buckets_)
        w.Uint64(b.load());
    w.EndArray();
    w.Key("dau");
    w.StartArray();  // [day, [[register index, rank], ...]] (non-zero registers only)
    constexpr std::uint32_t per_shard = (1u << kHllBits) / kShards;
    std::map<std::int64_t, std::vector<std::pair<std::uint32_t, std::uint8_t>>> days;
    for (int s = 0; s < kShards; ++s) {
        std::lock_guard<std::mutex> lock(day_shards_[s].mutex);
        for (const auto& [day, regs] : day_shards_[s].registers_by_day)
            for (std::uint32_t i = 0; i < per_shard; ++i)
                if (regs[i] != 0)
                    days[day].emplace_back(static_cast<std::uint32_t>(s) * per_shard + i, regs[i]);
    }
    for (const auto& [day, regs] : days) {
        w.StartArray();
        w.Int64(day);
        w.StartArray();
        for (const auto& [index, rank] : regs) {
            w.StartArray();
            w.Uint(index);
            w.Uint(rank);
            w.EndArray();
        }
        w.EndArray();
        w.EndArray();
    }
    w.EndArray();
    w.EndObject();
}

bool Stats::Merge(const rapidjson::Value& v) {
    // Validate the whole shape first, so a malformed blob merges nothing.
    auto arr = [&](const char* k) -> const rapidjson::Value* {
        auto it = v.FindMember(k);
        return it != v.MemberEnd() && it->value.IsArray() ? &it->value : nullptr;
    };
    const auto *names = arr("names"), *open = arr("open_sessions"), *sessions = arr("sessions"),
               *lengths = arr("length_buckets"), *dau = arr("dau");
    if (!v.IsObject() || !v.HasMember("events_total") || !v["events_total"].IsInt64() || !names ||
        !open || !sessions || sessions->Size() != 6 || !lengths ||
        lengths->Size() != kLengthBuckets || !dau)
        return false;
    for (const auto& n : names->GetArray())
        if (!n.IsArray() || n.Size() != 3 || !n[0].IsString() || !n[1].IsUint64() || !n[2].IsArray())
            return false;
    for (const auto& s : sessions->GetArray())
        if (!s.IsInt64())
            return false;

    events_total_.fetch_add(v["events_total"].GetInt64());
    for (const auto& n : names->GetArray()) {
        NameCounts from;
        int i = 0;
        for (const auto& m : n[2].GetArray()) {
            if (i == kMinutes || !m.IsArray() || m.Size() != 2 || !m[0].IsInt64() || !m[1].IsUint())
                continue;
            from.minute_of[static_cast<std::size_t>(i)] = m[0].GetInt64();
            from.per_minute[static_cast<std::size_t>(i)] = m[1].GetUint();
            ++i;
        }
        AddName(name_shards_[shard_of(n[0].GetString(), kShards)], n[0].GetString(), 0,
                n[1].GetUint64(), &from);
    }
    // Sessions still open in the old generation end in this one: remember their start.
    for (const auto& s : open->GetArray()) {
        if (!s.IsArray() || s.Size() != 2 || !s[0].IsString() || !s[1].IsInt64())
            continue;
        SessionShard& shard = session_shards_[shard_of(s[0].GetString(), kShards)];
        std::lock_guard<std::mutex> lock(shard.mutex);
        if (shard.started_ms.emplace(s[0].GetString(), s[1].GetInt64()).second) {
            open_tracked_.fetch_add(1, std::memory_order_relaxed);
            sessions_active_.fetch_add(1, std::memory_order_relaxed);
        }
    }
    const auto& s = *sessions;
    sessions_started_.fetch_add(s[0].GetInt64());
    sessions_ended_.fetch_add(s[1].GetInt64());
    sessions_untracked_.fetch_add(s[2].GetInt64());
    sessions_open_untracked_.fetch_add(s[3].GetInt64());
    sessions_active_.fetch_add(s[3].GetInt64());
    sessions_unmatched_.fetch_add(s[4].GetInt64());
    store_max(length_max_ms_, s[5].GetInt64());
    for (rapidjson::SizeType i = 0; i < lengths->Size(); ++i)
        if ((*lengths)[i].IsUint64())
            length_buckets_[i].fetch_add((*lengths)[i].GetUint64());
    for (const auto& d : dau->GetArray()) {
        if (!d.IsArray() || d.Size() != 2 || !d[0].IsInt64() || !d[1].IsArray())
            continue;
        for (const auto& r : d[1].GetArray())
            if (r.IsArray() && r.Size() == 2 && r[0].IsUint() && r[1].IsUint() &&
                r[0].GetUint() < (1u << kHllBits) && r[1].GetUint() <= 64)
                AddRegister(d[0].GetInt64(), r[0].GetUint(), static_cast<std::uint8_t>(r[1].GetUint()));
    }
    return true;
}

}  // namespace analytics
