#include "events/json.hpp"

#include <fmt/format.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>

namespace nk::events {

namespace {

// SAX handler: no DOM is built; strings are copied once, straight into the Event.
class EventReader : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, EventReader> {
  public:
    EventReader(const Options& limits, Event& out) : limits_(limits), out_(out) {}

    const std::string& error() const { return error_; }

    bool Null() {
        if (skip_depth_ > 0)
            return end_skipped_scalar();
        if (!started_)
            return wrong_type("null");
        if (in_properties_)
            return fail("invalid value for string field properties: null");
        field_ = Field::none;  // null leaves the field unset
        return true;
    }
    bool Bool(bool b) {
        if (skip_depth_ > 0)
            return end_skipped_scalar();
        if (in_properties_)
            return fail("invalid value for string field properties");
        if (field_ == Field::external) {
            out_.external = b;
            field_ = Field::none;
            return true;
        }
        return wrong_type("bool");
    }
    bool RawNumber(const char*, rapidjson::SizeType, bool) {
        if (skip_depth_ > 0)
            return end_skipped_scalar();
        if (in_properties_)
            return fail("invalid value for string field properties");
        return wrong_type("number");
    }
    bool Default() { return wrong_type("number"); }  // numbers arrive as RawNumber

    bool String(const char* s, rapidjson::SizeType len, bool) {
        if (skip_depth_ > 0)
            return end_skipped_scalar();
        if (in_properties_) {
            if (len > limits_.max_value_bytes) {
                return fail(fmt::format("Event property value is too long (max {} bytes).",
                                        limits_.max_value_bytes));
            }
            out_.properties.back().second.assign(s, len);
            return true;
        }
        switch (field_) {
            case Field::name:
                if (len > limits_.max_name_bytes) {
                    return fail(fmt::format("Event name is too long (max {} bytes).",
                                            limits_.max_name_bytes));
                }
                out_.name.assign(s, len);
                break;
            case Field::timestamp: {
                auto ts = parse_rfc3339(std::string_view(s, len));
                if (!ts) {
                    return fail(fmt::format("invalid google.protobuf.Timestamp value \"{}\"",
                                            std::string_view(s, len)));
                }
                out_.timestamp = *ts;
                out_.has_timestamp = true;
                break;
            }
            default:
                return wrong_type("string");
        }
        field_ = Field::none;
        return true;
    }

    bool StartObject() {
        if (skip_depth_ > 0) {
            ++skip_depth_;
            return true;
        }
        if (!started_) {
            started_ = true;
            return true;
        }
        if (in_properties_)
            return fail("invalid value for string field properties");
        if (field_ == Field::properties) {
            in_properties_ = true;
            return true;
        }
        return wrong_type("object");
    }
    bool Key(const char* s, rapidjson::SizeType len, bool) {
        if (skip_depth_ > 0)
            return true;
        const std::string_view key(s, len);
        if (in_properties_) {
            if (out_.properties.size() >= limits_.max_properties) {
                return fail(
                    fmt::format("Event has too many properties (max {}).", limits_.max_properties));
            }
            if (len > limits_.max_key_bytes) {
                return fail(fmt::format("Event property key is too long (max {} bytes).",
                                        limits_.max_key_bytes));
            }
            for (const auto& [k, v] : out_.properties) {
                if (k == key)
                    return fail(fmt::format("duplicate map key \"{}\"", key));
            }
            out_.properties.emplace_back(std::string(key), std::string());
            return true;
        }
        Field f = Field::unknown;
        if (key == "name")
            f = Field::name;
        else if (key == "properties")
            f = Field::properties;
        else if (key == "timestamp")
            f = Field::timestamp;
        else if (key == "external")
            f = Field::external;
        if (f != Field::unknown) {
            const unsigned bit = 1u << static_cast<unsigned>(f);
            if (seen_ & bit)
                return fail(fmt::format("duplicate field \"{}\"", key));
            seen_ |= bit;
            field_ = f;
        } else {
            field_ = Field::none;
            skip_next_ = true;
        }
        return true;
    }
    bool EndObject(rapidjson::SizeType) {
        if (skip_depth_ > 0) {
            --skip_depth_;
            return true;
        }
        if (in_properties_) {
            in_properties_ = false;
            field_ = Field::none;
        }
        return true;
    }
    bool StartArray() {
        if (skip_depth_ > 0) {
            ++skip_depth_;
            return true;
        }
        return wrong_type("array");
    }
    bool EndArray(rapidjson::SizeType) {
        if (skip_depth_ > 0)
            --skip_depth_;
        return true;
    }

