#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <initializer_list>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "support/process.hpp"

namespace {

namespace fs = std::filesystem;
using nk::config::Config;
using nk::config::ParseResult;

ParseResult run(std::initializer_list<std::string> args) {
    std::vector<std::string> storage{"nkhost"};
    storage.insert(storage.end(), args.begin(), args.end());
    std::vector<const char*> argv;
    for (const auto& s : storage)
        argv.push_back(s.c_str());
    return nk::config::parse(static_cast<int>(argv.size()), argv.data());
}

Config ok(std::initializer_list<std::string> args) {
    auto result = run(args);
    INFO(result.output);
    REQUIRE(result.config.has_value());
    CHECK(result.exit_code == 0);
    return *result.config;
}

// The run must fail with status 2 and one line that starts "nkhost: " and mentions `key`.
void fails(std::initializer_list<std::string> args, const std::string& key,
           const std::string& also = "") {
    auto result = run(args);
    INFO(result.output);
    CHECK(!result.config.has_value());
    CHECK(result.exit_code == 2);
    CHECK(result.output.rfind("nkhost: ", 0) == 0);
    CHECK(result.output.find('\n') == std::string::npos);
    CHECK(result.output.find(key) != std::string::npos);
    if (!also.empty())
        CHECK(result.output.find(also) != std::string::npos);
}

bool has_warning_containing(const Config& c, const std::string& text) {
    for (const auto& w : c.warnings) {
        if (w.find(text) != std::string::npos)
            return true;
    }
    return false;
}

const std::vector<std::string> all_keys = {"name",
                                           "data_dir",
                                           "shutdown_grace_sec",
                                           "logger.level",
                                           "logger.format",
                                           "logger.file",
                                           "socket.address",
                                           "socket.port",
                                           "socket.server_key",
                                           "socket.max_request_size_bytes",
                                           "socket.max_header_size_bytes",
                                           "socket.read_timeout_ms",
                                           "socket.write_timeout_ms",
                                           "socket.idle_timeout_ms",
                                           "socket.ssl_certificate",
                                           "socket.ssl_private_key",
                                           "socket.proxy_count",
                                           "socket.io_threads",
                                           "socket.blocking_threads",
                                           "socket.max_connections",
                                           "socket.max_message_size_bytes",
                                           "socket.ping_period_ms",
                                           "socket.pong_wait_ms",
                                           "socket.write_wait_ms",
                                           "socket.close_ack_wait_ms",
                                           "socket.ping_backoff_threshold",
                                           "socket.outgoing_queue_size",
                                           "session.encryption_key",
                                           "session.refresh_encryption_key",
                                           "session.token_expiry_sec",
                                           "session.refresh_token_expiry_sec",
                                           "session.single_socket",
                                           "session.single_session",
                                           "database.address",
                                           "database.busy_timeout_ms",
                                           "database.max_open_conns",
                                           "database.bcrypt_cost",
                                           "runtime.path",
                                           "runtime.env",
                                           "runtime.http_key",
                                           "runtime.skip_failed_modules",
                                           "runtime.hot_reload",
                                           "runtime.event_queue_size",
                                           "runtime.event_queue_workers",
                                           "runtime.event_queue_full_policy",
                                           "runtime.event_reject_retry_after_sec",
                                           "runtime.event_max_properties",
                                           "runtime.event_max_name_bytes",
                                           "runtime.event_max_key_bytes",
                                           "runtime.event_max_value_bytes",
                                           "metrics.prometheus_port",
                                           "metrics.prefix"};

}  // namespace

