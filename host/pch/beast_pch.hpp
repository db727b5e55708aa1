// Precompiled header: the heavy Boost.Asio/Beast headers most network code includes.
#pragma once
#include <utility>  // Boost 1.74 asio/awaitable.hpp uses std::exchange without including it (C++20)
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
