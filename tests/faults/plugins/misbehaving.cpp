// A plugin whose event handler misbehaves on demand, by event name:
//   "throw"  throws;   "slow"  sleeps `sleep_ms` (a property);   "hang"  never returns;
//   anything else is counted. RPC "counted" answers the count; RPC "hang" never returns.
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "nk/sdk.hpp"

namespace {

std::atomic<long> counted{0};

[[noreturn]] void never_return() {
    for (;;)
        std::this_thread::sleep_for(std::chrono::hours(1));
}

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    if (auto err = initializer.RegisterEvent(
            [](const nk::Context&, nk::Logger&, const nk::Event& evt) {
                if (evt.name == "throw")
                    throw std::runtime_error("this handler always throws");
                if (evt.name == "hang")
                    never_return();
                if (evt.name == "slow") {
                    auto it = evt.properties.find("sleep_ms");
                    const int ms = it == evt.properties.end() ? 100 : std::atoi(it->second.c_str());
                    std::this_thread::sleep_for(std::chrono::milliseconds(ms));
                }
                counted.fetch_add(1);
            }))
        return err;
    if (auto err = initializer.RegisterRpc(
            "counted", [](const nk::Context&, nk::Logger&, nk::Module&, const std::string&,
                          std::string& out) -> nk::Error {
                out = std::to_string(counted.load());
                return {};
            }))
        return err;
    return initializer.RegisterRpc(
        "hang", [](const nk::Context&, nk::Logger&, nk::Module&, const std::string&,
                   std::string&) -> nk::Error { never_return(); });
}