TEST_CASE("defaults are Nakama's") {
    const Config c = ok({});
    CHECK(c.name == "nakama");
    CHECK(c.shutdown_grace_sec == 30);
    CHECK(c.logger.level == "info");
    CHECK(c.logger.format == "text");
    CHECK(c.socket.port == 7350);
    CHECK(c.socket.address.empty());
    CHECK(c.socket.max_request_size_bytes == 262144);
    CHECK(c.socket.max_header_size_bytes == 5120);
    CHECK(c.socket.idle_timeout_ms == 60000);
    CHECK(c.socket.proxy_count == 0);  // deliberately not Nakama's 1: see the key's description
    CHECK(c.realtime.max_message_size_bytes == 4096);
    CHECK(c.realtime.ping_period_ms == 15000);
    CHECK(c.realtime.pong_wait_ms == 25000);
    CHECK(c.realtime.outgoing_queue_size == 64);
    CHECK(c.session.server_key == "defaultkey");
    CHECK(c.session.http_key == "defaulthttpkey");
    CHECK(c.session.encryption_key == "defaultencryptionkey");
    CHECK(c.session.refresh_encryption_key == "defaultrefreshencryptionkey");
    CHECK(c.session.token_expiry_sec == 60);
    CHECK(c.session.refresh_token_expiry_sec == 3600);
    CHECK(c.events.queue_size == 65536);
    CHECK(c.events.workers == 8);
    CHECK(c.events.full_policy == nk::events::FullPolicy::drop);
    CHECK(c.metrics.prometheus_port == 0);
    CHECK(c.metrics.prefix == "nkhost");
    CHECK(c.database.bcrypt_cost == 10);
}

TEST_CASE("derived values: absolute data_dir, module path, database, node names") {
    const fs::path cwd = fs::current_path();
    const Config c = ok({});
    CHECK(c.data_dir == (cwd / "data").string());
    CHECK(c.runtime.path == (cwd / "data" / "modules").string());
    CHECK(c.database.address == (cwd / "data" / "nkhost.db").string());
    CHECK(c.runtime.data_dir == c.data_dir);
    CHECK(c.runtime.node == "nakama");
    CHECK(c.metrics.node_name == "nakama");

    const Config d = ok({"--data_dir", "rel/dir/", "--name", "node7"});
    CHECK(d.data_dir == (cwd / "rel" / "dir").string());
    CHECK(fs::path(d.data_dir).is_absolute());
    CHECK(d.runtime.path == (cwd / "rel" / "dir" / "modules").string());
    CHECK(d.database.address == (cwd / "rel" / "dir" / "nkhost.db").string());
    CHECK(d.runtime.data_dir == d.data_dir);
    CHECK(d.runtime.node == "node7");
    CHECK(d.metrics.node_name == "node7");

    const Config e = ok({"--data_dir=/srv/nk", "--runtime.path", "/opt/mods", "--database.address",
                         ":memory:", "--session.single_socket"});
    CHECK(e.data_dir == "/srv/nk");
    CHECK(e.runtime.path == "/opt/mods");
    CHECK(e.database.address == ":memory:");
    CHECK(e.realtime.single_socket);
}

