#include "forwarder.hpp"

#include "env.hpp"

#include <httplib.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

namespace analytics {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// Segment refuses a batch above 500 KB; stay under it.
constexpr std::size_t kMaxBatchBytes = 480 * 1024;
constexpr milliseconds kBackoffBase{100};
constexpr milliseconds kBackoffCap{30000};
constexpr milliseconds kRetryAfterCap{600000};

}  // namespace

std::string random_uuid() {
    // splitmix64 over one atomic counter: lock-free and thread-safe; seeded once per module
    // generation from the OS. Only used when the host gives no event id (see analytics.cpp).
    static std::atomic<std::uint64_t> state{(std::uint64_t{std::random_device{}()} << 32) ^
                                            std::random_device{}()};
    auto next = [] {
        std::uint64_t z = state.fetch_add(0x9e3779b97f4a7c15ull, std::memory_order_relaxed) +
                          0x9e3779b97f4a7c15ull;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
    };
    const std::uint64_t hi = (next() & ~0xf000ull) | 0x4000ull;  // version 4
    const std::uint64_t lo = (next() & ~(3ull << 62)) | (2ull << 62);  // variant 10
    char buf[37];
    std::snprintf(buf, sizeof buf, "%08llx-%04llx-%04llx-%04llx-%012llx",
                  static_cast<unsigned long long>(hi >> 32),
                  static_cast<unsigned long long>((hi >> 16) & 0xffff),
                  static_cast<unsigned long long>(hi & 0xffff),
                  static_cast<unsigned long long>(lo >> 48),
                  static_cast<unsigned long long>(lo & 0xffffffffffffull));
    return buf;
}

bool ForwarderOptions::FromEnv(const std::map<std::string, std::string>& env,
                               ForwarderOptions& out, std::string& error) {
    if (auto it = env.find("ANALYTICS_ENDPOINT"); it != env.end())
        out.endpoint = it->second;
    if (auto it = env.find("ANALYTICS_WRITE_KEY"); it != env.end())
        out.write_key = it->second;
    while (!out.endpoint.empty() && out.endpoint.back() == '/')
        out.endpoint.pop_back();
    if (!out.endpoint.empty() && out.endpoint.rfind("http://", 0) != 0 &&
        out.endpoint.rfind("https://", 0) != 0) {
        error = "ANALYTICS_ENDPOINT must start with http:// or https://, got \"" + out.endpoint + "\"";
        return false;
    }
    long long batch = static_cast<long long>(out.batch_size),
              interval = out.flush_interval.count(),
              limit = static_cast<long long>(out.buffer_limit), timeout = out.timeout.count();
    if (!EnvInteger(env, "ANALYTICS_BATCH_SIZE", 1, 2000, batch, error) ||
        !EnvInteger(env, "ANALYTICS_FLUSH_INTERVAL_MS", 10, 600000, interval, error) ||
        !EnvInteger(env, "ANALYTICS_BUFFER_LIMIT", 1, 10000000, limit, error) ||
        !EnvInteger(env, "ANALYTICS_TIMEOUT_MS", 100, 600000, timeout, error))
        return false;
    out.batch_size = static_cast<std::size_t>(batch);
    out.flush_interval = milliseconds(interval);
    out.buffer_limit = static_cast<std::size_t>(limit);
    out.timeout = milliseconds(timeout);
    return true;
}

Forwarder::Forwarder(ForwarderOptions options, nk::Logger logger)
    : options_(std::move(options)), logger_(logger) {
    // "https://api.segment.io/prefix" -> host "https://api.segment.io", path "/prefix/v1/batch".
    const auto scheme_end = options_.endpoint.find("://");
    const auto path_start = scheme_end == std::string::npos
                                ? std::string::npos
                                : options_.endpoint.find('/', scheme_end + 3);
    host_ = options_.endpoint.substr(0, path_start);
    batch_path_ =
        (path_start == std::string::npos ? "" : options_.endpoint.substr(path_start)) + "/v1/batch";
    // The buffer is split into shards of equal size; fewer shards than events.
    shard_limit_ = std::max<std::size_t>(options_.buffer_limit / kShards, 1);
}

Forwarder::~Forwarder() {
    Halt();
}

