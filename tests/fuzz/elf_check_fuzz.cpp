// The checks run on a plugin file before dlopen (a plugin file is input too): the ELF image
// check and the dynamic-section reader, on any bytes written to a file.
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

#include "runtime/elf_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    static const std::filesystem::path file =
        std::filesystem::temp_directory_path() / ("nk-elf-fuzz-" + std::to_string(::getpid()) + ".so");
    {
        std::ofstream out(file, std::ios::binary | std::ios::trunc);
        out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    (void)nk::runtime::check_elf_image(file);
    nk::runtime::ElfDynamicInfo info;
    if (nk::runtime::read_elf_dynamic(file, info).empty())
        (void)nk::runtime::missing_sanitizer_runtime(info.needed);
    std::error_code ec;
    std::filesystem::remove(file, ec);
    return 0;
}
