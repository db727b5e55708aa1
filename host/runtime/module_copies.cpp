#include "runtime/module_copies.hpp"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>

namespace nk::runtime {
namespace {

// The PID in "<module>.<pid>.<generation>.so" (a copy) or "<module>.<pid>.<generation>.d" (the
// folder of a copy with helper libraries), or nullopt for any other name.
std::optional<pid_t> owner_pid(const std::filesystem::path& file) {
    if (file.extension() != ".so" && file.extension() != ".d")
        return std::nullopt;
    const std::string stem = file.stem().string();  // <module>.<pid>.<generation>
    const auto last = stem.rfind('.');
    if (last == std::string::npos || last == 0)
        return std::nullopt;
    const auto before = stem.rfind('.', last - 1);
    if (before == std::string::npos || before == 0)
        return std::nullopt;
    const auto is_number = [](std::string_view s) {
        return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
    };
    const std::string_view pid_text(stem.data() + before + 1, last - before - 1);
    if (!is_number(pid_text) || !is_number(std::string_view(stem).substr(last + 1)))
        return std::nullopt;
    pid_t pid = 0;
    const auto [end, ec] = std::from_chars(pid_text.data(), pid_text.data() + pid_text.size(), pid);
    if (ec != std::errc() || end != pid_text.data() + pid_text.size() || pid <= 0)
        return std::nullopt;
    return pid;
}

// When process `pid` started, in unix seconds, from /proc (Linux); nullopt when unknown.
std::optional<double> process_start_time(pid_t pid) {
    std::ifstream stat_file("/proc/" + std::to_string(pid) + "/stat");
    std::string stat;
    if (!std::getline(stat_file, stat))
        return std::nullopt;
    // Field 2 (comm) may hold spaces and parentheses: count fields after its closing ')'.
    const auto paren = stat.rfind(')');
    if (paren == std::string::npos)
        return std::nullopt;
    std::istringstream fields(stat.substr(paren + 1));
    std::string field;
    unsigned long long start_ticks = 0;
    for (int i = 3; i <= 22 && fields >> field; ++i) {
        if (i == 22)
            start_ticks = std::stoull(field);
    }
    std::ifstream proc_stat("/proc/stat");
    long long boot_time = -1;
    for (std::string line; std::getline(proc_stat, line);) {
        if (line.rfind("btime ", 0) == 0)
            boot_time = std::stoll(line.substr(6));
    }
    const long ticks_per_second = ::sysconf(_SC_CLK_TCK);
    if (start_ticks == 0 || boot_time < 0 || ticks_per_second <= 0)
        return std::nullopt;
    return static_cast<double>(boot_time) +
           static_cast<double>(start_ticks) / static_cast<double>(ticks_per_second);
}

bool is_stale(const std::filesystem::path& copy, pid_t pid) {
    if (::kill(pid, 0) != 0 && errno == ESRCH)
        return true;
    // A process with that PID exists. It owns the copy unless it started after the copy was
    // made: the change time of a file cannot be set back, and a process copies its modules
    // after it starts. btime has whole seconds, hence the margin.
    struct stat st{};
    const auto started = process_start_time(pid);
    if (!started || ::stat(copy.c_str(), &st) != 0)
        return false;  // unknown: keep it
    return *started > static_cast<double>(st.st_ctim.tv_sec) + 2.0;
}

}  // namespace

std::filesystem::path module_copies_dir(const Options& options) {
    const std::filesystem::path data_dir =
        options.data_dir.empty() ? std::filesystem::path("data")
                                 : std::filesystem::path(options.data_dir);
    return data_dir / ".modules";
}

std::size_t remove_stale_module_copies(const std::filesystem::path& dir) {
    std::size_t removed = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        const auto pid = owner_pid(it->path());
        if (!pid || *pid == ::getpid())
            continue;
        const bool folder = it->path().extension() == ".d";
        if (folder ? !it->is_directory(ec) : !it->is_regular_file(ec))
            continue;
        try {
            if (!is_stale(it->path(), *pid))
                continue;
        } catch (...) {  // a /proc line that does not parse: keep the copy
            continue;
        }
        std::error_code remove_ec;
        if (folder ? std::filesystem::remove_all(it->path(), remove_ec) > 0
                   : std::filesystem::remove(it->path(), remove_ec))
            ++removed;
    }
    return removed;
}

}  // namespace nk::runtime
