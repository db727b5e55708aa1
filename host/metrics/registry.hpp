// Metrics registry: counters, gauges and histograms rendered as Prometheus
// text exposition (format 0.0.4).
//
// Every series name is "<prefix>_<name>" and carries the label node_name.
// counter()/gauge()/histogram() are thread-safe and return a reference that
// stays valid for the registry's lifetime: look a series up once, keep the
// reference, update it lock-free on hot paths. Asking again for the same name
// and labels returns the same series.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace nk::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

// Counters and gauges each take a cache line: the hot ones are written by different threads
// (producers count received events, workers count processed ones), and neighbours on one line
// would bounce it between cores on every update.
class alignas(64) Counter {
public:
    void inc(std::uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
    std::uint64_t value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::uint64_t> value_{0};
};

class alignas(64) Gauge {
public:
    void set(std::int64_t v) { value_.store(v, std::memory_order_relaxed); }
    void add(std::int64_t d) { value_.fetch_add(d, std::memory_order_relaxed); }
    std::int64_t value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<std::int64_t> value_{0};
};

// A gauge holding a double (plugin metrics: Nakama's gauges are float64).
class alignas(64) FloatGauge {
public:
    void set(double v) { value_.store(v, std::memory_order_relaxed); }
    double value() const { return value_.load(std::memory_order_relaxed); }

private:
    std::atomic<double> value_{0};
};

// Fixed buckets (upper bounds, ascending); observe() is lock-free.
class Histogram {
public:
    explicit Histogram(std::vector<double> bounds);
    void observe(double v);
    const std::vector<double>& bounds() const { return bounds_; }
    // Per-bucket (non-cumulative) counts; the last one is +Inf.
    std::vector<std::uint64_t> bucket_counts() const;
    std::uint64_t count() const { return count_.load(std::memory_order_relaxed); }
    double sum() const;

private:
    std::vector<double> bounds_;
    std::unique_ptr<std::atomic<std::uint64_t>[]> buckets_;
    std::atomic<std::uint64_t> count_{0};
    std::atomic<std::uint64_t> sum_micros_{0};  // sum in millionths, to stay lock-free
};

// Latency buckets in milliseconds, 0.05 ms .. 10 s.
std::vector<double> latency_ms_buckets();

class Registry {
public:
    Registry(std::string prefix, std::string node_name);

    Counter& counter(const std::string& name, const std::string& help, const Labels& labels = {});
    Gauge& gauge(const std::string& name, const std::string& help, const Labels& labels = {});
    FloatGauge& float_gauge(const std::string& name, const std::string& help,
                            const Labels& labels = {});
    Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                         const Labels& labels = {});

    // The whole registry as Prometheus text exposition.
    std::string render() const;
    const std::string& prefix() const { return prefix_; }

private:
    enum class Type { counter, gauge, float_gauge, histogram };
    struct Family {
        Type type;
        std::string help;
        std::map<Labels, std::unique_ptr<Counter>> counters;
        std::map<Labels, std::unique_ptr<Gauge>> gauges;
        std::map<Labels, std::unique_ptr<FloatGauge>> float_gauges;
        std::map<Labels, std::unique_ptr<Histogram>> histograms;
    };
    Family& family(const std::string& name, Type type, const std::string& help);

    std::string prefix_;
    std::string node_name_;
    mutable std::mutex mutex_;
    std::map<std::string, Family> families_;
};

}  // namespace nk::metrics
