// Test plugin for the end-to-end suites: logs every event it is handed, with
// the context fields the tests compare (one line per event, "recorder ...").
#include <string>

#include "nk/sdk.hpp"

namespace {

std::string describe(const nk::Context& ctx, const nk::Event& evt) {
    std::string props;
    for (const auto& [k, v] : evt.properties) props += k + "=[" + v + "] ";
    return "name=" + evt.name + " sid=" + ctx.session_id + " uid=" + ctx.user_id + " user=" + ctx.username +
           " lang=" + ctx.lang + " mode=" + ctx.execution_mode + " external=" + (evt.external ? "true" : "false") +
           " props: " + props + "end";
}

void onEvent(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    logger.Info("recorder event %s", describe(ctx, evt).c_str());
}

void onSessionStart(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    logger.Info("recorder session_start %s", describe(ctx, evt).c_str());
}

void onSessionEnd(const nk::Context& ctx, nk::Logger& logger, const nk::Event& evt) {
    logger.Info("recorder session_end %s", describe(ctx, evt).c_str());
}

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    if (auto err = initializer.RegisterEvent(onEvent)) return err;
    if (auto err = initializer.RegisterEventSessionStart(onSessionStart)) return err;
    if (auto err = initializer.RegisterEventSessionEnd(onSessionEnd)) return err;
    return {};
}