TEST_CASE("every key can be set from the command line") {
    const Config c = ok({"--name=n1",
                         "--shutdown_grace_sec=5",
                         "--logger.level=debug",
                         "--logger.format=json",
                         "--logger.file=/tmp/x.log",
                         "--socket.address=127.0.0.1",
                         "--socket.port=0",
                         "--socket.server_key=sk",
                         "--socket.max_request_size_bytes=1000",
                         "--socket.max_header_size_bytes=2000",
                         "--socket.read_timeout_ms=11",
                         "--socket.write_timeout_ms=12",
                         "--socket.idle_timeout_ms=13",
                         "--socket.ssl_certificate=c.pem",
                         "--socket.ssl_private_key=k.pem",
                         "--socket.proxy_count=2",
                         "--socket.io_threads=3",
                         "--socket.blocking_threads=4",
                         "--socket.max_connections=5",
                         "--socket.max_message_size_bytes=6",
                         "--socket.ping_period_ms=7",
                         "--socket.pong_wait_ms=8",
                         "--socket.write_wait_ms=9",
                         "--socket.close_ack_wait_ms=10",
                         "--socket.ping_backoff_threshold=11",
                         "--socket.outgoing_queue_size=12",
                         "--session.encryption_key=e1",
                         "--session.refresh_encryption_key=e2",
                         "--session.token_expiry_sec=70",
                         "--session.refresh_token_expiry_sec=7000",
                         "--session.single_socket=true",
                         "--session.single_session=yes",
                         "--database.busy_timeout_ms=99",
                         "--database.max_open_conns=3",
                         "--database.bcrypt_cost=4",
                         "--runtime.env=A=1",
                         "--runtime.http_key=hk",
                         "--runtime.skip_failed_modules",
                         "--runtime.hot_reload=1",
                         "--runtime.event_queue_size=10",
                         "--runtime.event_queue_workers=2",
                         "--runtime.event_queue_full_policy=reject",
                         "--runtime.event_reject_retry_after_sec=3",
                         "--runtime.event_max_properties=4",
                         "--runtime.event_max_name_bytes=5",
                         "--runtime.event_max_key_bytes=6",
                         "--runtime.event_max_value_bytes=7",
                         "--metrics.prometheus_port=9100",
                         "--metrics.prefix=pre"});
    CHECK(c.name == "n1");
    CHECK(c.shutdown_grace_sec == 5);
    CHECK(c.logger.level == "debug");
    CHECK(c.logger.format == "json");
    CHECK(c.logger.file == "/tmp/x.log");
    CHECK(c.socket.address == "127.0.0.1");
    CHECK(c.socket.port == 0);
    CHECK(c.session.server_key == "sk");
    CHECK(c.socket.max_request_size_bytes == 1000);
    CHECK(c.socket.max_header_size_bytes == 2000);
    CHECK(c.socket.read_timeout_ms == 11);
    CHECK(c.socket.write_timeout_ms == 12);
    CHECK(c.socket.idle_timeout_ms == 13);
    CHECK(c.socket.ssl_certificate == "c.pem");
    CHECK(c.socket.ssl_private_key == "k.pem");
    CHECK(c.socket.proxy_count == 2);
    CHECK(c.socket.io_threads == 3);
    CHECK(c.socket.blocking_threads == 4);
    CHECK(c.socket.max_connections == 5);
    CHECK(c.realtime.max_message_size_bytes == 6);
    CHECK(c.realtime.ping_period_ms == 7);
    CHECK(c.realtime.pong_wait_ms == 8);
    CHECK(c.realtime.write_wait_ms == 9);
    CHECK(c.realtime.close_ack_wait_ms == 10);
    CHECK(c.realtime.ping_backoff_threshold == 11);
    CHECK(c.realtime.outgoing_queue_size == 12);
    CHECK(c.session.encryption_key == "e1");
    CHECK(c.session.refresh_encryption_key == "e2");
    CHECK(c.session.token_expiry_sec == 70);
    CHECK(c.session.refresh_token_expiry_sec == 7000);
    CHECK(c.realtime.single_socket);
    CHECK(c.session.single_session);
    CHECK(c.database.busy_timeout_ms == 99);
    CHECK(c.database.max_open_conns == 3);
    CHECK(c.database.bcrypt_cost == 4);
    CHECK(c.runtime.env == std::map<std::string, std::string>{{"A", "1"}});
    CHECK(c.session.http_key == "hk");
    CHECK(c.runtime.skip_failed_modules);
    CHECK(c.runtime.hot_reload);
    CHECK(c.events.queue_size == 10);
    CHECK(c.events.workers == 2);
    CHECK(c.events.full_policy == nk::events::FullPolicy::reject);
    CHECK(c.events.reject_retry_after_sec == 3);
    CHECK(c.events.max_properties == 4);
    CHECK(c.events.max_name_bytes == 5);
    CHECK(c.events.max_key_bytes == 6);
    CHECK(c.events.max_value_bytes == 7);
    CHECK(c.metrics.prometheus_port == 9100);
    CHECK(c.metrics.prefix == "pre");
    CHECK(c.warnings.empty());  // every key changed from its default
}

TEST_CASE("boolean flags: alone mean true, or take a value") {
    CHECK(ok({"--session.single_socket"}).realtime.single_socket);
    CHECK(ok({"--session.single_socket", "--name", "x"}).realtime.single_socket);
    CHECK(!ok({"--session.single_socket", "false"}).realtime.single_socket);
    CHECK(ok({"--session.single_socket", "true"}).realtime.single_socket);
    CHECK(!ok({"--session.single_socket=off"}).realtime.single_socket);
    fails({"--session.single_socket", "stray"}, "session.single_socket", "true or false");
}

