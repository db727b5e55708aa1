#include "config/config.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <stdexcept>
#include <type_traits>

#ifndef NK_VERSION
#define NK_VERSION "0.0.0"
#endif

namespace nk::config {
namespace {

namespace po = boost::program_options;
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------
// The table of keys. Everything else (Program_options descriptions, --help, the markdown
// reference, INI/YAML/CLI parsing) is derived from it.

struct Key {
    std::string name;          // dotted, e.g. "socket.port"
    std::string type;          // shown in --help and the docs
    std::string description;   // one sentence or two
    std::string default_text;  // set when the default is derived; otherwise from Config{}
    bool is_bool = false;      // "--key" alone means true
    bool repeatable = false;   // values accumulate (runtime.env)
    std::function<std::string(const Config&)> show;
    // Applies one textual value; returns the reason it is invalid, or "" when it was applied.
    std::function<std::string(Config&, const std::string&)> set;
};

std::string got(const std::string& value) {
    return " (got " + value + ")";
}

template <class Access>
Key integer_key(std::string name, Access access, std::int64_t min, std::int64_t max,
                std::string description) {
    using T = std::remove_cvref_t<decltype(access(std::declval<Config&>()))>;
    static_assert(std::is_integral_v<T>);
    Key key;
    key.name = std::move(name);
    key.type = "integer " + std::to_string(min) + ".." + std::to_string(max);
    key.description = std::move(description);
    key.show = [access](const Config& c) { return std::to_string(access(const_cast<Config&>(c))); };
    key.set = [access, min, max](Config& c, const std::string& value) -> std::string {
        std::int64_t n = 0;
        const char* begin = value.data();
        const char* end = value.data() + value.size();
        if (begin != end && *begin == '+')
            ++begin;
        const auto [ptr, ec] = std::from_chars(begin, end, n);
        if (value.empty() || ptr != end || ec == std::errc::invalid_argument) {
            return "must be an integer" + got(value);
        }
        if (ec == std::errc::result_out_of_range || n > max) {
            return "must be <= " + std::to_string(max) + got(value);
        }
        if (n < min)
            return "must be >= " + std::to_string(min) + got(value);
        access(c) = static_cast<T>(n);
        return "";
    };
    return key;
}

template <class Access>
Key string_key(std::string name, Access access, std::string description) {
    Key key;
    key.name = std::move(name);
    key.type = "string";
    key.description = std::move(description);
    key.show = [access](const Config& c) { return access(const_cast<Config&>(c)); };
    key.set = [access](Config& c, const std::string& value) -> std::string {
        access(c) = value;
        return "";
    };
    return key;
}

std::string lower(std::string s) {
    std::transform(s.begin(), s.end(), s.begin(),
                   [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
    return s;
}

template <class Access>
Key bool_key(std::string name, Access access, std::string description) {
    Key key;
    key.name = std::move(name);
    key.type = "bool";
    key.description = std::move(description);
    key.is_bool = true;
    key.show = [access](const Config& c) {
        return std::string(access(const_cast<Config&>(c)) ? "true" : "false");
    };
    key.set = [access](Config& c, const std::string& value) -> std::string {
        const std::string v = lower(value);
        if (v == "true" || v == "1" || v == "yes" || v == "on") {
            access(c) = true;
        } else if (v == "false" || v == "0" || v == "no" || v == "off") {
            access(c) = false;
        } else {
            return "must be true or false" + got(value);
        }
        return "";
    };
    return key;
}

// An enumeration stored as a string, or mapped onto an enum through `values`.
template <class Access, class T>
Key choice_key(std::string name, Access access, std::vector<std::pair<std::string, T>> values,
               std::string description) {
    Key key;
    key.name = std::move(name);
    std::string list;
    for (const auto& [text, v] : values)
        list += (list.empty() ? "" : "|") + text;
    key.type = list;
    key.description = std::move(description);
    key.show = [access, values](const Config& c) {
        for (const auto& [text, v] : values) {
            if (access(const_cast<Config&>(c)) == v)
                return text;
        }
        return std::string("?");
    };
    key.set = [access, values, list](Config& c, const std::string& value) -> std::string {
        for (const auto& [text, v] : values) {
            if (value == text) {
                access(c) = v;
                return "";
            }
        }
        std::string one_of = list;
        std::replace(one_of.begin(), one_of.end(), '|', ',');
        std::string pretty;
        for (std::size_t i = 0; i < one_of.size(); ++i) {
            pretty += one_of[i];
            if (one_of[i] == ',')
                pretty += ' ';
        }
        return "must be one of " + pretty + got(value);
    };
    return key;
}

std::vector<std::pair<std::string, std::string>> same_names(std::initializer_list<const char*> v) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const char* s : v)
        out.emplace_back(s, s);
    return out;
}

// Limits that keep a typo from turning into a huge allocation or thread count at startup.
constexpr std::int64_t kMaxU16 = 65535;
constexpr std::int64_t kMaxU32 = 4294967295LL;
constexpr std::int64_t kMaxBytes = std::int64_t{1} << 40;
constexpr std::int64_t kMaxQueue = std::int64_t{1} << 26;
constexpr std::int64_t kMaxThreads = 1024;

std::vector<Key> build_keys() {
    std::vector<Key> k;

    // General.
    {
        Key key = string_key(
            "name", [](Config & c) -> auto& { return c.name; },
            "Node name, 1-16 characters; the runtime context's node and the "
            "metrics node_name label.");
        key.set = [](Config& c, const std::string& value) -> std::string {
            if (value.empty() || value.size() > 16)
                return "must be 1-16 characters" + got(value);
            c.name = value;
            return "";
        };
        k.push_back(std::move(key));
    }
    {
        Key key = string_key(
            "data_dir", [](Config & c) -> auto& { return c.data_dir; },
            "Directory for the database, modules and private module copies; "
            "relative paths are made absolute.");
        key.default_text = "<cwd>/data";
        k.push_back(std::move(key));
    }
    k.push_back(integer_key(
        "shutdown_grace_sec", [](Config & c) -> auto& { return c.shutdown_grace_sec; }, 0, 3600,
        "Seconds to let in-flight requests and queued events finish on "
        "shutdown."));

    // logger.*
    k.push_back(choice_key(
        "logger.level", [](Config & c) -> auto& { return c.logger.level; },
        same_names({"debug", "info", "warn", "error"}), "Minimum level of log lines."));
    k.push_back(choice_key(
        "logger.format", [](Config & c) -> auto& { return c.logger.format; },
        same_names({"text", "json"}), "Log line format: text, or JSON objects one per line."));
    {
        Key key = string_key(
            "logger.file", [](Config & c) -> auto& { return c.logger.file; },
            "Also append log lines to this file (\"\" = stdout only).");
        key.type = "path";
        k.push_back(std::move(key));
    }

    // socket.*
    k.push_back(string_key(
        "socket.address", [](Config & c) -> auto& { return c.socket.address; },
        "IP address to listen on (\"\" = all interfaces)."));
    k.push_back(integer_key(
        "socket.port", [](Config & c) -> auto& { return c.socket.port; }, 0, kMaxU16,
        "Port of the HTTP API and the realtime socket (/ws)."));
    k.push_back(string_key(
        "socket.server_key", [](Config & c) -> auto& { return c.session.server_key; },
        "Server key that clients send (Basic auth) to authenticate."));
    k.push_back(integer_key(
        "socket.max_request_size_bytes",
        [](Config & c) -> auto& { return c.socket.max_request_size_bytes; }, 1, kMaxBytes,
        "Maximum HTTP request body size, compressed and decompressed."));
    k.push_back(integer_key(
        "socket.max_header_size_bytes",
        [](Config & c) -> auto& { return c.socket.max_header_size_bytes; }, 1, kMaxBytes,
        "Maximum size of the HTTP request headers (431 over it). A connection's read buffer "
        "holds at most max(this, 65536) bytes, which also bounds a chunk-size line with its "
        "extensions and the trailer section of a chunked body (400 over it); both close the "
        "connection."));
    k.push_back(integer_key(
        "socket.read_timeout_ms", [](Config & c) -> auto& { return c.socket.read_timeout_ms; }, 1,
        kMaxU32, "Time allowed to read a whole HTTP request."));
    k.push_back(integer_key(
        "socket.write_timeout_ms", [](Config & c) -> auto& { return c.socket.write_timeout_ms; }, 1,
        kMaxU32, "Time allowed to write a whole HTTP response."));
    k.push_back(integer_key(
        "socket.idle_timeout_ms", [](Config & c) -> auto& { return c.socket.idle_timeout_ms; }, 1,
        kMaxU32, "Idle time before a keep-alive connection is closed."));
    {
        Key key = string_key(
            "socket.ssl_certificate", [](Config & c) -> auto& { return c.socket.ssl_certificate; },
            "PEM certificate file; enables TLS together with "
            "socket.ssl_private_key.");
        key.type = "path";
        k.push_back(std::move(key));
    }
    {
        Key key = string_key(
            "socket.ssl_private_key", [](Config & c) -> auto& { return c.socket.ssl_private_key; },
            "PEM private key file; enables TLS together with "
            "socket.ssl_certificate.");
        key.type = "path";
        k.push_back(std::move(key));
    }
    k.push_back(integer_key(
        "socket.proxy_count", [](Config & c) -> auto& { return c.socket.proxy_count; }, 0, 64,
        "Number of trusted proxies in front of the server: the client IP is the N-th "
        "X-Forwarded-For entry from the right. 0 ignores X-Forwarded-For and uses the peer "
        "address. Behind N proxies set it to N. The default is 0, unlike Nakama's 1: with 1 and "
        "no proxy, a client chooses its own address (login throttling, logs, hooks) by sending "
        "the header."));
    k.push_back(integer_key(
        "socket.io_threads", [](Config & c) -> auto& { return c.socket.io_threads; }, 0,
        kMaxThreads, "Network I/O threads (0 = number of cores)."));
    k.push_back(integer_key(
        "socket.blocking_threads", [](Config & c) -> auto& { return c.socket.blocking_threads; }, 0,
        kMaxThreads,
        "Threads for database, bcrypt and plugin calls (0 = max(4, 2 x "
        "cores))."));
    k.push_back(integer_key(
        "socket.blocking_queue_size",
        [](Config & c) -> auto& { return c.socket.blocking_queue_size; }, 0, kMaxU32,
        "Requests queued for the blocking threads, beyond those running; over it a request is "
        "answered 503 code 14 with Retry-After (metric blocking_queue_rejected). 0 = "
        "unbounded. Queued requests whose client has closed the connection are dropped unrun "
        "(metric blocking_queue_abandoned)."));
    k.push_back(integer_key(
        "socket.blocking_queue_max_bytes",
        [](Config & c) -> auto& { return c.socket.blocking_queue_max_bytes; }, 0, kMaxBytes,
        "Bytes (request bodies) held by requests queued for the blocking threads; over it a "
        "request is answered 503 code 14 with Retry-After (metric blocking_queue_rejected). "
        "0 = unbounded."));
    k.push_back(integer_key(
        "socket.password_threads", [](Config & c) -> auto& { return c.socket.password_threads; },
        0, kMaxThreads,
        "Most blocking threads hashing passwords (email authentication, bcrypt) at once; the "
        "others keep serving other requests while password work waits its turn. 0 = a quarter "
        "of the blocking threads, at least 1."));
    k.push_back(integer_key(
        "socket.max_connections", [](Config & c) -> auto& { return c.socket.max_connections; }, 0,
        kMaxU32,
        "Maximum simultaneous connections, realtime sockets included (0 = unlimited); a "
        "connection over it is closed at accept (metric http_connections_rejected)."));
    k.push_back(integer_key(
        "socket.response_compression_min_bytes",
        [](Config & c) -> auto& { return c.socket.response_compression_min_bytes; }, 0, kMaxBytes,
        "Responses of at least this many bytes are sent gzip-compressed to clients whose "
        "Accept-Encoding allows it (Nakama compresses per Accept-Encoding); smaller ones gain "
        "nothing. 0 never compresses."));
    k.push_back(integer_key(
        "socket.max_message_size_bytes",
        [](Config & c) -> auto& { return c.realtime.max_message_size_bytes; }, 1, kMaxBytes,
        "Maximum size of one realtime (WebSocket) message."));
    // Capped: RapidJSON walks a parsed document recursively (destruction, copies), so the
    // limit is what keeps those walks within a thread's stack.
    k.push_back(integer_key(
        "socket.max_json_depth", [](Config & c) -> auto& { return c.max_json_depth; }, 1, 1024,
        "Maximum nesting of objects and arrays in any JSON the server parses: request bodies, "
        "realtime messages, JSON from plugins. Deeper documents are refused with 400 code 3 "
        "(a realtime socket is closed) and counted in json_depth_exceeded."));
    k.push_back(integer_key(
        "socket.ping_period_ms", [](Config & c) -> auto& { return c.realtime.ping_period_ms; }, 1,
        kMaxU32,
        "Interval of WebSocket pings to realtime clients; must be less than "
        "socket.pong_wait_ms."));
    k.push_back(integer_key(
        "socket.pong_wait_ms", [](Config & c) -> auto& { return c.realtime.pong_wait_ms; }, 1,
        kMaxU32, "Time without a pong or message before a realtime socket is closed."));
    k.push_back(integer_key(
        "socket.write_wait_ms", [](Config & c) -> auto& { return c.realtime.write_wait_ms; }, 1,
        kMaxU32, "Time allowed to write one realtime message."));
    k.push_back(integer_key(
        "socket.close_ack_wait_ms",
        [](Config & c) -> auto& { return c.realtime.close_ack_wait_ms; }, 0, kMaxU32,
        "Time to wait for the client's close frame on disconnect."));
    k.push_back(integer_key(
        "socket.ping_backoff_threshold",
        [](Config & c) -> auto& { return c.realtime.ping_backoff_threshold; }, 1, kMaxU32,
        "Messages received in a ping period that make the server skip its "
        "ping."));
    k.push_back(integer_key(
        "socket.outgoing_queue_size",
        [](Config & c) -> auto& { return c.realtime.outgoing_queue_size; }, 1, kMaxQueue,
        "Messages queued to one realtime client; overflow disconnects it."));

    // session.*
    k.push_back(string_key(
        "session.encryption_key", [](Config & c) -> auto& { return c.session.encryption_key; },
        "Key that signs session tokens; must differ from "
        "session.refresh_encryption_key."));
    k.push_back(string_key(
        "session.refresh_encryption_key",
        [](Config & c) -> auto& { return c.session.refresh_encryption_key; },
        "Key that signs refresh tokens."));
    k.push_back(integer_key(
        "session.login_failures_per_account_address",
        [](Config & c) -> auto& { return c.login_throttle.failures_per_account_address; }, 0,
        kMaxU32,
        "Failed password logins (email authenticate) allowed per account and client address in "
        "a window; more are answered 429 code 8 with Retry-After, before any password hashing "
        "(metric login_throttled). Keyed on the pair, so failures elsewhere never lock an "
        "account out. 0 = off."));
    k.push_back(integer_key(
        "session.login_failures_per_address",
        [](Config & c) -> auto& { return c.login_throttle.failures_per_address; }, 0, kMaxU32,
        "Failed password logins allowed per client address in a window, whatever the account; "
        "more are answered 429 code 8 with Retry-After (metric login_throttled). Higher than the "
        "per-account limit so that users behind one NAT address are not throttled together. "
        "0 = off."));
    k.push_back(integer_key(
        "session.login_failure_window_sec",
        [](Config & c) -> auto& { return c.login_throttle.window_sec; }, 1, 86400,
        "Length of the window the login failure limits count in."));
    k.push_back(integer_key(
        "session.login_throttle_max_keys",
        [](Config & c) -> auto& { return c.login_throttle.max_keys; }, 1, kMaxU32,
        "Most (account, address) pairs and addresses tracked by the login throttle; when full, "
        "ended windows and then the oldest are forgotten."));
    k.push_back(integer_key(
        "session.token_expiry_sec", [](Config & c) -> auto& { return c.session.token_expiry_sec; },
        1, kMaxU32, "Lifetime of session tokens in seconds."));
    k.push_back(integer_key(
        "session.refresh_token_expiry_sec",
        [](Config & c) -> auto& { return c.session.refresh_token_expiry_sec; }, 1, kMaxU32,
        "Lifetime of refresh tokens in seconds."));
    k.push_back(bool_key(
        "session.single_socket", [](Config & c) -> auto& { return c.realtime.single_socket; },
        "Allow one realtime socket per user: a new one disconnects the older."));
    k.push_back(bool_key(
        "session.single_session", [](Config & c) -> auto& { return c.session.single_session; },
        "Allow one session per user: a new authentication invalidates older "
        "tokens and closes the realtime sockets opened with them."));
    k.push_back(integer_key(
        "session.max_vars_bytes", [](Config & c) -> auto& { return c.session.max_vars_bytes; }, 0,
        kMaxBytes,
        "Largest session vars (as JSON) authenticate and refresh accept (400 over it); lowered "
        "so that a token with such vars fits in socket.max_header_size_bytes."));

    // database.*
    {
        Key key = string_key(
            "database.address", [](Config & c) -> auto& { return c.database.address; },
            "SQLite database file (\":memory:\" for a throwaway database), or a PostgreSQL "
            "server: Nakama's user:password@host:port/dbname (dbname defaults to nakama) or a "
            "postgres:// URL (docs/scale-out.md).");
        key.type = "path or server";
        key.default_text = "<data_dir>/nkhost.db";
        k.push_back(std::move(key));
    }
    k.push_back(integer_key(
        "database.busy_timeout_ms", [](Config & c) -> auto& { return c.database.busy_timeout_ms; },
        0, kMaxU32, "How long SQLite waits for a locked database."));
    {
        Key key = integer_key(
            "database.max_open_conns", [](Config & c) -> auto& { return c.database.max_open_conns; },
            1, kMaxThreads,
            "Connections in the pool; calls wait for a free one (PostgreSQL: up to "
            "database.connect_timeout_ms, then 503).");
        key.default_text = "8 (SQLite), 100 (PostgreSQL)";
        k.push_back(std::move(key));
    }
    k.push_back(integer_key(
        "database.max_idle_conns", [](Config & c) -> auto& { return c.database.max_idle_conns; },
        0, kMaxThreads, "PostgreSQL: connections kept open while idle."));
    k.push_back(integer_key(
        "database.conn_max_lifetime_ms",
        [](Config & c) -> auto& { return c.database.conn_max_lifetime_ms; }, 0, kMaxU32,
        "PostgreSQL: a connection older than this is closed when it is next returned to the "
        "pool (0 = no limit)."));
    k.push_back(integer_key(
        "database.connect_timeout_ms",
        [](Config & c) -> auto& { return c.database.connect_timeout_ms; }, 1, kMaxU32,
        "PostgreSQL: longest wait to open a connection, or for a free one when all are busy, "
        "before the call is answered 503 (libpq counts whole seconds, at least 2)."));
    k.push_back(integer_key(
        "database.bcrypt_cost", [](Config & c) -> auto& { return c.database.bcrypt_cost; }, 4, 31,
        "bcrypt cost of stored passwords."));
    k.push_back(integer_key(
        "database.wal_checkpoint_interval_ms",
        [](Config & c) -> auto& { return c.database.wal_checkpoint_interval_ms; }, 0, kMaxU32,
        "How often wal_checkpoint(TRUNCATE) empties the -wal file (0 = only SQLite's own "
        "checkpoints, which never shrink it)."));
    k.push_back(integer_key(
        "database.journal_size_limit_bytes",
        [](Config & c) -> auto& { return c.database.journal_size_limit_bytes; }, 0, kMaxBytes,
        "Size SQLite truncates the -wal file to after a checkpoint that reset it."));
    k.push_back(integer_key(
        "database.max_size_bytes", [](Config & c) -> auto& { return c.database.max_size_bytes; },
        0, kMaxBytes,
        "Largest the database file may grow (0 = no limit); writes beyond it fail as on a full "
        "disk (500, logged, counted in database_errors)."));

    // storage.*
    k.push_back(integer_key(
        "storage.max_value_size_bytes",
        [](Config & c) -> auto& { return c.database.storage.max_value_bytes; }, 2, 16u << 20,
        "Largest storage object value (a JSON object), in bytes; larger writes answer 400."));
    k.push_back(integer_key(
        "storage.max_batch_size", [](Config & c) -> auto& { return c.database.storage.max_batch; },
        1, 10000,
        "Most objects (or wallet updates) in one storage write, read, delete or multi-update; "
        "more answer 400."));

    // runtime.*
    {
        Key key = string_key(
            "runtime.path", [](Config & c) -> auto& { return c.runtime.path; },
            "Directory searched (recursively) for plugin modules (.so).");
        key.type = "path";
        key.default_text = "<data_dir>/modules";
        k.push_back(std::move(key));
    }
    {
        Key key;
        key.name = "runtime.env";
        key.type = "KEY=VALUE, repeatable";
        key.description =
            "Value passed to plugins in the runtime environment; repeat for more "
            "keys. Later sources override the same KEY.";
        key.repeatable = true;
        key.show = [](const Config& c) {
            std::string out;
            for (const auto& [name, value] : c.runtime.env) {
                out += (out.empty() ? "" : " ") + name + "=" + value;
            }
            return out;
        };
        key.set = [](Config& c, const std::string& value) -> std::string {
            const auto eq = value.find('=');
            if (eq == std::string::npos)
                return "must be KEY=VALUE" + got(value);
            if (eq == 0)
                return "KEY must not be empty" + got(value);
            c.runtime.env[value.substr(0, eq)] = value.substr(eq + 1);
            return "";
        };
        k.push_back(std::move(key));
    }
    k.push_back(string_key(
        "runtime.http_key", [](Config & c) -> auto& { return c.session.http_key; },
        "Key for server-to-server RPC calls (?http_key=)."));
    k.push_back(bool_key(
        "runtime.skip_failed_modules",
        [](Config & c) -> auto& { return c.runtime.skip_failed_modules; },
        "Log and skip modules that fail to load instead of stopping startup."));
    k.push_back(bool_key(
        "runtime.hot_reload", [](Config & c) -> auto& { return c.runtime.hot_reload; },
        "Watch runtime.path (inotify) and reload a module when its file is written, renamed "
        "over or recreated; load new files and unload removed ones. Development; SIGHUP "
        "re-scans runtime.path whether or not this is on."));
    k.push_back(integer_key(
        "runtime.hot_reload_debounce_ms",
        [](Config & c) -> auto& { return c.runtime.hot_reload_debounce_ms; }, 0, 60000,
        "Quiet time after the last change to a module file before it is reloaded; a file "
        "removed and recreated within it is reloaded, never unloaded."));
    k.push_back(integer_key(
        "runtime.hot_reload_grace_ms",
        [](Config & c) -> auto& { return c.runtime.hot_reload_grace_ms; }, 0, 3600000,
        "Time a retired module generation's shutdown handlers get (after its last call "
        "returned) before the reload goes on without them."));
    k.push_back(integer_key(
        "runtime.stuck_call_ms", [](Config & c) -> auto& { return c.runtime.stuck_call_ms; }, 0,
        86400000,
        "A plugin call (event handler, RPC, hook, HTTP route, shutdown handler) running longer "
        "than this is reported: a warning naming the module, the call and how long it has run "
        "(again each time that doubles), counted in plugin_calls_stuck{module,call}. 0 turns "
        "the watch off."));
    k.push_back(integer_key(
        "runtime.event_queue_size", [](Config & c) -> auto& { return c.events.queue_size; }, 1,
        kMaxQueue, "Capacity of the event queue."));
    k.push_back(integer_key(
        "runtime.event_queue_max_bytes",
        [](Config & c) -> auto& { return c.events.queue_max_bytes; }, 1, kMaxBytes,
        "Bytes the queued and in-flight events may hold (names, property keys and values, "
        "context and a fixed overhead per event). Over it an event is dropped or rejected as "
        "when the queue is full (runtime.event_queue_full_policy; counted in "
        "event_queue_bytes_full). The default holds a flood of large events to 64 MiB while "
        "65,536 ordinary events fit."));
    k.push_back(integer_key(
        "runtime.event_queue_workers", [](Config & c) -> auto& { return c.events.workers; }, 1,
        kMaxThreads, "Worker threads that run event handlers."));
    k.push_back(choice_key(
        "runtime.event_queue_full_policy", [](Config & c) -> auto& { return c.events.full_policy; },
        std::vector<std::pair<std::string, events::FullPolicy>>{
            {"drop", events::FullPolicy::drop}, {"reject", events::FullPolicy::reject}},
        "When the event queue is full: drop the event (Nakama: client still "
        "gets 200) or reject it with 503 and Retry-After."));
    k.push_back(integer_key(
        "runtime.event_worker_nap_us", [](Config & c) -> auto& { return c.events.worker_nap_us; },
        0, 100000,
        "Microseconds an event worker that ran out of work waits for more before it sleeps "
        "until woken (one worker at a time; producers skip the wake meanwhile). Trades that much "
        "handler latency for fewer wake-ups under steady load; 0 disables."));
    k.push_back(integer_key(
        "runtime.event_worker_linger_us",
        [](Config & c) -> auto& { return c.events.worker_linger_us; }, 0, 1000,
        "Microseconds an event worker spins before its next pop while producers keep pace with "
        "it (small batches, each pop finding events queued since the last), so that it takes "
        "a batch instead of chasing them event by event. At most that much added latency, "
        "never at ordinary rates; 0 disables."));
    k.push_back(integer_key(
        "runtime.event_reject_retry_after_sec",
        [](Config & c) -> auto& { return c.events.reject_retry_after_sec; }, 0, 86400,
        "Retry-After seconds sent with a rejected event (503)."));
    k.push_back(integer_key(
        "runtime.event_max_properties", [](Config & c) -> auto& { return c.events.max_properties; },
        0, kMaxQueue, "Maximum number of properties of one event."));
    k.push_back(integer_key(
        "runtime.event_max_name_bytes", [](Config & c) -> auto& { return c.events.max_name_bytes; },
        1, kMaxBytes, "Maximum size of an event name."));
    k.push_back(integer_key(
        "runtime.event_max_key_bytes", [](Config & c) -> auto& { return c.events.max_key_bytes; },
        1, kMaxBytes, "Maximum size of one property key."));
    k.push_back(integer_key(
        "runtime.event_max_value_bytes",
        [](Config & c) -> auto& { return c.events.max_value_bytes; }, 0, kMaxBytes,
        "Maximum size of one property value."));

    // metrics.*
    k.push_back(integer_key(
        "metrics.prometheus_port", [](Config & c) -> auto& { return c.metrics.prometheus_port; }, 0,
        kMaxU16, "Port of the Prometheus endpoint (0 = off)."));
    k.push_back(string_key(
        "metrics.prefix", [](Config & c) -> auto& { return c.metrics.prefix; },
        "Prefix of metric names."));
    return k;
}

const std::vector<Key>& keys() {
    static const std::vector<Key> table = build_keys();
    return table;
}

const Key* find_key(std::string_view name) {
    for (const auto& key : keys()) {
        if (key.name == name)
            return &key;
    }
    return nullptr;
}

std::string default_of(const Key& key) {
    if (!key.default_text.empty())
        return key.default_text;
    return key.show(Config{});
}

// ---------------------------------------------------------------------------------------------
// Parsing.

// Thrown inside parse() to stop at the first problem; becomes exit status 2 and its one line.
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(const std::string& line) {
    throw ConfigError("nkhost: " + line);
}

void apply(Config& config, const std::string& name, const std::string& value) {
    const Key* key = find_key(name);
    if (key == nullptr)
        fail("unknown configuration key " + name);
    const std::string reason = key->set(config, value);
    if (!reason.empty())
        fail("invalid value for " + name + ": " + reason);
}

po::options_description file_options() {
    po::options_description desc;
    for (const auto& key : keys()) {
        if (key.is_bool) {
            desc.add_options()(key.name.c_str(), po::value<std::string>()->implicit_value("true"));
        } else {
            desc.add_options()(key.name.c_str(), po::value<std::string>());
        }
    }
    return desc;
}

constexpr const char* kPositional = "nkhost-positional";

po::options_description command_line_options() {
    po::options_description desc = file_options();
    desc.add_options()("config", po::value<std::string>())("help,h", "")("version", "")(
        "help-markdown", "")(kPositional, po::value<std::string>());
    return desc;
}

std::string option_name(const po::error_with_option_name& e) {
    std::string name = e.get_option_name();
    while (!name.empty() && name.front() == '-')
        name.erase(0, 1);
    return name;
}

std::string value_of(const po::basic_option<char>& option) {
    return option.value.empty() ? std::string("true") : option.value.back();
}

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in || fs::is_directory(path)) {
        fail("invalid value for config: cannot read " + path + " (" +
             (errno != 0 ? std::strerror(errno) : "not a file") + ")");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

// The message for an INI line Boost refused. Built here, not from e.what(): Boost 1.74 fills its
// message template by replacing %name% placeholders until none is left, so a line that itself
// contains "%invalid_line%" (or another placeholder) makes what() loop forever.
std::string ini_syntax_message(const std::string& path, const std::string& text,
                               const po::invalid_config_file_syntax& e) {
    const std::string bad = e.tokens();
    // Boost reports the line trimmed and without its comment; find its number the same way.
    std::size_t number = 0;
    std::istringstream lines(text);
    std::string line;
    for (std::size_t n = 1; std::getline(lines, line); ++n) {
        if (const auto hash = line.find('#'); hash != std::string::npos)
            line.erase(hash);
        const auto first = line.find_first_not_of(" \t\r");
        const auto last = line.find_last_not_of(" \t\r");
        if (first != std::string::npos && line.substr(first, last - first + 1) == bad) {
            number = n;
            break;
        }
    }
    std::string reason;
    switch (e.kind()) {
    case po::invalid_syntax::unrecognized_line:
        reason = "not a [section] or key = value line";
        break;
    case po::invalid_syntax::empty_adjacent_parameter:
        reason = "a key with no name";
        break;
    default:
        reason = "invalid line";
        break;
    }
    std::string shown;  // printable, one line, bounded
    for (const char ch : bad.substr(0, 200))
        shown += (static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f) ? '?' : ch;
    return "invalid config file " + path + (number > 0 ? ":" + std::to_string(number) : "") +
           ": " + reason + ": '" + shown + "'";
}

void apply_ini(Config& config, const std::string& path) {
    const std::string text = read_text(path);
    std::istringstream in(text);
    const po::options_description desc = file_options();
    po::parsed_options parsed(&desc);
    try {
        parsed = po::parse_config_file(in, desc, false);
    } catch (const po::unknown_option& e) {
        fail("unknown configuration key " + option_name(e) + " in " + path);
    } catch (const po::invalid_config_file_syntax& e) {
        fail(ini_syntax_message(path, text, e));
    } catch (const po::error&) {
        // Never e.what() (see ini_syntax_message).
        fail("invalid config file " + path + ": not an INI file");
    }
    for (const auto& option : parsed.options)
        apply(config, option.string_key, value_of(option));
}

struct YamlState {
    std::vector<std::string> unsupported;  // in file order
};

void apply_yaml_node(Config& config, const YAML::Node& node, const std::string& prefix,
                     YamlState& state) {
    if (node.IsNull())
        return;
    const Key* key = prefix.empty() ? nullptr : find_key(prefix);
    if (key == nullptr) {
        if (node.IsMap()) {
            for (const auto& child : node) {
                const std::string name = child.first.as<std::string>();
                apply_yaml_node(config, child.second, prefix.empty() ? name : prefix + "." + name,
                                state);
            }
        } else {
            state.unsupported.push_back(prefix);
        }
        return;
    }
    if (key->name == "database.address") {
        std::vector<std::string> addresses;
        if (node.IsSequence()) {
            for (const auto& item : node) {
                if (!item.IsScalar())
                    fail("invalid value for database.address: must be a path or a server address");
                addresses.push_back(item.Scalar());
            }
        } else if (node.IsScalar()) {
            addresses.push_back(node.Scalar());
        } else {
            fail("invalid value for database.address: must be a path, a server address or a list");
        }
        // As Nakama: the first address is used (a file path: SQLite; a server: PostgreSQL).
        if (addresses.empty())
            fail("invalid value for database.address: the list is empty");
        apply(config, key->name, addresses.front());
        if (addresses.size() > 1) {
            std::string rest;
            for (std::size_t i = 1; i < addresses.size(); ++i)
                rest += (rest.empty() ? "" : ", ") + addresses[i];
            state.unsupported.push_back("database.address (" + rest +
                                        ": only the first address is used)");
        }
        return;
    }
    if (key->repeatable) {
        if (node.IsScalar()) {
            apply(config, key->name, node.Scalar());
            return;
        }
        if (!node.IsSequence())
            fail("invalid value for " + key->name + ": must be a list");
        for (const auto& item : node) {
            if (!item.IsScalar()) {
                fail("invalid value for " + key->name + ": must be a list of KEY=VALUE strings");
            }
            apply(config, key->name, item.Scalar());
        }
        return;
    }
    if (!node.IsScalar())
        fail("invalid value for " + key->name + ": must be a single value");
    apply(config, key->name, node.Scalar());
}

void apply_yaml(Config& config, const std::string& path, YamlState& state) {
    const std::string text = read_text(path);
    YAML::Node root;
    try {
        root = YAML::Load(text);
    } catch (const YAML::Exception& e) {
        fail("invalid config file " + path + ": " + e.what());
    }
    if (root.IsNull())
        return;
    if (!root.IsMap())
        fail("invalid config file " + path + ": the top level must be a map");
    try {
        apply_yaml_node(config, root, "", state);
    } catch (const YAML::Exception& e) {
        fail("invalid config file " + path + ": " + e.what());
    }
}

bool is_yaml(const std::string& path) {
    const std::string ext = lower(fs::path(path).extension().string());
    return ext == ".yml" || ext == ".yaml";
}

// Checks that need more than one key, then the derived values.
void finish(Config& config, const YamlState& yaml) {
    if (config.session.encryption_key == config.session.refresh_encryption_key) {
        fail(
            "invalid value for session.refresh_encryption_key: must differ from "
            "session.encryption_key");
    }
    if (config.realtime.ping_period_ms >= config.realtime.pong_wait_ms) {
        fail("invalid value for socket.ping_period_ms: must be less than socket.pong_wait_ms (" +
             std::to_string(config.realtime.pong_wait_ms) + ") (got " +
             std::to_string(config.realtime.ping_period_ms) + ")");
    }
    if (config.socket.ssl_certificate.empty() != config.socket.ssl_private_key.empty()) {
        const bool has_cert = !config.socket.ssl_certificate.empty();
        fail(std::string("invalid value for ") +
             (has_cert ? "socket.ssl_certificate" : "socket.ssl_private_key") + ": requires " +
             (has_cert ? "socket.ssl_private_key" : "socket.ssl_certificate") + " as well");
    }

    std::error_code ec;
    const fs::path cwd = fs::current_path(ec);
    const auto absolute = [&](const std::string& p) {
        return (fs::path(p).is_absolute() ? fs::path(p) : cwd / p).lexically_normal().string();
    };
    config.data_dir = absolute(config.data_dir.empty() ? std::string("data") : config.data_dir);
    while (config.data_dir.size() > 1 && config.data_dir.back() == '/')
        config.data_dir.pop_back();
    config.runtime.path = config.runtime.path.empty()
                              ? (fs::path(config.data_dir) / "modules").string()
                              : absolute(config.runtime.path);
    if (config.database.address.empty()) {
        config.database.address = (fs::path(config.data_dir) / "nkhost.db").string();
    } else if (config.database.address != ":memory:" &&
               config.database.address.rfind("file:", 0) != 0 &&
               !store::is_server_address(config.database.address)) {
        config.database.address = absolute(config.database.address);
    }
    config.runtime.data_dir = config.data_dir;
    config.runtime.node = config.name;
    config.realtime.max_json_depth = config.max_json_depth;
    config.runtime.max_json_depth = config.max_json_depth;
    config.database.storage.max_json_depth = config.max_json_depth;
    config.metrics.node_name = config.name;
    // A token travels in a header (Authorization) or the /ws request line: one with the largest
    // vars must leave room under socket.max_header_size_bytes for the rest of the request.
    // Besides vars a token holds at most ~660 bytes (JOSE header, signature, ids, a 128-byte
    // username escaped, times); base64url makes 4 bytes of every 3.
    constexpr std::size_t kTokenWithoutVars = 700, kRestOfRequest = 1024;
    const std::size_t header = config.socket.max_header_size_bytes;
    const std::size_t fitting = header > kTokenWithoutVars + kRestOfRequest
                                    ? (header - kTokenWithoutVars - kRestOfRequest) / 4 * 3
                                    : 0;
    config.session.max_vars_bytes = std::min(config.session.max_vars_bytes, fitting);

    const Config defaults;
    const std::pair<const char*, bool> default_keys[] = {
        {"socket.server_key", config.session.server_key == defaults.session.server_key},
        {"runtime.http_key", config.session.http_key == defaults.session.http_key},
        {"session.encryption_key",
         config.session.encryption_key == defaults.session.encryption_key},
        {"session.refresh_encryption_key",
         config.session.refresh_encryption_key == defaults.session.refresh_encryption_key},
    };
    for (const auto& [name, is_default] : default_keys) {
        if (is_default) {
            config.warnings.push_back(std::string(name) + " is the default (" +
                                      find_key(name)->show(defaults) +
                                      "); change it in production");
        }
    }
    if (!yaml.unsupported.empty()) {
        std::string list;
        for (const auto& name : yaml.unsupported)
            list += (list.empty() ? "" : ", ") + name;
        config.warnings.push_back(
            "ignoring Nakama configuration keys that nkhost does not "
            "support: " +
            list);
    }
}

ParseResult parse_or_throw(int argc, const char* const* argv) {
    const po::options_description desc = command_line_options();
    po::positional_options_description positional;
    positional.add(kPositional, -1);
    po::parsed_options parsed(&desc);
    try {
        parsed = po::command_line_parser(argc, argv)
                     .options(desc)
                     .positional(positional)
                     .style(po::command_line_style::default_style &
                            ~po::command_line_style::allow_guessing)
                     .run();
    } catch (const po::unknown_option& e) {
        fail("unknown configuration key " + option_name(e));
    } catch (const po::error& e) {
        fail(e.what());
    }

    std::vector<std::string> config_files;
    for (const auto& option : parsed.options) {
        if (option.string_key == "help")
            return {std::nullopt, 0, help_text()};
        if (option.string_key == "version")
            return {std::nullopt, 0, version_text() + "\n"};
        if (option.string_key == "help-markdown")
            return {std::nullopt, 0, markdown_reference()};
        if (option.string_key == kPositional) {
            const std::string value = value_of(option);
            const std::string v = lower(value);
            // Go-style flags: a boolean takes its value only with '=' (--key=false).
            const bool looks_boolean = v == "true" || v == "false";
            fail("unexpected argument " + value +
                 (looks_boolean ? " (boolean options take --key=true or --key=false)" : ""));
        }
        if (option.string_key == "config")
            config_files.push_back(value_of(option));
    }

    Config config;
    YamlState yaml;
    for (const auto& path : config_files) {
        errno = 0;
        if (is_yaml(path)) {
            apply_yaml(config, path, yaml);
        } else {
            apply_ini(config, path);
        }
    }
    for (const auto& option : parsed.options) {
        if (option.string_key == "config")
            continue;
        apply(config, option.string_key, value_of(option));
    }
    finish(config, yaml);
    ParseResult result;
    result.config = std::move(config);
    return result;
}

std::string markdown_cell(std::string text) {
    std::string out;
    for (const char ch : text) {
        if (ch == '|') {
            out += "\\|";
        } else {
            out += ch;
        }
    }
    return out;
}

std::string section_of(const std::string& name) {
    const auto dot = name.find('.');
    return dot == std::string::npos ? std::string() : name.substr(0, dot);
}

}  // namespace

ParseResult parse(int argc, const char* const* argv) {
    try {
        return parse_or_throw(argc, argv);
    } catch (const ConfigError& e) {
        return {std::nullopt, 2, e.what()};
    } catch (const std::exception& e) {
        return {std::nullopt, 2, std::string("nkhost: ") + e.what()};
    }
}

std::string version_text() {
    return std::string("nkhost ") + NK_VERSION;
}

std::string help_text() {
    std::ostringstream out;
    out << "Usage: nkhost [options]          run the server\n"
           "       nkhost check [options]    load and initialise every plugin under "
           "runtime.path, report, exit non-zero on any problem (nkhost check --help)\n"
           "\n"
           "Options are read from --config files (in order), then from the command line; a "
           "later value wins.\n"
           "\n"
           "  --config FILE\n"
           "      Read options from FILE (repeatable): INI ([section] then key = value) or, "
           "for .yml/.yaml, a Nakama YAML file.\n"
           "  --help, -h\n"
           "      Print this help and exit.\n"
           "  --version\n"
           "      Print the version and exit.\n"
           "  --help-markdown\n"
           "      Print the configuration reference (docs/configuration.md) and exit.\n";
    std::string section = "-";
    for (const auto& key : keys()) {
        const std::string s = section_of(key.name);
        if (s != section) {
            section = s;
            out << "\n" << (s.empty() ? std::string("General") : s + ".*") << ":\n";
        }
        out << "  --" << key.name << " <" << key.type << ">\n"
            << "      " << key.description << " Default: ";
        const std::string def = default_of(key);
        out << (def.empty() ? std::string("\"\"") : def) << "\n";
    }
    return out.str();
}

std::string markdown_reference() {
    std::ostringstream out;
    out << "# nkhost configuration\n"
           "\n"
           "<!-- Generated from the key table in host/config/config.cpp by `nkhost "
           "--help-markdown`; do not edit by hand. tests/config checks that it is current. -->\n"
           "\n"
           "Options come from these sources; a later source overrides an earlier one, key by "
           "key:\n"
           "\n"
           "1. files given with `--config FILE`, in the order given (repeatable);\n"
           "2. command-line flags: `--key value` or `--key=value` (a boolean flag alone, "
           "`--key`, means true).\n"
           "\n"
           "Config files are INI unless the name ends in `.yml` or `.yaml`. In INI files a "
           "`[section]` prefixes the keys below it, so\n"
           "\n"
           "```ini\n"
           "name = node1\n"
           "\n"
           "[runtime]\n"
           "event_queue_size = 65536\n"
           "env = region=eu\n"
           "```\n"
           "\n"
           "equals `--name node1 --runtime.event_queue_size 65536 --runtime.env region=eu`. "
           "`#` starts a comment anywhere on a line, so INI values cannot contain `#`.\n"
           "\n"
           "A `.yml`/`.yaml` file is read as a Nakama configuration file: nested maps become "
           "dotted keys and `runtime.env` is a list of `KEY=VALUE` strings. Nakama keys that "
           "nkhost does not support (for example `console.*`) are ignored with one startup "
           "warning that lists them. Of a `database.address` list the first entry is used, as in "
           "Nakama: a file path selects SQLite, a server address PostgreSQL. Nakama's own "
           "default, `root@localhost:26257`, is CockroachDB, which speaks PostgreSQL's protocol: "
           "nkhost would connect to it as PostgreSQL, but only PostgreSQL is tested.\n"
           "\n"
           "`runtime.env` is repeatable; entries merge per KEY across all sources, the later "
           "source winning. Any other key given twice keeps the last value.\n"
           "\n"
           "An unknown key, a value that does not fit its key, or an unreadable config file "
           "stops nkhost with exit status 2 and one line naming the key. nkhost also checks "
           "that `name` has 1-16 characters, that the two session keys differ, that "
           "`socket.ping_period_ms` is less than `socket.pong_wait_ms` and that "
           "`socket.ssl_certificate` and `socket.ssl_private_key` are set together. It warns "
           "at startup while `socket.server_key`, `runtime.http_key`, "
           "`session.encryption_key` or `session.refresh_encryption_key` keep their "
           "defaults.\n";
    std::string section = "-";
    for (const auto& key : keys()) {
        const std::string s = section_of(key.name);
        if (s != section) {
            section = s;
            out << "\n## " << (s.empty() ? std::string("General") : "`" + s + ".*`") << "\n\n"
                << "| Key | Type | Default | Description |\n"
                << "|-----|------|---------|-------------|\n";
        }
        const std::string def = default_of(key);
        out << "| `" << key.name << "` | " << markdown_cell(key.type) << " | "
            << (def.empty() ? std::string("\"\"") : "`" + markdown_cell(def) + "`") << " | "
            << markdown_cell(key.description) << " |\n";
    }
    return out.str();
}

}  // namespace nk::config
