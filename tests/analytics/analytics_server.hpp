// The analytics suites' server: nkhost with a copy of the analytics plugin in its own
// runtime.path, stopped cleanly at the end with nothing reported by the sanitizers.
#pragma once

#include <doctest/doctest.h>

#include <signal.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "security_support.hpp"

namespace nk::test {

// nkhost with a copy of the analytics plugin in its own runtime.path; `env` are runtime.env
// KEY=VALUE entries, or "--option", "value" pairs.
struct Server {
    explicit Server(const std::vector<std::string>& env = {}) {
        std::filesystem::copy_file(build_dir() / "modules" / "analytics.so",
                                   modules.path() / "analytics.so");
        std::vector<std::string> args = {"--runtime.path", modules.path().string()};
        for (std::size_t i = 0; i < env.size(); ++i) {
            if (env[i].rfind("--", 0) == 0) {  // a server option and its value
                args.push_back(env[i]);
                args.push_back(env.at(++i));
                continue;
            }
            args.push_back("--runtime.env");
            args.push_back(env[i]);
        }
        host = std::make_unique<Nkhost>(args);
    }
    // A clean shutdown, and nothing the sanitizers reported (the plugin runs inside nkhost).
    ~Server() {
        if (host->process().running())
            CHECK(host->process().stop(SIGTERM) == 0);
        const std::string out = host->output();
        CHECK(out.find("AddressSanitizer") == std::string::npos);
        CHECK(out.find("runtime error:") == std::string::npos);
        CHECK(out.find("LeakSanitizer") == std::string::npos);
        CHECK(out.find("ThreadSanitizer") == std::string::npos);
    }
    TempDir modules;
    std::unique_ptr<Nkhost> host;
};

}  // namespace nk::test
