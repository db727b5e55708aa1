#include "runtime/check.hpp"

#include <stdlib.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "runtime/runtime.hpp"

namespace nk::runtime {

namespace {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed with everything in it at scope exit.
class ScratchDir {
  public:
    ScratchDir() {
        std::error_code ec;
        const fs::path base = fs::temp_directory_path(ec);
        std::string tmpl = ((ec ? fs::path("/tmp") : base) / "nkhost-check-XXXXXX").string();
        if (::mkdtemp(tmpl.data()) != nullptr)
            path_ = tmpl;
        else
            error_ = std::strerror(errno);
    }
    ~ScratchDir() {
        if (!path_.empty()) {
            std::error_code ec;
            fs::remove_all(path_, ec);
        }
    }
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;
    const fs::path& path() const { return path_; }
    const std::string& error() const { return error_; }

  private:
    fs::path path_;
    std::string error_;
};

}  // namespace

int run_check(const Options& options, std::ostream& out) {
    const fs::path root = effective_module_path(options);
    std::error_code ec;
    if (!fs::is_directory(root, ec)) {
        const bool exists = fs::exists(root, ec);
        out << "FAIL runtime.path " << root.string()
            << (exists ? " is not a directory" : " does not exist") << "\n"
            << "0 plugin(s) checked, 1 problem(s)\n";
        return 1;
    }
    ScratchDir scratch;
    if (scratch.path().empty()) {
        out << "FAIL cannot create a temporary directory for the plugins' private copies: "
            << scratch.error() << "\n"
            << "0 plugin(s) checked, 1 problem(s)\n";
        return 1;
    }
    Options o = options;
    o.path = root.string();
    o.data_dir = scratch.path().string();  // private copies go to <data_dir>/.modules
    o.skip_failed_modules = true;          // report every file, not just the first failure
    o.hot_reload = false;

    std::vector<ModuleReport> reports;
    std::vector<Runtime::RpcConflict> conflicts;
    Status st;
    {
        Runtime runtime(o, Dependencies{});
        runtime.set_on_loading(
            [&out](const fs::path& file) { out << "loading " << file.string() << std::endl; });
        st = runtime.load_all();
        reports = runtime.reports();
        conflicts = runtime.rpc_conflicts();
    }  // unloads every plugin and removes its copy
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
    for (const auto& c : conflicts) {
        ++failures;
        out << "FAIL " << c.later.string() << ": RPC id \"" << c.id
            << "\" is also registered by " << c.earlier.string()
            << "; this module's registration replaces it, so that one is never called: rename "
               "one of them\n";
    }
    out << reports.size() << " plugin(s) checked, " << failures << " problem(s)\n";
    return failures == 0 ? 0 : 1;
}

std::string check_usage() {
    return "Usage: nkhost check [options]\n"
           "\n"
           "Loads and initialises every plugin (*.so) under runtime.path as the server would, "
           "without serving,\n"
           "prints what each one registered or why it failed, and exits. Every file is "
           "checked, even after a failure.\n"
           "It creates nothing: the plugins' private copies go to a temporary directory that "
           "is removed at the end.\n"
           "\n"
           "Reported as failures: a plugin that does not load or whose InitModule fails, a "
           "file that is not a plugin\n"
           "(a helper library, an executable, a plugin built with a sanitizer this nkhost "
           "lacks), an RPC id registered\n"
           "by two plugins, and a runtime.path that does not exist.\n"
           "\n"
           "Options (every server option is accepted; these matter):\n"
           "  --config FILE\n"
           "      Read options from FILE (repeatable), as the server does.\n"
           "  --runtime.path DIR\n"
           "      The plugin directory to check. Default: <data_dir>/modules.\n"
           "  --data_dir DIR\n"
           "      Only locates the default runtime.path; nothing is written there. Default: "
           "./data\n"
           "  --runtime.env KEY=VALUE\n"
           "      Environment seen by InitModule (repeatable).\n"
           "  --help, -h\n"
           "      Print this help and exit.\n"
           "\n"
           "Exit codes:\n"
           "  0  every plugin loaded and initialised, no conflicts\n"
           "  1  at least one problem (one FAIL line each)\n"
           "  2  invalid configuration or command line\n"
           "  other  the check itself crashed inside a plugin (e.g. 134 on abort); the last "
           "\"loading <file>\" line names it\n";
}

}  // namespace nk::runtime