void Forwarder::Start() {
    if (!enabled() || thread_.joinable())
        return;
    client_ = std::make_unique<httplib::Client>(host_);
    client_->set_keep_alive(true);
    client_->set_basic_auth(options_.write_key.c_str(), "");
    thread_ = std::thread([this] { Run(); });
}

void Forwarder::Push(Shard& shard, Item item) {
    std::lock_guard<std::mutex> lock(shard.mutex);
    if (shard.items.size() >= shard_limit_) {
        shard.items.pop_front();  // full: the oldest goes
        dropped_.fetch_add(1, std::memory_order_relaxed);
        buffered_.fetch_sub(1, std::memory_order_relaxed);
    }
    shard.items.push_back(std::move(item));
    buffered_.fetch_add(1, std::memory_order_relaxed);
}

void Forwarder::Enqueue(std::string message_id, std::string track_json) {
    // Round-robin over the shards: one atomic increment, then a lock no other worker is likely
    // to hold. With kShards shards of buffer_limit/kShards, the oldest event of a shard is
    // within kShards events of the oldest overall.
    const std::size_t used = std::min(kShards, options_.buffer_limit);
    Shard& shard = shards_[next_shard_.fetch_add(1, std::memory_order_relaxed) % used];
    Push(shard, Item{std::move(message_id), std::move(track_json)});
    const auto n = enqueued_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (n % static_cast<std::int64_t>(options_.batch_size) == 0) {
        // Once per batch_size events (not per event): wake the thread in case a batch is ready.
        // A wake-up missed here costs at most one flush interval.
        std::lock_guard<std::mutex> lock(wake_mutex_);
        wake_.notify_one();
    }
}

void Forwarder::TakeBatch() {
    std::vector<Item> batch;
    std::size_t bytes = 0;
    // Oldest first within each shard, one event per shard in turn.
    for (bool took = true; took && batch.size() < options_.batch_size;) {
        took = false;
        for (auto& shard : shards_) {
            if (batch.size() >= options_.batch_size)
                break;
            std::lock_guard<std::mutex> lock(shard.mutex);
            if (shard.items.empty())
                continue;
            if (!batch.empty() && bytes + shard.items.front().json.size() > kMaxBatchBytes)
                continue;
            bytes += shard.items.front().json.size() + 1;
            batch.push_back(std::move(shard.items.front()));
            shard.items.pop_front();
            buffered_.fetch_sub(1, std::memory_order_relaxed);
            took = true;
        }
    }
    std::lock_guard<std::mutex> lock(inflight_mutex_);
    inflight_ = std::move(batch);
}

milliseconds Forwarder::Backoff(int attempt) {
    // Exponential, capped, with "equal jitter": half fixed, half random.
    const milliseconds full =
        std::min(kBackoffCap, milliseconds(kBackoffBase.count() << std::min(attempt, 20)));
    std::uniform_int_distribution<long long> half(0, full.count() / 2);
    return milliseconds(full.count() - full.count() / 2 + half(jitter_));
}

Forwarder::Outcome Forwarder::SendInflight(milliseconds timeout, milliseconds& retry_after) {
    std::string body = "{\"batch\":[";
    std::size_t count = 0;
    {
        std::lock_guard<std::mutex> lock(inflight_mutex_);
        for (const auto& item : inflight_) {
            if (count++ != 0)
                body += ',';
            body += item.json;
        }
    }
    const std::int64_t now = now_ms();
    body += "],\"sentAt\":\"" +
            nk::json::format_rfc3339(now / 1000, static_cast<std::int32_t>(now % 1000) * 1000000) +
            "\"}";

    const auto seconds = static_cast<time_t>(timeout.count() / 1000);
    const auto micros = static_cast<time_t>(timeout.count() % 1000 * 1000);
    client_->set_connection_timeout(seconds, micros);
    client_->set_read_timeout(seconds, micros);
    client_->set_write_timeout(seconds, micros);
    batches_.fetch_add(1, std::memory_order_relaxed);
    auto res = client_->Post(batch_path_.c_str(), body, "application/json");

    auto fail = [&](const std::string& what) {
        failed_requests_.fetch_add(1, std::memory_order_relaxed);
        std::lock_guard<std::mutex> lock(error_mutex_);
        last_error_ = what;
    };
    if (!res) {
        fail("network: " + httplib::to_string(res.error()));
        return Outcome::retry;
    }
    const int status = res->status;
    if (status >= 200 && status < 300) {
        delivered_.fetch_add(static_cast<std::int64_t>(count), std::memory_order_relaxed);
        return Outcome::delivered;
    }
    fail("HTTP " + std::to_string(status) + ": " + res->body.substr(0, 200));
    if (status == 429 || status >= 500) {
        // Retry-After in seconds (an HTTP-date is not honoured: the backoff applies).
        const std::string ra = res->get_header_value("Retry-After");
        char* end = nullptr;
        const long long secs = ra.empty() ? -1 : std::strtoll(ra.c_str(), &end, 10);
        if (secs >= 0 && end != nullptr && *end == '\0')
            retry_after = std::min(milliseconds(secs * 1000), kRetryAfterCap);
        return Outcome::retry;
    }
    logger_.Error("analytics: collector refused a batch of %zu events with HTTP %d (not retried): %s",
                  count, status, res->body.substr(0, 200).c_str());
    rejected_.fetch_add(static_cast<std::int64_t>(count), std::memory_order_relaxed);
    return Outcome::rejected;
}