TEST_CASE("--key value and --key=value; last value wins on the command line") {
    const Config c = ok({"--socket.port", "7000", "--socket.port=7001", "--name", "a", "--name",
                         "b", "--runtime.hot_reload", "--runtime.hot_reload=false"});
    CHECK(c.socket.port == 7001);
    CHECK(c.name == "b");
    CHECK(!c.runtime.hot_reload);
}

TEST_CASE("INI sections map to dotted keys; files then CLI, later wins key by key") {
    nk::test::TempDir dir;
    nk::test::write_file(dir / "a.ini",
                         "# first file\n"
                         "name = alpha\n"
                         "shutdown_grace_sec = 11\n"
                         "[socket]\n"
                         "port = 7400\n"
                         "server_key = from-a\n"
                         "[runtime]\n"
                         "event_queue_size = 100\n"
                         "event_queue_workers = 3\n"
                         "env = REGION=eu\n"
                         "env = MODE=a\n");
    nk::test::write_file(dir / "b.ini",
                         "name = beta\n"
                         "[socket]\n"
                         "port = 7401\n"
                         "[runtime]\n"
                         "event_queue_workers = 4\n"
                         "env = MODE=b\n"
                         "env = EXTRA=1\n");
    const auto a = (dir / "a.ini").string();
    const auto b = (dir / "b.ini").string();

    const Config only_a = ok({"--config", a});
    CHECK(only_a.name == "alpha");
    CHECK(only_a.shutdown_grace_sec == 11);
    CHECK(only_a.socket.port == 7400);
    CHECK(only_a.session.server_key == "from-a");
    CHECK(only_a.events.queue_size == 100);
    CHECK(only_a.events.workers == 3);

    // [runtime] event_queue_size = 100 is the same as --runtime.event_queue_size 100.
    CHECK(ok({"--runtime.event_queue_size", "100"}).events.queue_size == only_a.events.queue_size);

    const Config both = ok({"--config", a, "--config=" + b, "--runtime.event_queue_workers", "5",
                            "--runtime.env", "EXTRA=cli"});
    CHECK(both.name == "beta");                  // b over a
    CHECK(both.shutdown_grace_sec == 11);        // only in a
    CHECK(both.socket.port == 7401);             // b over a
    CHECK(both.session.server_key == "from-a");  // only in a
    CHECK(both.events.queue_size == 100);        // only in a
    CHECK(both.events.workers == 5);             // CLI over b over a
    CHECK(both.runtime.env ==
          std::map<std::string, std::string>{{"REGION", "eu"}, {"MODE", "b"}, {"EXTRA", "cli"}});

    // Order of --config decides, even when the CLI flag comes before the files.
    const Config reversed = ok({"--socket.port", "9000", "--config", b, "--config", a});
    CHECK(reversed.name == "alpha");
    CHECK(reversed.events.workers == 3);
    CHECK(reversed.socket.port == 9000);
    CHECK(reversed.runtime.env ==
          std::map<std::string, std::string>{{"REGION", "eu"}, {"MODE", "a"}, {"EXTRA", "1"}});
}

