// The private copies of loaded plugins: <data_dir>/.modules/<module>.<pid>.<generation>.so, or,
// for a plugin shipped with helper libraries in a ".lib" folder beside it, a folder
// <data_dir>/.modules/<module>.<pid>.<generation>.d/ holding the copy and a copy of ".lib".
//
// Each process deletes its copies when it unloads them; a process that was killed cannot, so
// startup removes the copies whose owner is gone. Several processes may share data_dir (the
// server, `nkhost check`, a second server during a restart): copies of live processes are kept.
#pragma once

#include <cstddef>
#include <filesystem>

#include "runtime/options.hpp"

namespace nk::runtime {

// Where the private copies live (<data_dir>/.modules; data_dir "" = "data").
std::filesystem::path module_copies_dir(const Options& options);

// Deletes the copies in `dir` whose owning process is gone: no process has the PID in the name,
// or the one that has it started after the copy was made (the PID was reused). Files not named
// like a copy, and copies of this process, are left alone. Never throws; returns how many
// copies were removed.
std::size_t remove_stale_module_copies(const std::filesystem::path& dir);

}  // namespace nk::runtime
