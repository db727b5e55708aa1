// The events quickstart: Nakama's Go example, line for line, in C++.
//
// After an account update it emits "account_updated" (external=false);
// processEvent receives it on an event worker. Session start/end are logged.
// Plus one RPC, "hello", so a client's rpc() has something to call.
//
// Two things differ from the Go example because clients control the input: the RPC builds its
// reply with a JSON writer (a username may contain a quote), and unknown events are logged at
// warn level at most once a second (a client can post thousands a second).
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "nk/sdk.hpp"
#include <rapidjson/reader.h>

// Lets one log line through per second and counts the others. Event handlers run on several
// workers at once, hence the mutex.
class LogLimiter {
  public:
    // True when this line may be logged; `suppressed` is then how many were held back before it.
    bool Allow(std::uint64_t& suppressed) {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto now = std::chrono::steady_clock::now();
        if (logged_once_ && now - last_ < std::chrono::seconds(1)) {
            ++suppressed_;
            return false;
        }
        logged_once_ = true;
        last_ = now;
        suppressed = suppressed_;
        suppressed_ = 0;
        return true;
    }

  private:
    std::mutex mutex_;
    bool logged_once_ = false;
    std::chrono::steady_clock::time_point last_;
    std::uint64_t suppressed_ = 0;
};

LogLimiter unknownEventLog;

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
        std::uint64_t suppressed = 0;
        if (unknownEventLog.Allow(suppressed)) {
            logger.Warn("unrecognised evt: %s (%llu more suppressed)", evt.ToString().c_str(),
                        static_cast<unsigned long long>(suppressed));
        }
    }
}

void eventSessionEnd(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    logger.Debug("process event session end: %s", evt.ToString().c_str());
}

void eventSessionStart(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    logger.Debug("process event session start: %s", evt.ToString().c_str());
}

// True when `text` is exactly one JSON value. RapidJSON's iterative reader without a document
// checks it in constant stack space, however deeply a client nests its payload.
bool IsJson(const std::string& text) {
    if (text.find('\0') != std::string::npos)
        return false;
    rapidjson::Reader reader;
    rapidjson::BaseReaderHandler<> ignore;
    rapidjson::StringStream in(text.c_str());
    return !reader.Parse<rapidjson::kParseIterativeFlag>(in, ignore).IsError();
}

// Not in the Go example: an RPC replying {"hello":"<username>","payload":<what was sent>}, the
// payload as it came when it is JSON, otherwise as a string.
nk::Error rpcHello(const nk::Context& ctx, nk::Logger& logger, nk::Module& nk,
                   const std::string& payload, std::string& out) {
    rapidjson::StringBuffer buffer;
    nk::json::Writer writer(buffer);
    writer.StartObject();
    writer.Key("hello");
    writer.String(ctx.username.data(), static_cast<rapidjson::SizeType>(ctx.username.size()));
    writer.Key("payload");
    if (payload.empty()) {
        writer.Null();
    } else if (IsJson(payload)) {
        writer.RawValue(payload.data(), payload.size(), rapidjson::kObjectType);
    } else {
        writer.String(payload.data(), static_cast<rapidjson::SizeType>(payload.size()));
    }
    writer.EndObject();
    out.assign(buffer.GetString(), buffer.GetSize());
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
