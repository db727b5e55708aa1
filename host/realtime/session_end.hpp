// Why a realtime session ended, and the bookkeeping that makes its
// session_end fire exactly once.
//
// A session can be ended from several places at once (the peer closes while
// the server times it out, a shutdown races a kick, a write fails during a
// close). SessionEnding records the FIRST cause (later ones are ignored) and
// hands out the right to emit session_end to exactly one caller. Lock-free and
// thread-safe: the reason is packed with its close code in one atomic word.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace nk::realtime {

enum class EndReason : std::uint8_t {
    none = 0,           // not ending
    normal,             // client close 1000/1001/1005 -> ""
    client_close,       // client close with another code -> "websocket: close <code>"
    connection_lost,    // TCP dropped without a close frame
    pong_timeout,       // no traffic within pong_wait_ms
    write_timeout,      // a write took longer than write_wait_ms
    message_too_big,    // inbound message over max_message_size_bytes (close 1009)
    malformed_payload,  // bad JSON, bad envelope or invalid UTF-8 text (close 1007)
    error_processing,   // an envelope the pipeline refuses (e.g. empty)
    queue_full,         // outgoing queue over outgoing_queue_size
    kicked,             // single_socket or a server-side disconnect
    server_shutdown,    // Realtime::shutdown (close 1001)
    unexpected_message_type,  // a binary frame on a format=json socket
    protocol_error,     // a frame RFC 6455 forbids: unmasked, reserved bits, bad opcode, ... (close 1002)
};

// The number of EndReason values (none included).
inline constexpr std::size_t kEndReasonCount = static_cast<std::size_t>(EndReason::protocol_error) + 1;

// The session_end "reason" property for a cause (Nakama's texts).
std::string end_reason_text(EndReason reason, std::uint16_t close_code = 0);
// A cause's short name, the `reason` label of the socket_ws_closed metric ("pong_timeout").
const char* end_reason_label(EndReason reason);

class SessionEnding {
public:
    // Records `reason` if no cause was recorded yet. Returns true for the first cause.
    bool record(EndReason reason, std::uint16_t close_code = 0) {
        std::uint32_t expected = 0;
        return state_.compare_exchange_strong(expected, pack(reason, close_code),
                                              std::memory_order_acq_rel);
    }
    bool ending() const { return reason() != EndReason::none; }
    EndReason reason() const {
        return static_cast<EndReason>(state_.load(std::memory_order_acquire) & 0xffu);
    }
    std::uint16_t close_code() const {
        return static_cast<std::uint16_t>(state_.load(std::memory_order_acquire) >> 16);
    }
    std::string reason_text() const {
        auto s = state_.load(std::memory_order_acquire);
        return end_reason_text(static_cast<EndReason>(s & 0xffu),
                               static_cast<std::uint16_t>(s >> 16));
    }
    // True for exactly one caller: the one that emits session_end.
    bool claim_end() { return !ended_.exchange(true, std::memory_order_acq_rel); }
    bool ended() const { return ended_.load(std::memory_order_acquire); }

private:
    static std::uint32_t pack(EndReason r, std::uint16_t code) {
        return static_cast<std::uint32_t>(r) | (static_cast<std::uint32_t>(code) << 16);
    }
    std::atomic<std::uint32_t> state_{0};
    std::atomic<bool> ended_{false};
};

}  // namespace nk::realtime
