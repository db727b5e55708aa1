// The configuration readers: any bytes as a YAML file and as an INI file given with --config.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "config/config.hpp"

namespace {
void parse_as(const std::string& extension, const std::uint8_t* data, std::size_t size) {
    const std::filesystem::path file = std::filesystem::temp_directory_path() /
                                       ("nk-config-fuzz-" + std::to_string(::getpid()) + extension);
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    const std::string path = file.string();
    const char* argv[] = {"nkhost", "--config", path.c_str()};
    (void)nk::config::parse(3, argv);
    std::error_code ec;
    std::filesystem::remove(file, ec);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    parse_as(".yml", data, size);
    parse_as(".ini", data, size);
    return 0;
}
