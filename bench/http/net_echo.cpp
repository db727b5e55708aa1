// nk_net-based counterpart of minimal_beast: a Router with POST /v2/event
// answering "{}" inline through the Responder.
//
// usage: bench_http_net_echo <port> <io_threads>
#include <pthread.h>

#include <csignal>
#include <cstdio>
#include <string>

#include "net/server.hpp"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: %s <port> <io_threads>\n", argv[0]);
        return 2;
    }
    nk::net::Options options;
    options.address = "127.0.0.1";
    options.port = static_cast<std::uint16_t>(std::stoi(argv[1]));
    options.io_threads = static_cast<unsigned>(std::stoi(argv[2]));
    nk::net::Router router;
    router.add(nk::net::Method::post, "/v2/event", [](nk::net::Request&&, nk::net::Responder respond) {
        respond(nk::net::Response::empty_object());
    });
    // Block the signals before the io threads start so that they inherit the mask.
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
    nk::net::Server server(options, router, nullptr);
    server.start();
    int sig = 0;
    sigwait(&signals, &sig);
    server.shutdown(std::chrono::milliseconds(1000));
}
