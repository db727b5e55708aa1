#include "metrics/plugin_metrics.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <stdexcept>

namespace nk::metrics {
namespace {

constexpr const char* kHelp = "Plugin metric (nk.Metrics*)";
constexpr const char* kOverflowName = "plugin_metric_series_overflow";
constexpr const char* kOverflowHelp =
    "Plugin metric updates dropped: the metric already holds its maximum of tag sets "
    "(metric=\"\": the maximum of metric names was reached)";

std::atomic<std::uint64_t> next_serial{1};

bool identifier(std::string_view s, std::size_t max) {
    if (s.empty() || s.size() > max)
        return false;
    auto alpha = [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    };
    if (!alpha(s[0]))
        return false;
    for (char c : s)
        if (!alpha(c) && !(c >= '0' && c <= '9'))
            return false;
    return true;
}

bool valid_utf8(std::string_view s) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const std::size_t size = s.size();
    std::size_t i = 0;
    while (i < size) {
        const unsigned char c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t more;
        std::uint32_t cp;
        if ((c & 0xE0) == 0xC0) {
            more = 1;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            more = 2;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            more = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (size - i <= more)
            return false;
        for (std::size_t k = 1; k <= more; ++k) {
            if ((p[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i + k] & 0x3F);
        }
        static constexpr std::uint32_t smallest[] = {0, 0x80, 0x800, 0x10000};  // no overlongs
        if (cp < smallest[more] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += more + 1;
    }
    return true;
}

const char* kind_name(char k) {
    return k == 'c' ? "counter" : k == 'g' ? "gauge" : "timer";
}

void append_sized(std::string& key, std::string_view s) {
    const auto n = static_cast<std::uint32_t>(s.size());
    key.append(reinterpret_cast<const char*>(&n), sizeof n);
    key.append(s);
}

// What a thread remembers about a (metric, tags) key: the series, or (series null) the counter
// that counts updates refused by a cap.
struct CacheEntry {
    void* series = nullptr;
    Counter* overflow = nullptr;
};
constexpr std::size_t kThreadCacheEntries = 4096;  // then the cache starts over

std::unordered_map<std::string, CacheEntry>& thread_cache() {
    thread_local std::unordered_map<std::string, CacheEntry> cache;
    return cache;
}

std::vector<double> seconds_buckets() {
    std::vector<double> b = latency_ms_buckets();
    for (double& v : b)
        v /= 1000.0;
    return b;
}

}  // namespace

PluginMetrics::PluginMetrics(Registry& registry)
    : registry_(registry),
      serial_(next_serial.fetch_add(1, std::memory_order_relaxed)),
      names_overflow_(&registry.counter(kOverflowName, kOverflowHelp, {{"metric", ""}})) {}

PluginMetrics::~PluginMetrics() = default;

Status PluginMetrics::counter_add(std::string_view name, std::span<const Tag> tags,
                                  std::int64_t delta) {
    if (delta < 0)
        return Status::invalid_argument("counter " + std::string(name) +
                                        ": delta must not be negative");
    Status error;
    void* s = series(Kind::counter, name, tags, error);
    if (s != nullptr)
        static_cast<Counter*>(s)->inc(static_cast<std::uint64_t>(delta));
    return error;
}

Status PluginMetrics::gauge_set(std::string_view name, std::span<const Tag> tags, double value) {
    if (!std::isfinite(value))
        return Status::invalid_argument("gauge " + std::string(name) + ": value must be finite");
    Status error;
    void* s = series(Kind::gauge, name, tags, error);
    if (s != nullptr)
        static_cast<FloatGauge*>(s)->set(value);
    return error;
}

Status PluginMetrics::timer_record(std::string_view name, std::span<const Tag> tags,
                                   std::chrono::nanoseconds duration) {
    if (duration.count() < 0)
        return Status::invalid_argument("timer " + std::string(name) +
                                        ": duration must not be negative");
    Status error;
    void* s = series(Kind::timer, name, tags, error);
    if (s != nullptr)
        static_cast<Histogram*>(s)->observe(std::chrono::duration<double>(duration).count());
    return error;
}

void* PluginMetrics::series(Kind kind, std::string_view name, std::span<const Tag> tags,
                            Status& error) {
    if (tags.size() > kMaxTags) {
        error = Status::invalid_argument("metric " + std::string(name) + ": more than " +
                                         std::to_string(kMaxTags) + " tags");
        return nullptr;
    }
    // Tags in key order, so {a,b} and {b,a} are one series.
    std::array<Tag, kMaxTags> sorted;
    std::copy(tags.begin(), tags.end(), sorted.begin());
    std::sort(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(tags.size()),
              [](const Tag& a, const Tag& b) { return a.key < b.key; });
    const std::span<const Tag> ordered(sorted.data(), tags.size());

    // Key: instance serial, kind, then length-prefixed name and tags (any byte may occur).
    thread_local std::string key;
    key.clear();
    key.append(reinterpret_cast<const char*>(&serial_), sizeof serial_);
    key.push_back(static_cast<char>(kind));
    append_sized(key, name);
    for (const Tag& t : ordered) {
        append_sized(key, t.key);
        append_sized(key, t.value);
    }

    auto& cache = thread_cache();
    if (auto it = cache.find(key); it != cache.end()) {
        if (it->second.series != nullptr)
            return it->second.series;
        it->second.overflow->inc();
        error = Status(Code::resource_exhausted,
                       "metric " + std::string(name) + ": too many tag sets, update dropped");
        return nullptr;
    }
    return create(kind, name, ordered, key, error);
}

void* PluginMetrics::create(Kind kind, std::string_view name, std::span<const Tag> tags,
                            std::string& key, Status& error) {
    const std::string metric(name);
    if (!identifier(name, kMaxNameBytes)) {
        error = Status::invalid_argument(
            "invalid metric name \"" + metric.substr(0, kMaxNameBytes) +
            "\": 1-64 characters of [a-zA-Z0-9_], not starting with a digit");
        return nullptr;
    }
    for (std::size_t i = 0; i < tags.size(); ++i) {
        const Tag& t = tags[i];
        const std::string tag_key(t.key.substr(0, kMaxNameBytes));
        if (!identifier(t.key, kMaxNameBytes) || t.key.starts_with("__") || t.key == "node_name" ||
            t.key == "le") {
            error = Status::invalid_argument(
                "metric " + metric + ": invalid tag key \"" + tag_key +
                "\": 1-64 characters of [a-zA-Z0-9_], not starting with a digit or \"__\", not "
                "node_name or le");
            return nullptr;
        }
        if (i > 0 && tags[i - 1].key == t.key) {
            error = Status::invalid_argument("metric " + metric + ": tag \"" + tag_key +
                                             "\" given twice");
            return nullptr;
        }
        if (t.value.size() > kMaxTagValueBytes || !valid_utf8(t.value)) {
            error = Status::invalid_argument("metric " + metric + ": the value of tag \"" +
                                             tag_key + "\" must be valid UTF-8 of at most " +
                                             std::to_string(kMaxTagValueBytes) + " bytes");
            return nullptr;
        }
    }

    CacheEntry entry;
    {
        std::lock_guard lock(mutex_);
        auto m = metrics_.find(metric);
        if (m == metrics_.end()) {
            if (metrics_.size() >= kMaxMetrics) {
                entry.overflow = names_overflow_;
            } else {
                m = metrics_.emplace(metric, Metric{kind}).first;
            }
        }
        if (entry.overflow == nullptr) {
            if (m->second.kind != kind) {
                error = Status::invalid_argument("metric " + metric + " is a " +
                                                 kind_name(static_cast<char>(m->second.kind)) +
                                                 ", not a " + kind_name(static_cast<char>(kind)));
                return nullptr;
            }
            if (auto s = series_.find(key); s != series_.end()) {
                entry.series = s->second;
            } else if (m->second.series >= kMaxSeriesPerMetric) {
                if (m->second.overflow == nullptr)
                    m->second.overflow =
                        &registry_.counter(kOverflowName, kOverflowHelp, {{"metric", metric}});
                entry.overflow = m->second.overflow;
            } else {
                Labels labels;
                labels.reserve(tags.size());
                for (const Tag& t : tags)
                    labels.emplace_back(std::string(t.key), std::string(t.value));
                const std::string full = "custom_" + metric;
                try {
                    switch (kind) {
                        case Kind::counter:
                            entry.series = &registry_.counter(full, kHelp, labels);
                            break;
                        case Kind::gauge:
                            entry.series = &registry_.float_gauge(full, kHelp, labels);
                            break;
                        case Kind::timer:
                            entry.series =
                                &registry_.histogram(full, kHelp, seconds_buckets(), labels);
                            break;
                    }
                } catch (const std::logic_error&) {
                    // The registry already has this name with another type (an earlier
                    // runtime sharing the registry registered it).
                    error = Status::invalid_argument("metric " + metric +
                                                     " already exists with another type");
                    return nullptr;
                }
                series_.emplace(key, entry.series);
                ++m->second.series;
            }
        }
    }

    auto& cache = thread_cache();
    if (cache.size() >= kThreadCacheEntries)
        cache.clear();
    cache.emplace(key, entry);
    if (entry.series != nullptr)
        return entry.series;
    entry.overflow->inc();
    error = Status(Code::resource_exhausted,
                   entry.overflow == names_overflow_
                       ? "metric " + metric + ": too many metric names, update dropped"
                       : "metric " + metric + ": too many tag sets, update dropped");
    return nullptr;
}

}  // namespace nk::metrics
