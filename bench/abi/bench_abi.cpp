// bench_abi: calls per second through the plugin ABI (event handler, after-hook)
// against a direct C++ call doing the same work, all in one run.
//
// usage: bench_abi [iterations]   (plugin path from NK_BENCH_ABI_PLUGIN, set at build time)
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <string>

#include <rapidjson/document.h>

#include "events/event.hpp"
#include "runtime/runtime.hpp"

namespace {

std::atomic<long> direct_calls{0};

template <class F>
double calls_per_sec(long n, F&& f) {
    for (long i = 0; i < n / 10; ++i)
        f();  // warm up
    const auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i)
        f();
    const std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
    return static_cast<double>(n) / dt.count();
}

void row(const char* what, double rate, double baseline) {
    std::printf("%-56s %12.0f calls/s  %7.2fx the baseline's time per call\n", what, rate,
                baseline / rate);
}

}  // namespace

int main(int argc, char** argv) {
    const long n = argc > 1 ? std::atol(argv[1]) : 2000000;
    namespace fs = std::filesystem;
    const fs::path tmp = fs::temp_directory_path() / ("nk-bench-abi-" + std::to_string(::getpid()));
    fs::create_directories(tmp / "modules");
    fs::copy_file(NK_BENCH_ABI_PLUGIN, tmp / "modules" / "bench_plugin.so");

    nk::runtime::Options o;
    o.path = (tmp / "modules").string();
    o.data_dir = tmp.string();
    o.node = "bench";
    nk::runtime::Runtime rt(o, {});
    if (auto st = rt.load_all(); !st) {
        std::fprintf(stderr, "%s\n", st.message().c_str());
        return 1;
    }
    auto set = rt.handlers();

    nk::events::Event evt;
    evt.name = "level_up";
    evt.properties = {{"level", "3"}, {"class", "mage"}};
    evt.external = true;
    nk::RequestContext evt_ctx;
    evt_ctx.execution_mode = "event";
    evt_ctx.user_id = "3f1e2d4c-0000-4000-8000-000000000001";
    evt_ctx.username = "alice";
    evt.set_context(evt_ctx);

    // Baselines: the same work as a C++ std::function in the host.
    std::function<void(const nk::events::Event&)> direct_event = [](const nk::events::Event& e) {
        if (!e.name.empty())
            direct_calls.fetch_add(1, std::memory_order_relaxed);
    };
    std::function<void(std::string_view)> direct_after = [](std::string_view in_json) {
        rapidjson::Document d;  // the wrapped hook parses its typed request too
        d.Parse(in_json.data(), in_json.size());
        if (d.IsObject() && d.HasMember("display_name"))
            direct_calls.fetch_add(1, std::memory_order_relaxed);
    };
    const std::string in_json = "{\"display_name\":\"Bob\"}";
    nk::RequestContext ctx = evt.context();

    std::printf("bench_abi: %ld calls per row\n", n);
    const double ev_direct = calls_per_sec(n, [&] { direct_event(evt); });
    const double ev_raw = calls_per_sec(n, [&] { set->custom[1](evt); });
    const double ev_wrapped = calls_per_sec(n, [&] { set->custom[0](evt); });
    row("event handler, direct C++ std::function (baseline)", ev_direct, ev_direct);
    row("event handler via C ABI, raw C callback", ev_raw, ev_direct);
    row("event handler via C ABI, sdk.hpp wrapper", ev_wrapped, ev_direct);

    const double af_direct = calls_per_sec(n / 4, [&] { direct_after(in_json); });
    const double af_raw = calls_per_sec(n / 4, [&] { rt.after(nullptr, "Event", ctx, "", in_json); });
    const double af_wrapped =
        calls_per_sec(n / 4, [&] { rt.after(nullptr, "UpdateAccount", ctx, "", in_json); });
    row("after-hook, direct C++ (parse JSON + call) (baseline)", af_direct, af_direct);
    row("after-hook via RuntimeBridge + C ABI, raw C callback", af_raw, af_direct);
    row("after-hook via RuntimeBridge + C ABI, sdk.hpp typed", af_wrapped, af_direct);

    std::error_code ec;
    fs::remove_all(tmp, ec);
    return direct_calls.load() > 0 ? 0 : 1;
}