TEST_CASE("Nakama YAML file: nested keys, env list, unsupported keys, DSN address") {
    nk::test::TempDir dir;
    nk::test::write_file(dir / "nakama.yml",
                         "name: nakama-node-1\n"
                         "data_dir: ./yaml-data\n"
                         "logger:\n"
                         "  level: debug\n"
                         "  stdout: true\n"
                         "socket:\n"
                         "  server_key: yamlkey\n"
                         "  port: 7352\n"
                         "session:\n"
                         "  token_expiry_sec: 7200\n"
                         "  single_socket: true\n"
                         "database:\n"
                         "  address:\n"
                         "    - root@localhost:26257\n"
                         "runtime:\n"
                         "  env:\n"
                         "    - \"example_apikey=example_apivalue\"\n"
                         "    - \"region=eu\"\n"
                         "  event_queue_size: 1024\n"
                         "  js_entrypoint: build/index.js\n"
                         "console:\n"
                         "  port: 7351\n"
                         "  username: admin\n"
                         "social:\n"
                         "  steam:\n"
                         "    app_id: 123\n"
                         "match:\n"
                         "  labels: [a, b]\n");
    const auto yml = (dir / "nakama.yml").string();
    const Config c = ok({"--config", yml, "--runtime.env", "region=us"});
    CHECK(c.name == "nakama-node-1");
    CHECK(c.data_dir == (fs::current_path() / "yaml-data").string());
    CHECK(c.logger.level == "debug");
    CHECK(c.session.server_key == "yamlkey");
    CHECK(c.socket.port == 7352);
    CHECK(c.session.token_expiry_sec == 7200);
    CHECK(c.realtime.single_socket);
    CHECK(c.events.queue_size == 1024);
    CHECK(c.runtime.env == std::map<std::string, std::string>{
                               {"example_apikey", "example_apivalue"}, {"region", "us"}});
    // A server address selects PostgreSQL, kept as written.
    CHECK(c.database.address == "root@localhost:26257");

    std::vector<std::string> unsupported;
    for (const auto& w : c.warnings) {
        if (w.find("logger.stdout") != std::string::npos)
            unsupported.push_back(w);
    }
    REQUIRE(unsupported.size() == 1);  // ONE warning listing all of them
    const std::string& w = unsupported[0];
    for (const char* key :
         {"logger.stdout", "runtime.js_entrypoint", "console.port", "console.username",
          "social.steam.app_id", "match.labels"}) {
        CHECK_MESSAGE(w.find(key) != std::string::npos, key << " missing from: " << w);
    }
    CHECK(w.find("socket.port") == std::string::npos);
    CHECK(w.find("database.address") == std::string::npos);

    // database.address as a plain scalar path, and as a list holding a path.
    nk::test::write_file(dir / "db.yaml", "database:\n  address: /var/lib/nk/game.db\n");
    CHECK(ok({"--config", (dir / "db.yaml").string()}).database.address == "/var/lib/nk/game.db");
    nk::test::write_file(dir / "db2.yaml", "database:\n  address:\n    - /srv/a.db\n");
    const Config db2 = ok({"--config", (dir / "db2.yaml").string()});
    CHECK(db2.database.address == "/srv/a.db");
    CHECK(!has_warning_containing(db2, "ignoring"));
    nk::test::write_file(dir / "db3.yaml",
                         "database:\n  address: \"postgresql://user:pw@db:5432/nakama\"\n");
    const Config db3 = ok({"--config", (dir / "db3.yaml").string()});
    CHECK(db3.database.address == "postgresql://user:pw@db:5432/nakama");
    CHECK(!has_warning_containing(db3, "database.address"));
    // As Nakama, the first of several addresses is used; the others are warned about.
    nk::test::write_file(dir / "db4.yaml",
                         "database:\n  address:\n    - root@db1:26257\n    - root@db2:26257\n");
    const Config db4 = ok({"--config", (dir / "db4.yaml").string()});
    CHECK(db4.database.address == "root@db1:26257");
    CHECK(has_warning_containing(db4, "root@db2:26257: only the first address is used"));
    // A server address on the command line is not made a path.
    CHECK(ok({"--database.address", "nk:pw@127.0.0.1:5432/game"}).database.address ==
          "nk:pw@127.0.0.1:5432/game");

    // A known key with an invalid value is an error in YAML too.
    nk::test::write_file(dir / "bad.yml", "runtime:\n  event_queue_workers: 0\n");
    fails({"--config", (dir / "bad.yml").string()}, "runtime.event_queue_workers", ">= 1");
    nk::test::write_file(dir / "bad2.yml", "socket:\n  port: [1, 2]\n");
    fails({"--config", (dir / "bad2.yml").string()}, "socket.port");
    nk::test::write_file(dir / "bad3.yml", "runtime:\n  env:\n    - novalue\n");
    fails({"--config", (dir / "bad3.yml").string()}, "runtime.env", "KEY=VALUE");
    nk::test::write_file(dir / "bad4.yml", "socket: {port: 7350\n");
    fails({"--config", (dir / "bad4.yml").string()}, "bad4.yml");
    nk::test::write_file(dir / "bad5.yml", "logger:\n  format: stackdriver\n");
    fails({"--config", (dir / "bad5.yml").string()}, "logger.format", "stackdriver");
}

