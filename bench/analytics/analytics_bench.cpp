// bench_analytics [events=1000000] [runs=3]
//
// 1. Pipeline throughput, one producer, the default 8 workers: events/s handled with the
//    analytics sample loaded (forwarding off) vs a no-op handler plugin, measured in the same
//    run (median of `runs`). Target: analytics >= 0.5x the no-op figure.
// 2. Forwarding: the same with ANALYTICS_ENDPOINT pointing at a local collector (a
//    cpp-httplib server that counts the events of each /v1/batch): events/s delivered, from
//    the first submit until the collector has received every event.
#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include "events/pipeline.hpp"
#include "log/log.hpp"
#include "runtime/runtime.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Result {
    double handled_per_sec = 0;
    double delivered_per_sec = 0;
};

Result run_once(const char* plugin, std::size_t events, const std::string& endpoint,
                const std::atomic<std::size_t>* collected) {
    const fs::path dir = fs::temp_directory_path() /
                         ("nk-bench-analytics-" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir / "modules");
    fs::copy_file(plugin, dir / "modules" / fs::path(plugin).filename());
    nk::runtime::Options o;
    o.path = (dir / "modules").string();
    o.data_dir = dir.string();
    if (!endpoint.empty()) {
        o.env["ANALYTICS_ENDPOINT"] = endpoint;
        o.env["ANALYTICS_BUFFER_LIMIT"] = std::to_string(events);
        o.env["ANALYTICS_BATCH_SIZE"] = "500";
    }
    nk::runtime::Runtime rt(o, nk::runtime::Dependencies{});
    nk::events::Options eo;  // defaults: 8 workers, queue 65536
    eo.full_policy = nk::events::FullPolicy::reject;  // a full queue refuses; the producer retries
    nk::events::EventPipeline pipeline(eo, rt, nullptr);
    rt.set_event_sink(&pipeline);
    pipeline.start();
    if (!rt.load_all()) {
        std::fprintf(stderr, "%s did not load\n", plugin);
        std::exit(1);
    }
    const std::string names[] = {"level_up", "purchase", "match_end", "ad_view"};
    const auto t0 = Clock::now();
    for (std::size_t i = 0; i < events; ++i) {
        nk::events::Event e;
        e.name = names[i % 4];
        e.properties.emplace_back("level", std::to_string(i % 100));
        e.external = true;
        while (pipeline.submit(nk::events::Event(e)) != nk::events::SubmitResult::accepted)
            std::this_thread::yield();  // full: retry, so every event is handled
    }
    while (pipeline.stats().processed < events)
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    Result r;
    r.handled_per_sec = events / std::chrono::duration<double>(Clock::now() - t0).count();
    if (collected != nullptr) {
        while (collected->load() < events)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        r.delivered_per_sec = events / std::chrono::duration<double>(Clock::now() - t0).count();
    }
    rt.run_shutdown_handlers(std::chrono::seconds(5));
    pipeline.drain(std::chrono::seconds(5));
    fs::remove_all(dir);
    return r;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    const std::size_t events = argc > 1 ? std::strtoul(argv[1], nullptr, 10) : 1000000;
    const int runs = argc > 2 ? std::atoi(argv[2]) : 3;
    nk::log::Options lo;
    lo.level = "warn";
    nk::log::init(lo);

    std::vector<double> noop, analytics;
    for (int i = 0; i < runs; ++i) {  // alternate which goes first
        if (i % 2 == 0)
            noop.push_back(run_once(NK_BENCH_NOOP, events, "", nullptr).handled_per_sec);
        analytics.push_back(run_once(NK_BENCH_ANALYTICS, events, "", nullptr).handled_per_sec);
        if (i % 2 == 1)
            noop.push_back(run_once(NK_BENCH_NOOP, events, "", nullptr).handled_per_sec);
    }
    std::printf("pipeline, 1 producer, 8 workers, %zu events, median of %d\n", events, runs);
    std::printf("  no-op handler            %8.2f M events/s\n", median(noop) / 1e6);
    std::printf("  analytics (no forward)   %8.2f M events/s   %.2fx the no-op (target >= 0.5x)\n",
                median(analytics) / 1e6, median(analytics) / median(noop));

    // Forwarding to a local collector that counts the events it receives.
    std::atomic<std::size_t> collected{0};
    httplib::Server collector;
    collector.Post("/v1/batch", [&](const httplib::Request& req, httplib::Response& res) {
        std::size_t n = 0;
        for (std::size_t at = req.body.find("\"type\":\"track\""); at != std::string::npos;
             at = req.body.find("\"type\":\"track\"", at + 1))
            ++n;
        collected.fetch_add(n);
        res.set_content("{}", "application/json");
    });
    const int port = collector.bind_to_any_port("127.0.0.1");
    std::thread server([&] { collector.listen_after_bind(); });
    const std::size_t forward_events = std::min<std::size_t>(events, 200000);
    std::vector<double> delivered;
    for (int i = 0; i < runs; ++i) {
        collected = 0;
        delivered.push_back(run_once(NK_BENCH_ANALYTICS, forward_events,
                                     "http://127.0.0.1:" + std::to_string(port), &collected)
                                .delivered_per_sec);
    }
    collector.stop();
    server.join();
    std::printf("forwarding to a local collector (Segment /v1/batch, batches of 500), %zu events\n",
                forward_events);
    std::printf("  delivered                %8.2f k events/s (median of %d)\n",
                median(delivered) / 1e3, runs);
    return 0;
}
