// Options of logging (config keys logger.*).
#pragma once

#include <string>

namespace nk::log {

struct Options {
    std::string level = "info";  // logger.level: debug|info|warn|error
    std::string format = "text"; // logger.format: text|json
    std::string file;            // logger.file ("" = stdout only)
};

}  // namespace nk::log