void Forwarder::Run() {
    auto next_flush = Clock::now() + options_.flush_interval;
    auto retry_at = Clock::now();
    int attempt = 0;
    for (;;) {
        bool have_batch;
        {
            std::lock_guard<std::mutex> lock(inflight_mutex_);
            have_batch = !inflight_.empty();
        }
        {
            std::unique_lock<std::mutex> lock(wake_mutex_);
            const auto until = have_batch ? retry_at : next_flush;
            wake_.wait_until(lock, until, [&] {
                return mode_ != Mode::run ||
                       (!have_batch && static_cast<std::size_t>(buffered_.load()) >=
                                           options_.batch_size);
            });
            if (mode_ == Mode::halt)
                return;
            if (mode_ == Mode::drain)
                break;
        }
        const auto now = Clock::now();
        if (!have_batch) {
            if (now < next_flush &&
                static_cast<std::size_t>(buffered_.load()) < options_.batch_size)
                continue;  // woken early
            next_flush = now + options_.flush_interval;
            TakeBatch();
            attempt = 0;
            continue;
        }
        if (now < retry_at)
            continue;
        milliseconds retry_after{-1};
        const Outcome outcome = SendInflight(options_.timeout, retry_after);
        if (outcome == Outcome::retry) {
            retries_.fetch_add(1, std::memory_order_relaxed);
            retry_at = Clock::now() + (retry_after.count() >= 0 ? retry_after : Backoff(attempt++));
            continue;
        }
        std::lock_guard<std::mutex> lock(inflight_mutex_);
        inflight_.clear();
    }
    DrainAll(drain_deadline_);
}

void Forwarder::DrainAll(Clock::time_point deadline) {
    int attempt = 0;
    for (;;) {
        bool have_batch;
        {
            std::lock_guard<std::mutex> lock(inflight_mutex_);
            have_batch = !inflight_.empty();
        }
        if (!have_batch) {
            TakeBatch();
            std::lock_guard<std::mutex> lock(inflight_mutex_);
            if (inflight_.empty())
                return;  // all sent
        }
        const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            break;
        milliseconds retry_after{-1};
        const Outcome outcome = SendInflight(std::min(options_.timeout, left), retry_after);
        if (outcome == Outcome::retry) {
            retries_.fetch_add(1, std::memory_order_relaxed);
            const auto wait = retry_after.count() >= 0 ? retry_after : Backoff(attempt++);
            if (Clock::now() + wait >= deadline)
                break;
            std::unique_lock<std::mutex> lock(wake_mutex_);
            if (wake_.wait_for(lock, wait, [&] { return mode_ == Mode::halt; }))
                break;
            continue;
        }
        attempt = 0;
        std::lock_guard<std::mutex> lock(inflight_mutex_);
        inflight_.clear();
    }
    const auto left = buffered_.load() + [&] {
        std::lock_guard<std::mutex> lock(inflight_mutex_);
        return static_cast<std::int64_t>(inflight_.size());
    }();
    logger_.Warn("analytics: shutdown grace over with %lld events unsent (%s)",
                 static_cast<long long>(left), [&] {
                     std::lock_guard<std::mutex> lock(error_mutex_);
                     return last_error_;
                 }().c_str());
}

