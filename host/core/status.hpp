// Status: the one error vocabulary of nkhost.
//
// A Status is a gRPC code plus a human message, mapped once to an HTTP status
// (Nakama's table) and to the JSON error body {"code":N,"message":"..."}.
// Cheap to move; an OK status holds no message.
#pragma once

#include <string>
#include <string_view>

namespace nk {

// gRPC status codes (the numbers Nakama puts in its JSON error bodies).
enum class Code : int {
    ok = 0,
    cancelled = 1,
    unknown = 2,
    invalid_argument = 3,
    deadline_exceeded = 4,
    not_found = 5,
    already_exists = 6,
    permission_denied = 7,
    resource_exhausted = 8,
    failed_precondition = 9,
    aborted = 10,
    out_of_range = 11,
    unimplemented = 12,
    internal = 13,
    unavailable = 14,
    data_loss = 15,
    unauthenticated = 16,
};

class Status {
public:
    Status() = default;
    Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

    static Status ok() { return {}; }
    static Status invalid_argument(std::string m) { return {Code::invalid_argument, std::move(m)}; }
    static Status not_found(std::string m) { return {Code::not_found, std::move(m)}; }
    static Status already_exists(std::string m) { return {Code::already_exists, std::move(m)}; }
    static Status permission_denied(std::string m) { return {Code::permission_denied, std::move(m)}; }
    static Status unimplemented(std::string m) { return {Code::unimplemented, std::move(m)}; }
    static Status internal(std::string m) { return {Code::internal, std::move(m)}; }
    static Status unavailable(std::string m) { return {Code::unavailable, std::move(m)}; }
    static Status unauthenticated(std::string m) { return {Code::unauthenticated, std::move(m)}; }

    bool is_ok() const { return code_ == Code::ok; }
    explicit operator bool() const { return is_ok(); }
    Code code() const { return code_; }
    int code_number() const { return static_cast<int>(code_); }
    const std::string& message() const { return message_; }

    // HTTP status for this code (Nakama / grpc-gateway table).
    int http_status() const { return http_status_for(code_); }
    // {"code":N,"message":"..."} with the message JSON-escaped.
    std::string to_json() const;

    static int http_status_for(Code code);

private:
    Code code_ = Code::ok;
    std::string message_;
};

// Appends `s` to `out` as a JSON string literal (with quotes), escaping as RFC 8259 requires.
void append_json_string(std::string& out, std::string_view s);

}  // namespace nk
