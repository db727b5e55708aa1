// The database under failure and under write load: failures are logged (rate-limited, with
// SQLite's message) and counted, and the WAL file does not grow without bound.
#include <doctest/doctest.h>

#include <chrono>
#include <filesystem>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "security_support.hpp"

using nk::test::Nkhost;

namespace {

// POST /v2/account/authenticate/device?create=true for a new device; the status.
int authenticate_new_device(httplib::Client& c, int n) {
    auto res = c.Post("/v2/account/authenticate/device?create=true",
                      "{\"id\":\"security-device-" + std::to_string(100000 + n) + "\"}",
                      "application/json");
    return res ? res->status : 0;
}

// The server's "Database error" lines for `operation`.
std::vector<std::string> database_error_lines(const std::string& log, const std::string& operation) {
    std::vector<std::string> lines;
    std::istringstream in(log);
    for (std::string line; std::getline(in, line);) {
        if (line.find("Database error") != std::string::npos &&
            line.find("operation=" + operation) != std::string::npos) {
            lines.push_back(line);
        }
    }
    return lines;
}

}  // namespace

TEST_CASE("a full database: every 500 is counted, logged with SQLite's message, rate-limited") {
    // database.max_size_bytes caps the file the way a full disk does (SQLITE_FULL).
    Nkhost server({"--database.max_size_bytes", "65536"});
    auto c = server.client();
    c->set_basic_auth("defaultkey", "");
    int n = 0;
    int status = 200;
    while (status == 200 && n < 5000)
        status = authenticate_new_device(*c, n++);
    REQUIRE(status == 500);
    int failures = 1;
    for (int i = 0; i < 40; ++i, ++failures)
        CHECK(authenticate_new_device(*c, n++) == 500);
    // One more after the interval, so the line says how many were held back before it.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    CHECK(authenticate_new_device(*c, n++) == 500);
    ++failures;

    CHECK(server.metric("nkhost_database_errors", {"operation=\"authenticate_device\""}) ==
          failures);
    const std::string log = server.output();
    const auto lines = database_error_lines(log, "authenticate_device");
    CAPTURE(log.substr(log.size() > 3000 ? log.size() - 3000 : 0));
    REQUIRE(!lines.empty());
    CHECK(lines[0].find("error=\"database or disk is full\"") != std::string::npos);
    CHECK(lines[0].find("code=13") != std::string::npos);  // SQLITE_FULL
    CHECK(lines[0].find(" error ") != std::string::npos);  // at error level
    // Rate-limited: fewer lines than failures, and the lines account for every failure.
    CHECK(lines.size() < static_cast<std::size_t>(failures));
    std::size_t accounted = lines.size();
    const std::regex suppressed("suppressed=([0-9]+)");
    for (const auto& line : lines) {
        std::smatch m;
        if (std::regex_search(line, m, suppressed))
            accounted += std::stoul(m[1]);
    }
    CHECK(accounted == static_cast<std::size_t>(failures));
}

TEST_CASE("the -wal file is emptied after a burst of writes") {
    Nkhost server({"--database.wal_checkpoint_interval_ms", "200"});
    auto c = server.client();
    c->set_basic_auth("defaultkey", "");
    for (int i = 0; i < 300; ++i)
        REQUIRE(authenticate_new_device(*c, i) == 200);
    const auto wal = server.dir().path() / "nkhost.db-wal";
    REQUIRE(std::filesystem::exists(wal));
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::filesystem::file_size(wal) > 0 && std::chrono::steady_clock::now() < deadline)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
    CHECK(std::filesystem::file_size(wal) == 0);
    // The data is all there.
    auto again = c->Post("/v2/account/authenticate/device?create=false",
                         "{\"id\":\"security-device-100299\"}", "application/json");
    REQUIRE(again);
    CHECK(again->status == 200);
}
