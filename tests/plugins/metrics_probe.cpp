// Calls the plugin metrics API on demand: RPC "metric" with the payload
//   op '\n' name '\n' value ['\n' tag_key '\n' tag_value]...
// (op: counter, gauge or timer_ns; any bytes allowed in the fields) returns the API's error.
#include <string>
#include <vector>

#include "nk/sdk.hpp"

namespace {

std::vector<std::string> split_lines(const std::string& s) {
    std::vector<std::string> parts;
    std::string::size_type start = 0;
    for (;;) {
        const auto end = s.find('\n', start);
        parts.push_back(s.substr(start, end - start));
        if (end == std::string::npos)
            return parts;
        start = end + 1;
    }
}

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    return initializer.RegisterRpc("metric", [](const nk::Context&, nk::Logger&, nk::Module& m,
                                                const std::string& payload, std::string& out) {
        const auto parts = split_lines(payload);
        if (parts.size() < 3 || parts.size() % 2 == 0)
            return nk::Error::InvalidArgument("probe: bad payload");
        nk::Module::Tags tags;
        for (std::size_t i = 3; i + 1 < parts.size(); i += 2)
            tags[parts[i]] = parts[i + 1];
        out = "ok";
        const std::string& op = parts[0];
        if (op == "counter")
            return m.MetricsCounterAdd(parts[1], tags, std::stoll(parts[2]));
        if (op == "gauge")
            return m.MetricsGaugeSet(parts[1], tags, std::stod(parts[2]));
        if (op == "timer_ns")
            return m.MetricsTimerRecord(parts[1], tags,
                                        std::chrono::nanoseconds(std::stoll(parts[2])));
        return nk::Error::InvalidArgument("probe: unknown op " + op);
    });
}
