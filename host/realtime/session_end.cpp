#include "realtime/session_end.hpp"

namespace nk::realtime {

std::string end_reason_text(EndReason reason, std::uint16_t close_code) {
    switch (reason) {
        case EndReason::none:
        case EndReason::normal: return "";
        case EndReason::client_close: return "websocket: close " + std::to_string(close_code);
        case EndReason::connection_lost: return "connection lost";
        case EndReason::pong_timeout: return "pong timeout";
        case EndReason::write_timeout: return "write timeout";
        case EndReason::message_too_big: return "message too big";
        case EndReason::malformed_payload: return "received malformed payload";
        case EndReason::error_processing: return "error processing message";
        case EndReason::queue_full: return "session outgoing queue full";
        case EndReason::kicked: return "server-side session disconnect";
        case EndReason::server_shutdown: return "server shutdown";
        case EndReason::unexpected_message_type: return "received unexpected WebSocket message type";
        case EndReason::protocol_error: return "websocket protocol error";
    }
    return "";
}

const char* end_reason_label(EndReason reason) {
    switch (reason) {
        case EndReason::none: return "none";
        case EndReason::normal: return "normal";
        case EndReason::client_close: return "client_close";
        case EndReason::connection_lost: return "connection_lost";
        case EndReason::pong_timeout: return "pong_timeout";
        case EndReason::write_timeout: return "write_timeout";
        case EndReason::message_too_big: return "message_too_big";
        case EndReason::malformed_payload: return "malformed_payload";
        case EndReason::error_processing: return "error_processing";
        case EndReason::queue_full: return "queue_full";
        case EndReason::kicked: return "kicked";
        case EndReason::server_shutdown: return "server_shutdown";
        case EndReason::unexpected_message_type: return "unexpected_message_type";
        case EndReason::protocol_error: return "protocol_error";
    }
    return "none";
}

}  // namespace nk::realtime
