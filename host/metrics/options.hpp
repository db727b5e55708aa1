// Options of metrics (config keys metrics.*).
#pragma once

#include <cstdint>
#include <string>

namespace nk::metrics {

struct Options {
    std::uint16_t prometheus_port = 0;  // metrics.prometheus_port (0 = off)
    std::string prefix = "nkhost";      // metrics.prefix
    std::string node_name;              // copied from name (label node_name)
};

}  // namespace nk::metrics
