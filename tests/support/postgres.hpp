// Test support: a real PostgreSQL server for the test process, started on first use in a temp
// directory on a free loopback port, and stopped when the process ends (also when it dies: a
// watcher process stops the server and removes its directory once the test process is gone).
//
// The binaries come from /usr/lib/postgresql/<version>/bin (scripts/bootstrap installs them).
// initdb refuses to run as root: as root, the server runs as the `postgres` user.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace nk::test {

class PostgresServer {
  public:
    // The process-wide server (started on first call). Throws std::runtime_error with the reason
    // when it cannot start.
    static PostgresServer& shared();

    ~PostgresServer();
    PostgresServer(const PostgresServer&) = delete;
    PostgresServer& operator=(const PostgresServer&) = delete;

    std::uint16_t port() const { return port_; }
    // Creates an empty database and returns its address in Nakama's form
    // (nkhost@127.0.0.1:<port>/<name>), as database.address takes it.
    std::string create_database();
    // Runs SQL (several statements allowed) in database `address`; throws with the server's
    // message on failure.
    static void exec(const std::string& address, const std::string& sql);
    // Stops (SIGKILL-like, "immediate") and restarts the server on the same port and data:
    // what a database that goes away and comes back looks like to nkhost.
    void stop();
    void start();

  private:
    PostgresServer();
    std::string run_as_owner(const std::string& command) const;

    std::string bin_;
    std::string dir_;
    std::string owner_;  // "postgres" when running as root, else empty
    std::uint16_t port_ = 0;
    int next_database_ = 0;
    bool running_ = false;
};

}  // namespace nk::test