TEST_CASE("runtime.env merges per KEY across YAML, INI and CLI") {
    nk::test::TempDir dir;
    nk::test::write_file(dir / "a.yaml", "runtime:\n  env:\n    - A=yaml\n    - B=yaml\n");
    nk::test::write_file(dir / "b.ini", "[runtime]\nenv = B=ini\nenv = C=ini\n");
    const Config c =
        ok({"--config", (dir / "a.yaml").string(), "--config", (dir / "b.ini").string(),
            "--runtime.env", "C=cli", "--runtime.env", "D=x=y", "--runtime.env", "E="});
    CHECK(c.runtime.env == std::map<std::string, std::string>{
                               {"A", "yaml"}, {"B", "ini"}, {"C", "cli"}, {"D", "x=y"}, {"E", ""}});
    fails({"--runtime.env", "NOEQUALS"}, "runtime.env", "KEY=VALUE");
    fails({"--runtime.env", "=v"}, "runtime.env");
}

TEST_CASE("invalid values: exit 2 and one line naming the key") {
    fails({"--runtime.event_queue_workers", "0"}, "runtime.event_queue_workers", ">= 1 (got 0)");
    CHECK(run({"--runtime.event_queue_workers", "0"}).output ==
          "nkhost: invalid value for runtime.event_queue_workers: must be >= 1 (got 0)");
    fails({"--runtime.event_queue_size", "0"}, "runtime.event_queue_size", ">= 1");
    fails({"--socket.port", "abc"}, "socket.port", "integer");
    fails({"--socket.port", "65536"}, "socket.port", "<= 65535");
    fails({"--socket.port", "-1"}, "socket.port", ">= 0");
    fails({"--socket.port", "12x"}, "socket.port");
    fails({"--socket.port", "99999999999999999999999"}, "socket.port");
    fails({"--metrics.prometheus_port", "70000"}, "metrics.prometheus_port");
    fails({"--session.token_expiry_sec", "1.5"}, "session.token_expiry_sec");
    fails({"--logger.level", "verbose"}, "logger.level", "debug, info, warn, error");
    fails({"--logger.format", "xml"}, "logger.format");
    fails({"--runtime.event_queue_full_policy", "block"}, "runtime.event_queue_full_policy",
          "drop, reject");
    fails({"--runtime.hot_reload=maybe"}, "runtime.hot_reload");
    fails({"--name", ""}, "name", "1-16");
    fails({"--name", "seventeen-chars-x"}, "name", "1-16");
    CHECK(ok({"--name", "sixteen-chars-xx"}).name == "sixteen-chars-xx");
    fails({"--session.encryption_key", "same", "--session.refresh_encryption_key", "same"},
          "session.refresh_encryption_key", "differ");
    fails({"--socket.ping_period_ms", "25000"}, "socket.ping_period_ms", "pong_wait_ms");
    fails({"--socket.pong_wait_ms", "1000"}, "socket.ping_period_ms");
    fails({"--socket.ssl_certificate", "cert.pem"}, "socket.ssl_certificate",
          "socket.ssl_private_key");
    fails({"--socket.ssl_private_key", "key.pem"}, "socket.ssl_private_key",
          "socket.ssl_certificate");
    fails({"--database.bcrypt_cost", "3"}, "database.bcrypt_cost");
    fails({"--database.max_open_conns", "0"}, "database.max_open_conns", ">= 1");
    fails({"--socket.port"}, "socket.port");  // value missing
}

