// nkhost: argument handling and signals only; App does the wiring.
//
//   nkhost [--config FILE]... [--key value]...   run the server
//   nkhost check [--config FILE]... [--key value]...   load every plugin, report, exit
//   nkhost check --help                                  what check does, its exit codes
//   nkhost migrate up [--config FILE]... [--key value]...   create or upgrade the database schema
#include <cstdlib>
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "app/app.hpp"
#include "config/config.hpp"
#include "log/log.hpp"
#include "runtime/check.hpp"
#include "store/store.hpp"

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

constexpr const char* kMigrateUsage =
    "Usage: nkhost migrate up [--config FILE]... [--key value]...\n"
    "Creates the database schema at database.address, or upgrades it to this nkhost's version.\n"
    "A PostgreSQL server must be migrated before nkhost starts on it; the embedded SQLite file\n"
    "is migrated whenever nkhost opens it. Several nodes may run it at once.\n"
    "Exit status: 0 migrated (or already current), 1 the database refused or is newer than this\n"
    "nkhost, 2 bad arguments.\n";

int run_migrate(const nk::config::Config& cfg) {
    try {
        if (!nk::store::is_server_address(cfg.database.address))
            std::filesystem::create_directories(cfg.data_dir);
        const auto result = nk::store::migrate_up(cfg.database);
        std::cout << "migrate up: schema version " << result.from << " -> " << result.to
                  << (result.from == result.to ? " (already current)" : "") << "\n";
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "nkhost migrate up: " << e.what() << "\n";
        return 1;
    }
}

}  // namespace

int main(int argc, char** argv) {
    const sigset_t stop_signals = block_stop_signals();
    ::signal(SIGPIPE, SIG_IGN);

    bool check = argc > 1 && std::strcmp(argv[1], "check") == 0;
    bool migrate = argc > 1 && std::strcmp(argv[1], "migrate") == 0;
    std::vector<const char*> args(argv, argv + argc);
    if (migrate) {
        if (argc < 3 || std::strcmp(argv[2], "up") != 0) {
            const bool help = argc >= 3 && (std::strcmp(argv[2], "--help") == 0 ||
                                            std::strcmp(argv[2], "-h") == 0);
            (help ? std::cout : std::cerr) << kMigrateUsage;
            return help ? 0 : 2;
        }
        args.erase(args.begin() + 1, args.begin() + 3);
    }
    if (check)
        args.erase(args.begin() + 1);
    if (check || migrate) {
        for (std::size_t i = 1; i < args.size(); ++i) {
            if (std::strcmp(args[i], "--help") == 0 || std::strcmp(args[i], "-h") == 0) {
                std::cout << (check ? nk::runtime::check_usage() : std::string(kMigrateUsage));
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
    if (migrate) return run_migrate(cfg);

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
