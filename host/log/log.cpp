#include "log/log.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <chrono>
#include <ctime>
#include <stdexcept>
#include <string>

namespace nk::log {
namespace {

// spdlog's log_msg has no room for structured fields, so write() hands them to the formatter
// through this pointer. The default logger is synchronous: its sinks format on the calling
// thread, inside the logger->log() call that write() makes, so the pointer is always the
// caller's own (and null for plain spdlog::info calls).
thread_local const Fields* current_fields = nullptr;

struct FieldsScope {
    explicit FieldsScope(const Fields* fields) : saved(current_fields) { current_fields = fields; }
    ~FieldsScope() { current_fields = saved; }
    FieldsScope(const FieldsScope&) = delete;
    FieldsScope& operator=(const FieldsScope&) = delete;
    const Fields* saved;
};

using Buffer = spdlog::memory_buf_t;

void append(Buffer& out, std::string_view s) {
    out.append(s.data(), s.data() + s.size());
}

std::string_view level_name(spdlog::level::level_enum level) {
    switch (level) {
        case spdlog::level::trace:
            return "trace";
        case spdlog::level::debug:
            return "debug";
        case spdlog::level::info:
            return "info";
        case spdlog::level::warn:
            return "warn";
        case spdlog::level::err:
            return "error";
        case spdlog::level::critical:
            return "fatal";
        default:
            return "off";
    }
}

// 2026-11-27T18:00:00.123Z
void append_timestamp(Buffer& out, spdlog::log_clock::time_point time) {
    using namespace std::chrono;
    const auto since_epoch = time.time_since_epoch();
    const auto secs = floor<seconds>(since_epoch);
    const auto millis = duration_cast<milliseconds>(since_epoch - secs).count();
    const std::time_t t = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    gmtime_r(&t, &tm);
    fmt::format_to(std::back_inserter(out), "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                   tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                   millis);
}

// The backslash escapes both formats write: quote, backslash and the line breaks and tab. Empty
// when `c` has none; each format escapes the remaining control characters its own way.
std::string_view short_escape(unsigned char c) {
    switch (c) {
        case '"':
            return "\\\"";
        case '\\':
            return "\\\\";
        case '\n':
            return "\\n";
        case '\r':
            return "\\r";
        case '\t':
            return "\\t";
        default:
            return {};
    }
}

bool is_control(unsigned char c) {
    return c < 0x20 || c == 0x7F;
}

// Text format's escape for a control byte without a short escape: \x1b.
void append_hex_escape(Buffer& out, unsigned char c) {
    fmt::format_to(std::back_inserter(out), "\\x{:02x}", c);
}

// Length of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
    const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
    const unsigned char c = byte(i);
    std::size_t len;
    std::uint32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, min = 0x10000;
    } else {
        return 0;
    }
    if (i + len > s.size())
        return 0;
    std::uint32_t cp = c & (0x7F >> len);
    for (std::size_t k = 1; k < len; ++k) {
        if ((byte(i + k) & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (byte(i + k) & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

// A JSON string literal. Hand-written rather than a RapidJSON Writer per line: it runs for every
// log line and must also turn invalid UTF-8 (plugin input, client data) into U+FFFD so each line
// stays valid JSON.
void append_json_string(Buffer& out, std::string_view s) {
    static constexpr char hex[] = "0123456789abcdef";
    out.push_back('"');
    for (std::size_t i = 0; i < s.size();) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c < 0x80) {
            if (const auto escape = short_escape(c); !escape.empty()) {
                append(out, escape);
            } else if (c == '\b') {
                append(out, "\\b");
            } else if (c == '\f') {
                append(out, "\\f");
            } else if (is_control(c)) {
                append(out, "\\u00");
                out.push_back(hex[c >> 4]);
                out.push_back(hex[c & 0xF]);
            } else {
                out.push_back(static_cast<char>(c));
            }
            ++i;
            continue;
        }
        const std::size_t len = utf8_sequence_length(s, i);
        if (len == 0) {
            append(out, "\\ufffd");
            ++i;
        } else {
            append(out, s.substr(i, len));
            i += len;
        }
    }
    out.push_back('"');
}

// logfmt-style value: bare when it is a plain token, otherwise quoted with escapes.
void append_text_value(Buffer& out, std::string_view s) {
    bool needs_quotes = s.empty();
    for (const char ch : s) {
        const unsigned char c = static_cast<unsigned char>(ch);
        if (c == ' ' || is_control(c) || c == '"' || c == '=' || c == '\\') {
            needs_quotes = true;
            break;
        }
    }
    if (!needs_quotes) {
        append(out, s);
        return;
    }
    out.push_back('"');
    for (const char ch : s) {
        const unsigned char c = static_cast<unsigned char>(ch);
        if (const auto escape = short_escape(c); !escape.empty()) {
            append(out, escape);
        } else if (is_control(c)) {
            append_hex_escape(out, c);
        } else {
            out.push_back(ch);
        }
    }
    out.push_back('"');
}

// A key in text mode: keys come from code, but plugins choose them too, so keep the line
// parseable by replacing characters that would break `key=value`.
void append_text_key(Buffer& out, std::string_view s) {
    if (s.empty()) {
        append(out, "_");
        return;
    }
    for (const char ch : s) {
        const unsigned char c = static_cast<unsigned char>(ch);
        out.push_back(c == ' ' || is_control(c) || c == '"' || c == '=' ? '_' : ch);
    }
}

// How a format writes the structured fields: each one as <separator><key><assign><value>.
struct FieldSyntax {
    char separator;
    void (*key)(Buffer&, std::string_view);
    char assign;
    void (*value)(Buffer&, std::string_view);
};
constexpr FieldSyntax kTextFields{' ', append_text_key, '=', append_text_value};
constexpr FieldSyntax kJsonFields{',', append_json_string, ':', append_json_string};

// The fields write() passed for the line being formatted (none for plain spdlog calls).
void append_fields(Buffer& out, const FieldSyntax& syntax) {
    if (current_fields == nullptr)
        return;
    for (const auto& [key, value] : *current_fields) {
        out.push_back(syntax.separator);
        syntax.key(out, key);
        out.push_back(syntax.assign);
        syntax.value(out, value);
    }
}

std::string_view payload(const spdlog::details::log_msg& msg) {
    return {msg.payload.data(), msg.payload.size()};
}

class TextFormatter final : public spdlog::formatter {
  public:
    void format(const spdlog::details::log_msg& msg, Buffer& out) override {
        append_timestamp(out, msg.time);
        out.push_back(' ');
        append(out, level_name(msg.level));
        out.push_back(' ');
        // The message is free text for humans, but one entry must stay one line, and client data
        // in it must not reach a terminal as escape sequences: control bytes are written as
        // \n, \r, \t or \xNN, like in field values.
        for (const char ch : payload(msg)) {
            const unsigned char c = static_cast<unsigned char>(ch);
            if (!is_control(c)) {
                out.push_back(ch);
            } else if (const auto escape = short_escape(c); !escape.empty()) {
                append(out, escape);
            } else {
                append_hex_escape(out, c);
            }
        }
        append_fields(out, kTextFields);
        out.push_back('\n');
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<TextFormatter>();
    }
};

class JsonFormatter final : public spdlog::formatter {
  public:
    void format(const spdlog::details::log_msg& msg, Buffer& out) override {
        append(out, "{\"level\":\"");
        append(out, level_name(msg.level));
        append(out, "\",\"ts\":\"");
        append_timestamp(out, msg.time);
        append(out, "\",\"msg\":");
        append_json_string(out, payload(msg));
        append_fields(out, kJsonFields);
        append(out, "}\n");
    }
    std::unique_ptr<spdlog::formatter> clone() const override {
        return std::make_unique<JsonFormatter>();
    }
};

void install(const Options& options, spdlog::sink_ptr console) {
    const auto level = parse_level(options.level);
    if (!level) {
        throw std::invalid_argument(
            "invalid value for logger.level: must be one of debug, info, "
            "warn, error (got " +
            options.level + ")");
    }
    if (options.format != "text" && options.format != "json") {
        throw std::invalid_argument(
            "invalid value for logger.format: must be one of text, json "
            "(got " +
            options.format + ")");
    }
    std::vector<spdlog::sink_ptr> sinks{std::move(console)};
    if (!options.file.empty()) {
        try {
            sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(options.file));
        } catch (const spdlog::spdlog_ex& e) {
            throw std::runtime_error("cannot open logger.file " + options.file + ": " + e.what());
        }
    }
    auto logger = std::make_shared<spdlog::logger>("", sinks.begin(), sinks.end());
    logger->set_formatter(make_formatter(options.format));
    logger->set_level(*level);
    // Every line reaches its file at once (stdout is flushed per line by spdlog anyway), so a
    // crash loses nothing and tools tailing the file see lines as they happen.
    logger->flush_on(spdlog::level::trace);
    spdlog::set_default_logger(std::move(logger));
}

}  // namespace

std::optional<spdlog::level::level_enum> parse_level(std::string_view name) {
    if (name == "debug")
        return spdlog::level::debug;
    if (name == "info")
        return spdlog::level::info;
    if (name == "warn")
        return spdlog::level::warn;
    if (name == "error")
        return spdlog::level::err;
    if (name == "trace")
        return spdlog::level::trace;
    if (name == "fatal")
        return spdlog::level::critical;
    return std::nullopt;
}

std::unique_ptr<spdlog::formatter> make_formatter(std::string_view format) {
    if (format == "json")
        return std::make_unique<JsonFormatter>();
    return std::make_unique<TextFormatter>();
}

void init(const Options& options) {
    install(options, std::make_shared<spdlog::sinks::stdout_sink_mt>());
}

void init(const Options& options, std::ostream& out) {
    install(options, std::make_shared<spdlog::sinks::ostream_sink_mt>(out));
}

void write(spdlog::level::level_enum level, std::string_view msg, const Fields& fields) {
    const auto logger = spdlog::default_logger();
    if (!logger->should_log(level))
        return;
    FieldsScope scope(&fields);
    logger->log(level, spdlog::string_view_t(msg.data(), msg.size()));
}

void flush() {
    spdlog::default_logger()->flush();
}

}  // namespace nk::log