void Forwarder::Drain(milliseconds budget) {
    {
        std::lock_guard<std::mutex> lock(wake_mutex_);
        if (mode_ == Mode::run)
            mode_ = Mode::drain;
        drain_deadline_ = Clock::now() + budget;
    }
    wake_.notify_all();
    if (thread_.joinable())
        thread_.join();
}

void Forwarder::Halt() {
    {
        std::lock_guard<std::mutex> lock(wake_mutex_);
        mode_ = Mode::halt;
    }
    wake_.notify_all();
    if (client_)
        client_->stop();  // cuts a request in flight short; its batch stays for the handoff
    if (thread_.joinable())
        thread_.join();
}

// ---- reporting and handoff ------------------------------------------------------------------

void Forwarder::WriteJson(JsonWriter& w) const {
    w.StartObject();
    w.Key("enabled");
    w.Bool(enabled());
    w.Key("endpoint");
    w.String(options_.endpoint.c_str());
    std::int64_t inflight;
    {
        std::lock_guard<std::mutex> lock(inflight_mutex_);
        inflight = static_cast<std::int64_t>(inflight_.size());
    }
    const std::pair<const char*, std::int64_t> counters[] = {
        {"enqueued", enqueued_.load()},   {"delivered", delivered_.load()},
        {"dropped", dropped_.load()},     {"rejected", rejected_.load()},
        {"buffered", buffered_.load()},   {"in_flight", inflight},
        {"batches", batches_.load()},     {"retries", retries_.load()},
        {"failed_requests", failed_requests_.load()},
    };
    for (const auto& [key, value] : counters) {
        w.Key(key);
        w.Int64(value);
    }
    w.Key("last_error");
    std::lock_guard<std::mutex> lock(error_mutex_);
    w.String(last_error_.c_str());
    w.EndObject();
}

void Forwarder::Save(JsonWriter& w) const {
    w.StartObject();
    w.Key("counters");
    w.StartArray();  // enqueued, delivered, dropped, rejected, batches, retries, failed requests
    for (const auto* a : {&enqueued_, &delivered_, &dropped_, &rejected_, &batches_, &retries_,
                          &failed_requests_})
        w.Int64(a->load());
    w.EndArray();
    w.Key("unsent");
    w.StartArray();  // [messageId, track JSON], the batch in flight first
    auto put = [&](const Item& item) {
        w.StartArray();
        w.String(item.message_id.c_str());
        w.String(item.json.data(), static_cast<rapidjson::SizeType>(item.json.size()));
        w.EndArray();
    };
    {
        std::lock_guard<std::mutex> lock(inflight_mutex_);
        for (const auto& item : inflight_)
            put(item);
    }
    for (const auto& shard : shards_) {
        std::lock_guard<std::mutex> lock(shard.mutex);
        for (const auto& item : shard.items)
            put(item);
    }
    w.EndArray();
    w.EndObject();
}

bool Forwarder::Merge(const rapidjson::Value& v) {
    if (!v.IsObject() || !v.HasMember("counters") || !v["counters"].IsArray() ||
        v["counters"].Size() != 7 || !v.HasMember("unsent") || !v["unsent"].IsArray())
        return false;
    const auto& c = v["counters"];
    for (const auto& n : c.GetArray())
        if (!n.IsInt64())
            return false;
    // The predecessor's unsent events count as enqueued here again when re-buffered: take them
    // out of its enqueued count so that the sum stays right.
    std::int64_t unsent = 0;
    for (const auto& u : v["unsent"].GetArray()) {
        if (!u.IsArray() || u.Size() != 2 || !u[0].IsString() || !u[1].IsString())
            continue;
        ++unsent;
        const std::size_t used = std::min(kShards, options_.buffer_limit);
        Push(shards_[next_shard_.fetch_add(1, std::memory_order_relaxed) % used],
             Item{u[0].GetString(), std::string(u[1].GetString(), u[1].GetStringLength())});
        enqueued_.fetch_add(1, std::memory_order_relaxed);
    }
    enqueued_.fetch_add(c[0].GetInt64() - unsent);
    delivered_.fetch_add(c[1].GetInt64());
    dropped_.fetch_add(c[2].GetInt64());
    rejected_.fetch_add(c[3].GetInt64());
    batches_.fetch_add(c[4].GetInt64());
    retries_.fetch_add(c[5].GetInt64());
    failed_requests_.fetch_add(c[6].GetInt64());
    return true;
}

}  // namespace analytics