TEST_CASE("unknown keys, stray arguments and unreadable files: exit 2") {
    fails({"--no.such.key", "1"}, "no.such.key", "unknown");
    fails({"--socket.por", "7350"}, "socket.por", "unknown");  // no prefix guessing
    fails({"stray"}, "stray", "unexpected argument");
    fails({"--name", "a", "true"}, "true", "--key=true");
    fails({"--socket.port", "7350", "extra"}, "extra");

    nk::test::TempDir dir;
    fails({"--config", (dir / "missing.ini").string()}, "config", "missing.ini");
    fails({"--config", (dir / "missing.yml").string()}, "config", "missing.yml");
    fails({"--config", dir.path().string()}, "config");
    fails({"--config"}, "config");

    nk::test::write_file(dir / "unknown.ini", "[socket]\nportt = 1\n");
    fails({"--config", (dir / "unknown.ini").string()}, "socket.portt", "unknown");
    nk::test::write_file(dir / "badvalue.ini", "[runtime]\nevent_queue_workers = 0\n");
    fails({"--config", (dir / "badvalue.ini").string()}, "runtime.event_queue_workers",
          ">= 1 (got 0)");
    nk::test::write_file(dir / "syntax.ini", "[socket\nport = 1\n");
    fails({"--config", (dir / "syntax.ini").string()}, "syntax.ini");
    // Boost's own message for these lines never finishes formatting (placeholders in the line).
    nk::test::write_file(dir / "percent.ini", "[socket]\nport = 1\nfoo %value% bar\n");
    fails({"--config", (dir / "percent.ini").string()}, "percent.ini:3", "'foo %value% bar'");
    nk::test::write_file(dir / "percent2.ini", "%invalid_line%\n");
    fails({"--config", (dir / "percent2.ini").string()}, "percent2.ini:1", "'%invalid_line%'");
    nk::test::write_file(dir / "percent3.ini", "# c\n\n  %value% # x\n");
    fails({"--config", (dir / "percent3.ini").string()}, "percent3.ini:3", "invalid config file");
    nk::test::write_file(dir / "config.ini", "config = other.ini\n");
    fails({"--config", (dir / "config.ini").string()}, "config", "unknown");
}

TEST_CASE("--help lists every key with its default; --version") {
    const auto help = run({"--help"});
    CHECK(!help.config);
    CHECK(help.exit_code == 0);
    CHECK(help.output == nk::config::help_text());
    for (const auto& key : all_keys) {
        const auto pos = help.output.find("--" + key + " <");
        CHECK_MESSAGE(pos != std::string::npos, key);
        if (pos == std::string::npos)
            continue;
        const auto line_end = help.output.find('\n', help.output.find('\n', pos) + 1);
        const std::string entry = help.output.substr(pos, line_end - pos);
        CHECK_MESSAGE(entry.find("Default: ") != std::string::npos, entry);
    }
    for (const char* expected :
         {"--socket.port <integer 0..65535>", "Default: 7350", "Default: 65536", "Default: 8",
          "Default: 262144", "Default: nkhost", "Default: nakama", "Default: <cwd>/data",
          "Default: defaultkey", "--config FILE", "--version"}) {
        CHECK_MESSAGE(help.output.find(expected) != std::string::npos, expected);
    }
    CHECK(run({"-h"}).output == help.output);

    const auto version = run({"--version"});
    CHECK(!version.config);
    CHECK(version.exit_code == 0);
    CHECK(version.output == "nkhost " NK_TEST_PROJECT_VERSION "\n");
    CHECK(version.output == nk::config::version_text() + "\n");

    CHECK(run({"--help", "--socket.port", "7350"}).exit_code == 0);
}

TEST_CASE("startup warnings for default keys") {
    const Config defaults = ok({});
    for (const char* key : {"socket.server_key", "runtime.http_key", "session.encryption_key",
                            "session.refresh_encryption_key"}) {
        CHECK_MESSAGE(has_warning_containing(defaults, std::string(key) + " is the default"), key);
    }
    CHECK(defaults.warnings.size() == 4);
    const Config changed = ok({"--socket.server_key", "x", "--session.encryption_key", "y"});
    CHECK(changed.warnings.size() == 2);
    CHECK(!has_warning_containing(changed, "socket.server_key"));
    CHECK(has_warning_containing(changed, "runtime.http_key is the default"));
    CHECK(has_warning_containing(changed, "change it in production"));
}

TEST_CASE("docs/configuration.md is generated from the key table") {
    const std::string markdown = nk::config::markdown_reference();
    for (const auto& key : all_keys) {
        CHECK_MESSAGE(markdown.find("| `" + key + "` |") != std::string::npos, key);
    }
    const auto from_flag = run({"--help-markdown"});
    CHECK(from_flag.exit_code == 0);
    CHECK(from_flag.output == markdown);

    const fs::path docs = nk::test::source_dir() / "docs" / "configuration.md";
    INFO("regenerate with: cmake --build <build> --target nk_config_docs");
    REQUIRE(fs::exists(docs));
    CHECK(nk::test::read_file(docs) == markdown);
}
