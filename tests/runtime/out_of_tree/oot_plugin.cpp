#include <nk/sdk.hpp>

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    if (auto err =
            initializer.RegisterRpc("oot_hello", [](const nk::Context&, nk::Logger&, nk::Module&,
                                                    const std::string& in, std::string& out) {
                out = "hello " + in;
                return nk::Error();
            }))
        return err;
    logger.Info("out-of-tree plugin loaded");
    return {};
}
