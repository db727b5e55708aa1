// A complete C++ plugin: an event handler and an RPC sharing state.
//
//   RPC "hello": payload {"name":"Ada"} -> {"message":"hello Ada","levels_completed":N}
//   event "level_complete": counted, and logged with the player's user id
#include <nk/json_read.hpp>
#include <nk/sdk.hpp>

#include <atomic>
#include <memory>
#include <string>

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace {

// Shared by the handlers below: captured by value in each (a shared_ptr), so it lives as long as
// the last handler that uses it. Handlers run concurrently: keep it thread-safe.
struct State {
    std::atomic<long> levels_completed{0};
};

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    auto state = std::make_shared<State>();

    if (auto err = initializer.RegisterEvent(
            [state](const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
                if (evt.name != "level_complete")
                    return;
                state->levels_completed.fetch_add(1);
                logger.Info("level_complete from %s", ctx.user_id.c_str());
            }))
        return err;

    if (auto err = initializer.RegisterRpc(
            "hello", [state](const nk::Context&, nk::Logger&, nk::Module&,
                             const std::string& payload, std::string& out) -> nk::Error {
                std::string name = "stranger";
                if (!payload.empty()) {
                    rapidjson::Document in;
                    if (!nk::json_read::parse_document(payload.data(), payload.size(), in,
                                                       nk::json_read::kDefaultMaxDepth) ||
                        !in.IsObject())
                        return nk::Error::InvalidArgument("payload must be a JSON object");
                    if (in.HasMember("name") && in["name"].IsString())
                        name = in["name"].GetString();
                }
                rapidjson::StringBuffer sb;
                rapidjson::Writer<rapidjson::StringBuffer> w(sb);
                w.StartObject();
                w.Key("message");
                w.String(("hello " + name).c_str());
                w.Key("levels_completed");
                w.Int64(state->levels_completed.load());
                w.EndObject();
                out = sb.GetString();
                return {};  // or an nk::Error: its code and message go to the client
            }))
        return err;

    logger.Info("hello plugin loaded");
    return {};
}
