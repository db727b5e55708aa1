// PluginMetrics: the metrics plugins create at run time (Nakama's MetricsCounterAdd,
// MetricsGaugeSet, MetricsTimerRecord), kept in the Registry as "custom_<name>" so they are
// exported as <metrics.prefix>_custom_<name> (Nakama's custom scope) with the plugin's tags as
// labels.
//
// Plugins are outside input, so everything is bounded and checked before it reaches the
// exposition: names and tag keys are Prometheus label/metric identifiers, values valid UTF-8 of
// bounded size, and each metric holds at most kMaxSeriesPerMetric tag sets (kMaxMetrics names in
// all). An update beyond a cap is dropped and counted in plugin_metric_series_overflow{metric}.
//
// Thread-safe. The hot path (a tag set seen before by this thread) takes no lock: each thread
// keeps a small cache from (metric, tags) to the series, whose address never changes.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/status.hpp"
#include "metrics/registry.hpp"

namespace nk::metrics {

class PluginMetrics {
  public:
    static constexpr std::size_t kMaxNameBytes = 64;  // metric names and tag keys
    static constexpr std::size_t kMaxTags = 8;        // tags per update
    static constexpr std::size_t kMaxTagValueBytes = 256;
    static constexpr std::size_t kMaxSeriesPerMetric = 256;  // tag sets per metric
    static constexpr std::size_t kMaxMetrics = 1000;         // metric names in all

    struct Tag {
        std::string_view key, value;
    };

    explicit PluginMetrics(Registry& registry);
    ~PluginMetrics();
    PluginMetrics(const PluginMetrics&) = delete;
    PluginMetrics& operator=(const PluginMetrics&) = delete;

    // Each returns invalid_argument (nothing recorded) for a bad name, tag or value, or a name
    // in use with another type; resource_exhausted when a cap dropped the update.
    Status counter_add(std::string_view name, std::span<const Tag> tags, std::int64_t delta);
    Status gauge_set(std::string_view name, std::span<const Tag> tags, double value);
    Status timer_record(std::string_view name, std::span<const Tag> tags,
                        std::chrono::nanoseconds duration);

  private:
    enum class Kind : char { counter = 'c', gauge = 'g', timer = 't' };
    struct Metric {
        Kind kind;
        std::size_t series = 0;
        Counter* overflow = nullptr;
    };

    // The series for (kind, name, tags): from this thread's cache, else validated and created.
    // Null with `error` set when refused.
    void* series(Kind kind, std::string_view name, std::span<const Tag> tags, Status& error);
    void* create(Kind kind, std::string_view name, std::span<const Tag> tags, std::string& key,
                 Status& error);

    Registry& registry_;
    const std::uint64_t serial_;  // tells this instance's entries apart in the thread caches
    std::mutex mutex_;            // guards the maps below (slow path only)
    std::unordered_map<std::string, Metric> metrics_;
    std::unordered_map<std::string, void*>
        series_;  // key (see .cpp) -> Counter/FloatGauge/Histogram
    Counter* names_overflow_;
};

}  // namespace nk::metrics
