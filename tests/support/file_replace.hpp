// Test support: the ways editors, copy tools and linkers replace a file, for the hot reload
// suites. Header-only.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>

namespace nk::test {

// Writes `content` to a hidden temp file beside `path` and renames it over `path` (editors,
// cp + mv, nk_add_plugin's DEPLOY_DIR): one complete file appears at once.
inline void rename_over(const std::filesystem::path& path, const std::string& content) {
    const auto tmp = path.parent_path() / ("." + path.filename().string() + ".tmp");
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << content;
    }
    std::filesystem::rename(tmp, path);
}

// Truncates `path` in place and writes `content` (cp over an existing file).
inline void write_in_place(const std::filesystem::path& path, const std::string& content) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
}

}  // namespace nk::test
