#include "metrics/registry.hpp"

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace nk::metrics {

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), buckets_(new std::atomic<std::uint64_t>[bounds_.size() + 1]) {
    for (std::size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0);
}

void Histogram::observe(double v) {
    std::size_t i = 0;
    while (i < bounds_.size() && v > bounds_[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    count_.fetch_add(1, std::memory_order_relaxed);
    if (v > 0) sum_micros_.fetch_add(static_cast<std::uint64_t>(std::llround(v * 1e6)), std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::bucket_counts() const {
    std::vector<std::uint64_t> out(bounds_.size() + 1);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
    return out;
}

double Histogram::sum() const { return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6; }

std::vector<double> latency_ms_buckets() {
    return {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000};
}

Registry::Registry(std::string prefix, std::string node_name)
    : prefix_(std::move(prefix)), node_name_(std::move(node_name)) {}

Registry::Family& Registry::family(const std::string& name, Type type, const std::string& help) {
    auto [it, inserted] = families_.try_emplace(name);
    if (inserted) {
        it->second.type = type;
        it->second.help = help;
    } else if (it->second.type != type) {
        throw std::logic_error("metric " + name + " registered with two types");
    }
    return it->second;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto& slot = family(name, Type::counter, help).counters[labels];
    if (!slot) slot = std::make_unique<Counter>();
    return *slot;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto& slot = family(name, Type::gauge, help).gauges[labels];
    if (!slot) slot = std::make_unique<Gauge>();
    return *slot;
}

FloatGauge& Registry::float_gauge(const std::string& name, const std::string& help,
                                 const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto& slot = family(name, Type::float_gauge, help).float_gauges[labels];
    if (!slot) slot = std::make_unique<FloatGauge>();
    return *slot;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                               const Labels& labels) {
    std::lock_guard lock(mutex_);
    auto& slot = family(name, Type::histogram, help).histograms[labels];
    if (!slot) slot = std::make_unique<Histogram>(std::move(bounds));
    return *slot;
}

namespace {

void append_escaped_label(std::string& out, const std::string& v) {
    for (char c : v) {
        if (c == '\\') out += "\\\\";
        else if (c == '"') out += "\\\"";
        else if (c == '\n') out += "\\n";
        else out.push_back(c);
    }
}

void append_help(std::string& out, const std::string& help) {
    for (char c : help) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else out.push_back(c);
    }
}

std::string label_set(const std::string& node, const Labels& labels, const char* extra_key = nullptr,
                      const std::string& extra_value = {}) {
    std::string out = "{node_name=\"";
    append_escaped_label(out, node);
    out += '"';
    for (const auto& [k, v] : labels) {
        out += ',';
        out += k;
        out += "=\"";
        append_escaped_label(out, v);
        out += '"';
    }
    if (extra_key) {
        out += ',';
        out += extra_key;
        out += "=\"";
        out += extra_value;
        out += '"';
    }
    out += '}';
    return out;
}

std::string format_double(double v) {
    if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
    char buf[64];
    auto res = std::to_chars(buf, buf + sizeof buf, v);  // shortest form that reads back the same
    return std::string(buf, res.ptr);
}

}  // namespace

std::string Registry::render() const {
    std::lock_guard lock(mutex_);
    std::string out;
    out.reserve(4096);
    for (const auto& [name, fam] : families_) {
        const std::string full = prefix_.empty() ? name : prefix_ + "_" + name;
        out += "# HELP " + full + ' ';
        append_help(out, fam.help);
        out += '\n';
        switch (fam.type) {
            case Type::counter:
                out += "# TYPE " + full + " counter\n";
                for (const auto& [labels, c] : fam.counters)
                    out += full + label_set(node_name_, labels) + ' ' + std::to_string(c->value()) + '\n';
                break;
            case Type::gauge:
                out += "# TYPE " + full + " gauge\n";
                for (const auto& [labels, g] : fam.gauges)
                    out += full + label_set(node_name_, labels) + ' ' + std::to_string(g->value()) + '\n';
                break;
            case Type::float_gauge:
                out += "# TYPE " + full + " gauge\n";
                for (const auto& [labels, g] : fam.float_gauges)
                    out += full + label_set(node_name_, labels) + ' ' + format_double(g->value()) + '\n';
                break;
            case Type::histogram:
                out += "# TYPE " + full + " histogram\n";
                for (const auto& [labels, h] : fam.histograms) {
                    auto counts = h->bucket_counts();
                    std::uint64_t cumulative = 0;
                    for (std::size_t i = 0; i < counts.size(); ++i) {
                        cumulative += counts[i];
                        const std::string le =
                            i < h->bounds().size() ? format_double(h->bounds()[i]) : std::string("+Inf");
                        out += full + "_bucket" + label_set(node_name_, labels, "le", le) + ' ' +
                               std::to_string(cumulative) + '\n';
                    }
                    out += full + "_sum" + label_set(node_name_, labels) + ' ' + format_double(h->sum()) + '\n';
                    out += full + "_count" + label_set(node_name_, labels) + ' ' + std::to_string(cumulative) + '\n';
                }
                break;
        }
    }
    return out;
}

}  // namespace nk::metrics
