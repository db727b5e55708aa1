// nkhost: argument handling and signals only; App does the wiring.
//
//   nkhost [--config FILE]... [--key value]...   run the server
//   nkhost check [--config FILE]... [--key value]...   load every plugin, report, exit
//   nkhost check --help                                  what check does, its exit codes
#include <cstdlib>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "app/app.hpp"
#include "config/config.hpp"
#include "log/log.hpp"
#include "runtime/check.hpp"

namespace {

// Blocks SIGINT/SIGTERM/SIGHUP in every thread (threads inherit the mask) so that the
// main thread alone receives them with sigwait(). SIGHUP's default action would kill the
// server: blocked, it asks for a rescan of runtime.path instead.
sigset_t block_stop_signals() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    return set;
}

}  // namespace

int main(int argc, char** argv) {
    const sigset_t stop_signals = block_stop_signals();
    ::signal(SIGPIPE, SIG_IGN);

    bool check = argc > 1 && std::strcmp(argv[1], "check") == 0;
    std::vector<const char*> args(argv, argv + argc);
    if (check) {
        args.erase(args.begin() + 1);
        for (std::size_t i = 1; i < args.size(); ++i) {
            if (std::strcmp(args[i], "--help") == 0 || std::strcmp(args[i], "-h") == 0) {
                std::cout << nk::runtime::check_usage();
                return 0;
            }
        }
    }

    auto parsed = nk::config::parse(static_cast<int>(args.size()), args.data());
    if (!parsed.config) {
        (parsed.exit_code == 0 ? std::cout : std::cerr) << parsed.output << (parsed.output.empty() || parsed.output.back() == '\n' ? "" : "\n");
        return parsed.exit_code;
    }
    auto& cfg = *parsed.config;
    try {
        nk::log::init(cfg.logger);
    } catch (const std::exception& e) {
        std::cerr << "nkhost: cannot set up logging: " << e.what() << "\n";
        return 2;
    }
    for (const auto& w : cfg.warnings) spdlog::warn("{}", w);

    if (check) return nk::runtime::run_check(cfg.runtime, std::cout);

    spdlog::info("nkhost starting node={} data_dir={}", cfg.name, cfg.data_dir);
    nk::App app(cfg);
    try {
        app.start();
    } catch (const std::exception& e) {
        spdlog::critical("Startup failed: {}", e.what());
        nk::log::flush();
        return 1;
    }
    spdlog::info("Startup done");

    int sig = 0;
    for (;;) {
        sigwait(&stop_signals, &sig);
        if (sig != SIGHUP) break;
        spdlog::info("Received SIGHUP, re-scanning runtime modules");
        app.reload_modules();
    }
    spdlog::info("Received {}, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    app.shutdown();
    if (app.left_threads_behind()) {
        // Joining a thread inside plugin code that never returns would never end, and unloading
        // the plugin under it would crash: end the process here, as the grace promised.
        spdlog::warn("Shutdown complete; exiting without waiting for plugin code still running");
        nk::log::flush();
        std::_Exit(0);
    }
    nk::log::flush();
    return 0;
}