    // The value of an unknown member is skipped whatever it is: called before each value.
    bool begin_value_of_unknown() {
        if (!skip_next_)
            return false;
        skip_next_ = false;
        return true;
    }

    bool skip_next_ = false;
    int skip_depth_ = 0;

  private:
    enum class Field : unsigned { none, name, properties, timestamp, external, unknown };

    bool end_skipped_scalar() { return true; }
    bool wrong_type(const char* what) {
        if (!started_)
            return fail(fmt::format("unexpected token {} (the body must be an object)", what));
        return fail(fmt::format("invalid value ({}) for field {}", what, field_name()));
    }
    const char* field_name() const {
        switch (field_) {
            case Field::name:
                return "name";
            case Field::properties:
                return "properties";
            case Field::timestamp:
                return "timestamp";
            case Field::external:
                return "external";
            default:
                return "?";
        }
    }
    bool fail(std::string message) {
        error_ = std::move(message);
        return false;
    }

    const Options& limits_;
    Event& out_;
    std::string error_;
    Field field_ = Field::none;
    unsigned seen_ = 0;
    bool started_ = false;
    bool in_properties_ = false;
};

// Wraps EventReader so that the value following an unknown key is skipped (depth-tracked)
// whatever its type, without duplicating that logic in every callback.
class SkippingReader : public rapidjson::BaseReaderHandler<rapidjson::UTF8<>, SkippingReader> {
  public:
    explicit SkippingReader(EventReader& inner) : r_(inner) {}

    bool Null() { return scalar() || r_.Null(); }
    bool Bool(bool b) { return scalar() || r_.Bool(b); }
    bool RawNumber(const char* s, rapidjson::SizeType n, bool c) {
        return scalar() || r_.RawNumber(s, n, c);
    }
    bool String(const char* s, rapidjson::SizeType n, bool c) {
        return scalar() || r_.String(s, n, c);
    }
    bool StartObject() { return open() || r_.StartObject(); }
    bool Key(const char* s, rapidjson::SizeType n, bool c) { return r_.Key(s, n, c); }
    bool EndObject(rapidjson::SizeType n) { return r_.EndObject(n); }
    bool StartArray() { return open() || r_.StartArray(); }
    bool EndArray(rapidjson::SizeType n) { return r_.EndArray(n); }

  private:
    // An unknown member's scalar value: consumed here.
    bool scalar() { return r_.skip_depth_ == 0 && r_.begin_value_of_unknown(); }
    // An unknown member's object/array value: skipped until its matching end.
    bool open() {
        if (r_.skip_depth_ == 0 && r_.begin_value_of_unknown()) {
            r_.skip_depth_ = 1;
            return true;
        }
        return false;
    }
    EventReader& r_;
};

bool all_space(const std::string& s) {
    for (char c : s) {
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            return false;
    }
    return true;
}

// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
    y -= m <= 2;
    const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
    const auto yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

void civil_from_days(std::int64_t z, std::int64_t& y, unsigned& m, unsigned& d) {
    z += 719468;
    const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const auto doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    y = static_cast<std::int64_t>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    d = doy - (153 * mp + 2) / 5 + 1;
    m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
}

bool digits(std::string_view s, std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size())
        return false;
    int v = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    out = v;
    return true;
}

constexpr std::int64_t min_seconds = -62135596800;  // 0001-01-01T00:00:00Z
constexpr std::int64_t max_seconds = 253402300799;  // 9999-12-31T23:59:59Z

}  // namespace

Status decode_event_json(std::string& body, const Options& limits, const JsonLimits& json,
                         Event& out) {
    if (all_space(body))
        return Status::ok();  // empty body = empty event (EOF is tolerated)
    // The in-situ stream ends at the first NUL: a raw NUL is never valid JSON, so refuse it
    // rather than parse a prefix. Then pad with NULs: UTF-8 validation reads up to three bytes
    // after a sequence's lead byte, so a body ending in a lead byte must not be read past its end.
    if (const auto nul = body.find('\0'); nul != std::string::npos)
        return Status::invalid_argument(
            fmt::format("proto: syntax error (offset {}): Invalid value.", nul));
    body.append(4, '\0');
    EventReader inner(limits, out);
    SkippingReader handler(inner);
    rapidjson::InsituStringStream stream(body.data());
    constexpr unsigned flags = rapidjson::kParseInsituFlag | rapidjson::kParseNumbersAsStringsFlag;
    const json_read::Result result =
        json_read::parse_sax<flags>(stream, handler, json.max_depth);
    if (!result && !result.too_deep && !inner.error().empty())
        return Status::invalid_argument(inner.error());
    return json_status(result, json);
}

