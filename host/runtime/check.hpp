// `nkhost check`: loads and initialises every plugin under runtime.path (as
// the server would, but never serving), prints one block per file with what
// it registered or why it failed, and returns non-zero on any problem. Every
// file is checked even after a failure, so a studio's CI sees all problems.
#pragma once

#include <ostream>

#include "runtime/options.hpp"

namespace nk::runtime {

// 0 when every plugin loaded; 1 otherwise. Output goes to `out`.
int run_check(const Options& options, std::ostream& out);

}  // namespace nk::runtime
