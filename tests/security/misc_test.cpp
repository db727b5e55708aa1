// Leftovers of a killed process: private plugin copies named for a PID that is gone are deleted
// at startup; copies of live processes (another server or `nkhost check` sharing data_dir) stay.
#include <doctest/doctest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "security_support.hpp"

using nk::test::ServerProcess;
using nk::test::TempDir;

namespace {

// A PID that belonged to a process which has exited and been reaped.
pid_t dead_pid() {
    const pid_t pid = ::fork();
    if (pid == 0)
        ::_exit(0);
    int status = 0;
    ::waitpid(pid, &status, 0);
    return pid;
}

}  // namespace

TEST_CASE("startup deletes private module copies of processes that are gone, keeps live ones") {
    TempDir dir;
    const auto copies = dir.path() / ".modules";
    const auto dead = copies / ("quickstart." + std::to_string(dead_pid()) + ".1.so");
    const auto live = copies / ("quickstart." + std::to_string(::getpid()) + ".1.so");
    const auto other = copies / "notes.txt";
    for (const auto& p : {dead, live, other})
        nk::test::write_file(p, "not really a library");

    const auto port = nk::test::free_port();
    ServerProcess server({"--socket.address", "127.0.0.1", "--socket.port", std::to_string(port),
                          "--data_dir", dir.path().string()});
    REQUIRE(server.wait_ready(port));
    CAPTURE(server.output());
    CHECK_FALSE(std::filesystem::exists(dead));
    CHECK(std::filesystem::exists(live));
    CHECK(std::filesystem::exists(other));
}
