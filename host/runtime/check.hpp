// `nkhost check`: loads and initialises every plugin under runtime.path (as
// the server would, but never serving), prints one block per file with what
// it registered or why it failed, and returns non-zero on any problem. Every
// file is checked even after a failure, so a studio's CI sees all problems.
//
// It creates nothing: a missing runtime.path is a failure (the server would
// create it), and the private copies of the plugins go to a fresh temporary
// directory, removed before it returns (not <data_dir>/.modules).
#pragma once

#include <ostream>
#include <string>

#include "runtime/options.hpp"

namespace nk::runtime {

// 0 when every plugin loaded; 1 otherwise. Output goes to `out`: "loading <file>" before each
// plugin is opened, then "OK   <file> (ABI x.y)" with what it registered or
// "FAIL <file>: <reason>", one FAIL line per RPC id registered by two modules, and a summary.
int run_check(const Options& options, std::ostream& out);

// What `nkhost check --help` prints.
std::string check_usage();

}  // namespace nk::runtime
