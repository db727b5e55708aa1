#include "realtime/ws_session_impl.hpp"

namespace nk::realtime {

template class WsSession<boost::beast::ssl_stream<boost::beast::tcp_stream>>;

}  // namespace nk::realtime