std::string encode_event_json(const Event& event) {
    rapidjson::StringBuffer buf;
    rapidjson::Writer<rapidjson::StringBuffer> w(buf);
    w.StartObject();
    if (!event.name.empty()) {
        w.Key("name");
        w.String(event.name.data(), static_cast<rapidjson::SizeType>(event.name.size()));
    }
    if (!event.properties.empty()) {
        w.Key("properties");
        w.StartObject();
        for (const auto& [k, v] : event.properties) {
            w.Key(k.data(), static_cast<rapidjson::SizeType>(k.size()));
            w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
        }
        w.EndObject();
    }
    if (event.has_timestamp) {
        w.Key("timestamp");
        const std::string ts = format_rfc3339(event.timestamp);
        w.String(ts.data(), static_cast<rapidjson::SizeType>(ts.size()));
    }
    if (event.external) {
        w.Key("external");
        w.Bool(true);
    }
    w.EndObject();
    return std::string(buf.GetString(), buf.GetSize());
}

std::optional<Timestamp> parse_rfc3339(std::string_view s) {
    int year, month, day, hour, minute, second;
    if (!digits(s, 0, 4, year) || s.size() < 20 || s[4] != '-' || !digits(s, 5, 2, month) ||
        s[7] != '-' || !digits(s, 8, 2, day) || s[10] != 'T' || !digits(s, 11, 2, hour) ||
        s[13] != ':' || !digits(s, 14, 2, minute) || s[16] != ':' || !digits(s, 17, 2, second)) {
        return std::nullopt;
    }
    std::size_t pos = 19;
    std::int32_t nanos = 0;
    if (s[pos] == '.') {
        ++pos;
        std::size_t n = 0;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
            if (n == 9)
                return std::nullopt;
            nanos = nanos * 10 + (s[pos] - '0');
            ++n;
            ++pos;
        }
        if (n == 0)
            return std::nullopt;
        for (; n < 9; ++n)
            nanos *= 10;
    }
    if (pos >= s.size())
        return std::nullopt;
    int offset = 0;
    if (s[pos] == 'Z') {
        ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
        int oh, om;
        if (!digits(s, pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' ||
            !digits(s, pos + 4, 2, om) || oh > 23 || om > 59) {
            return std::nullopt;
        }
        offset = (oh * 3600 + om * 60) * (s[pos] == '-' ? -1 : 1);
        pos += 6;
    } else {
        return std::nullopt;
    }
    if (pos != s.size())
        return std::nullopt;
    static constexpr int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (year < 1 || month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
        hour > 23 || minute > 59 || second > 59) {
        return std::nullopt;
    }
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (month == 2 && day == 29 && !leap)
        return std::nullopt;
    const std::int64_t secs =
        days_from_civil(year, static_cast<unsigned>(month), static_cast<unsigned>(day)) * 86400 +
        hour * 3600 + minute * 60 + second - offset;
    if (secs < min_seconds || secs > max_seconds)
        return std::nullopt;
    return Timestamp{secs, nanos};
}

std::string format_rfc3339(const Timestamp& ts) {
    std::int64_t days = ts.seconds / 86400;
    std::int64_t rem = ts.seconds % 86400;
    if (rem < 0) {
        rem += 86400;
        --days;
    }
    std::int64_t y;
    unsigned m, d;
    civil_from_days(days, y, m, d);
    std::string out = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}", y, m, d, rem / 3600,
                                  (rem % 3600) / 60, rem % 60);
    if (ts.nanos != 0) {
        if (ts.nanos % 1'000'000 == 0)
            out += fmt::format(".{:03}", ts.nanos / 1'000'000);
        else if (ts.nanos % 1000 == 0)
            out += fmt::format(".{:06}", ts.nanos / 1000);
        else
            out += fmt::format(".{:09}", ts.nanos);
    }
    out.push_back('Z');
    return out;
}

}  // namespace nk::events
