// Configuration through the real nkhost binary: what main prints and its exit statuses, and
// that startup warnings reach the log in the configured format.
#include <doctest/doctest.h>
#include <rapidjson/document.h>
#include <signal.h>

#include <sstream>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "support/process.hpp"

namespace {

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        lines.push_back(line);
    }
    return lines;
}

}  // namespace

TEST_CASE("nkhost --version and --help exit 0 with their text") {
    const auto version = nk::test::run_nkhost({"--version"});
    CHECK(version.exit_code == 0);
    CHECK(version.output == nk::config::version_text() + "\n");

    const auto help = nk::test::run_nkhost({"--help"});
    CHECK(help.exit_code == 0);
    CHECK(help.output == nk::config::help_text());
}

TEST_CASE("nkhost with a bad configuration exits 2 with one line") {
    const auto bad = nk::test::run_nkhost({"--runtime.event_queue_workers", "0"});
    CHECK(bad.exit_code == 2);
    CHECK(bad.output ==
          "nkhost: invalid value for runtime.event_queue_workers: must be >= 1 (got 0)\n");

    const auto unknown = nk::test::run_nkhost({"check", "--no.such.key", "1"});
    CHECK(unknown.exit_code == 2);
    CHECK(unknown.output == "nkhost: unknown configuration key no.such.key\n");

    nk::test::TempDir dir;
    const auto missing = nk::test::run_nkhost({"--config", (dir / "none.ini").string()});
    CHECK(missing.exit_code == 2);
    CHECK(lines_of(missing.output).size() == 1);
    CHECK(missing.output.find("none.ini") != std::string::npos);
}

TEST_CASE("startup warnings are logged as JSON lines") {
    nk::test::TempDir dir;
    nk::test::write_file(dir / "nakama.yml",
                         "console:\n  port: 7351\nsocket:\n  server_key: notdefault\n");
    const auto port = nk::test::free_port();
    nk::test::ServerProcess server({"--config", (dir / "nakama.yml").string(), "--data_dir",
                                    (dir / "data").string(), "--socket.address", "127.0.0.1",
                                    "--socket.port", std::to_string(port), "--logger.format",
                                    "json", "--logger.file", (dir / "nkhost.log").string()});
    REQUIRE(server.wait_for_output("console.port"));
    REQUIRE(server.wait_for_output("runtime.http_key is the default"));
    server.stop(SIGTERM);

    // The file gets the same lines; each one is a JSON object.
    int warnings = 0;
    for (const auto& line : lines_of(nk::test::read_file(dir / "nkhost.log"))) {
        rapidjson::Document doc;
        doc.Parse(line.c_str(), line.size());
        REQUIRE_MESSAGE(!doc.HasParseError(), line);
        REQUIRE(doc.IsObject());
        CHECK(doc.HasMember("ts"));
        const std::string msg = doc["msg"].GetString();
        if (std::string(doc["level"].GetString()) == "warn" &&
            (msg.find("is the default") != std::string::npos ||
             msg.find("console.port") != std::string::npos)) {
            ++warnings;
        }
        CHECK(msg.find("socket.server_key is the default") == std::string::npos);
    }
    // http_key, encryption_key, refresh_encryption_key, and the unsupported YAML keys.
    CHECK(warnings == 4);
}
