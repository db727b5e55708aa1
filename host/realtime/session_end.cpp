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
    }
    return "";
}

}  // namespace nk::realtime
