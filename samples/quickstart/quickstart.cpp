// The events quickstart: Nakama's Go example, line for line, in C++.
//
// After an account update it emits "account_updated" (external=false);
// processEvent receives it on an event worker. Session start/end are logged.
// Plus one RPC, "hello", so a client's rpc() has something to call.
#include <string>

#include "nk/sdk.hpp"

nk::Error afterUpdateAccount(const nk::Context& ctx, nk::Logger& logger, nk::Module& nk,
                             const nk::UpdateAccountRequest& in) {
    nk::Event evt;
    evt.name = "account_updated";
    evt.properties = {};
    evt.external = false;
    return nk.Event(nk::Context::Background(), evt);
}

void processEvent(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    if (evt.GetName() == "account_updated") {
        logger.Debug("process evt: %s", evt.ToString().c_str());
        // Send event to an analytics service.
    } else {
        logger.Error("unrecognised evt: %s", evt.ToString().c_str());
    }
}

void eventSessionEnd(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    logger.Debug("process event session end: %s", evt.ToString().c_str());
}

void eventSessionStart(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    logger.Debug("process event session start: %s", evt.ToString().c_str());
}

// Not in the Go example: an RPC replying {"hello":"<username>","payload":<what was sent>}.
nk::Error rpcHello(const nk::Context& ctx, nk::Logger& logger, nk::Module& nk,
                   const std::string& payload, std::string& out) {
    out = "{\"hello\":\"" + ctx.username +
          "\",\"payload\":" + (payload.empty() ? "null" : payload) + "}";
    return {};
}

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    if (auto err = initializer.RegisterAfterUpdateAccount(afterUpdateAccount)) {
        return err;
    }
    if (auto err = initializer.RegisterEvent(processEvent)) {
        return err;
    }
    if (auto err = initializer.RegisterEventSessionEnd(eventSessionEnd)) {
        return err;
    }
    if (auto err = initializer.RegisterEventSessionStart(eventSessionStart)) {
        return err;
    }
    if (auto err = initializer.RegisterRpc("hello", rpcHello)) {
        return err;
    }
    logger.Info("Server loaded.");
    return {};
}
