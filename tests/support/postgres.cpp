#include "support/postgres.hpp"

#include <libpq-fe.h>
#include <pwd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "support/process.hpp"

namespace nk::test {
namespace {

namespace fs = std::filesystem;

std::string find_bin() {
    std::string best;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/usr/lib/postgresql", ec)) {
        const auto bin = entry.path() / "bin";
        if (fs::exists(bin / "initdb") && fs::exists(bin / "pg_ctl") &&
            (best.empty() || std::stoi(entry.path().filename().string()) >
                                 std::stoi(fs::path(best).parent_path().filename().string())))
            best = bin.string();
    }
    if (best.empty())
        throw std::runtime_error(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (run scripts/bootstrap)");
    return best;
}

// Runs a shell command; returns its output, throws with it when the command fails.
std::string shell(const std::string& command) {
    FILE* p = ::popen((command + " 2>&1").c_str(), "r");
    if (p == nullptr)
        throw std::runtime_error("cannot run: " + command);
    std::string out;
    char buf[4096];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, p)) > 0)
        out.append(buf, n);
    const int rc = ::pclose(p);
    if (rc != 0)
        throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + command + "\n" +
                                 out);
    return out;
}

std::string conninfo(const std::string& address) {
    return "postgresql://" + address;
}

}  // namespace

PostgresServer& PostgresServer::shared() {
    static std::mutex mutex;
    static std::unique_ptr<PostgresServer> server;
    std::lock_guard lock(mutex);
    if (!server)
        server.reset(new PostgresServer());
    return *server;
}

PostgresServer::PostgresServer() : bin_(find_bin()) {
    char tmpl[] = "/tmp/nkhost-pg-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr)
        throw std::runtime_error("cannot create a temp directory for PostgreSQL");
    dir_ = tmpl;
    if (::geteuid() == 0) {
        owner_ = "postgres";
        if (::getpwnam(owner_.c_str()) == nullptr)
            throw std::runtime_error("running as root and there is no postgres user to run initdb");
        shell("chown " + owner_ + " " + dir_);
    }
    run_as_owner(bin_ + "/initdb -D " + dir_ + "/data -U nkhost -A trust -E UTF8 --locale=C "
                 "--no-sync --no-instructions");
    port_ = free_port();
    // Stops the server and removes its directory once this process is gone, however it ended.
    shell("(while kill -0 " + std::to_string(::getpid()) + " 2>/dev/null; do sleep 1; done; " +
          (owner_.empty() ? "" : "runuser -u " + owner_ + " -- ") + bin_ + "/pg_ctl -D " + dir_ +
          "/data -m immediate -w stop >/dev/null 2>&1; rm -rf " + dir_ +
          ") >/dev/null 2>&1 </dev/null &");
    start();
}

PostgresServer::~PostgresServer() {
    try {
        stop();
    } catch (...) {
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
}

std::string PostgresServer::run_as_owner(const std::string& command) const {
    return shell(owner_.empty() ? command : "runuser -u " + owner_ + " -- " + command);
}

void PostgresServer::start() {
    if (running_)
        return;
    // fsync off: the tests never outlive a crash of the machine. Commits still reach the kernel
    // before they are acknowledged (synchronous_commit stays on), so an immediate stop loses
    // nothing that was committed.
    run_as_owner(bin_ + "/pg_ctl -D " + dir_ + "/data -l " + dir_ + "/server.log -w -t 60 -o \"-p " +
                 std::to_string(port_) + " -k " + dir_ +
                 " -c listen_addresses=127.0.0.1 -c fsync=off "
                 "-c full_page_writes=off -c max_connections=400\" start");
    running_ = true;
}

void PostgresServer::stop() {
    if (!running_)
        return;
    running_ = false;
    run_as_owner(bin_ + "/pg_ctl -D " + dir_ + "/data -m immediate -w stop");
}

std::string PostgresServer::create_database() {
    const std::string name = "nk_test_" + std::to_string(next_database_++);
    const std::string admin = "nkhost@127.0.0.1:" + std::to_string(port_) + "/postgres";
    exec(admin, "CREATE DATABASE " + name);
    return "nkhost@127.0.0.1:" + std::to_string(port_) + "/" + name;
}

void PostgresServer::exec(const std::string& address, const std::string& sql) {
    PGconn* c = PQconnectdb(conninfo(address).c_str());
    if (PQstatus(c) != CONNECTION_OK) {
        std::string error = PQerrorMessage(c);
        PQfinish(c);
        throw std::runtime_error("cannot connect to " + address + ": " + error);
    }
    PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
    PGresult* r = PQexec(c, sql.c_str());
    const bool ok =
        PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
    std::string error = ok ? "" : PQresultErrorMessage(r);
    PQclear(r);
    PQfinish(c);
    if (!ok)
        throw std::runtime_error("SQL failed: " + sql + ": " + error);
}

}  // namespace nk::test
