#include "runtime/check.hpp"

#include "runtime/runtime.hpp"

namespace nk::runtime {

int run_check(const Options& options, std::ostream& out) {
    Options o = options;
    o.skip_failed_modules = true;  // report every file, not just the first failure
    Runtime runtime(o, Dependencies{});
    Status st = runtime.load_all();
    const auto reports = runtime.reports();
    const auto root = effective_module_path(options);
    int failures = st ? 0 : 1;
    if (reports.empty())
        out << "no plugins found under " << root.string() << "\n";
    for (const auto& r : reports) {
        if (r.loaded) {
            out << "OK   " << r.path.string() << " (ABI " << r.abi_major << "." << r.abi_minor
                << ")\n";
            if (r.registered.empty())
                out << "       registered nothing\n";
            for (const auto& what : r.registered)
                out << "       " << what << "\n";
        } else {
            ++failures;
            out << "FAIL " << r.path.string() << ": " << r.error << "\n";
        }
    }
    out << reports.size() << " plugin(s) checked, " << failures << " problem(s)\n";
    return failures == 0 ? 0 : 1;
}

}  // namespace nk::runtime
