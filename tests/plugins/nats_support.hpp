// Test support for the jetstream plugin: a real nats-server with JetStream on a free loopback
// port and its own storage directory, a libnats pull consumer that reads a stream, and a
// poster that sends events to a real nkhost process under load. Header-only.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "security_support.hpp"
#include "support/process.hpp"
#include "support/wait.hpp"

extern char** environ;

namespace nk::test {

// /usr/sbin/nats-server (Debian) or /usr/bin/nats-server; empty when neither exists.
inline std::string nats_server_binary() {
    for (const char* p : {"/usr/sbin/nats-server", "/usr/bin/nats-server"})
        if (std::filesystem::exists(p))
            return p;
    return {};
}

// nats-server -js on 127.0.0.1:<port>, storing in <dir>. start() again after stop() reuses the
// port and the storage (a restart).
class NatsServer {
  public:
    // Started unless `start_now` is false (then start() later: a server that comes up late).
    explicit NatsServer(bool start_now = true) : port_(free_port()) {
        if (start_now)
            start();
    }
    ~NatsServer() { stop(); }
    NatsServer(const NatsServer&) = delete;
    NatsServer& operator=(const NatsServer&) = delete;

    std::uint16_t port() const { return port_; }
    std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
    std::string log() const { return read_file(dir_.path() / "nats.log"); }

    void start() {
        const std::string bin = nats_server_binary();
        if (bin.empty())
            throw std::runtime_error("nats-server not installed (scripts/bootstrap)");
        const std::string port = std::to_string(port_);
        const std::string store = (dir_.path() / "store").string();
        const std::string logfile = (dir_.path() / "nats.log").string();
        std::vector<std::string> args = {bin,  "-js", "-a",  "127.0.0.1", "-p",
                                         port, "-sd", store, "-l",        logfile};
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
        const int rc = posix_spawn(&pid_, bin.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            throw std::runtime_error("cannot start nats-server");
        // Ready when a client connects and JetStream answers.
        const bool ready = wait_until(
            [&] {
                natsConnection* nc = nullptr;
                natsOptions* o = nullptr;
                natsOptions_Create(&o);
                natsOptions_SetURL(o, url().c_str());
                natsOptions_SetTimeout(o, 500);
                bool ok = natsConnection_Connect(&nc, o) == NATS_OK;
                if (ok) {
                    jsCtx* js = nullptr;
                    jsAccountInfo* ai = nullptr;
                    ok = natsConnection_JetStream(&js, nc, nullptr) == NATS_OK &&
                         js_GetAccountInfo(&ai, js, nullptr, nullptr) == NATS_OK;
                    jsAccountInfo_Destroy(ai);
                    jsCtx_Destroy(js);
                }
                natsConnection_Destroy(nc);
                natsOptions_Destroy(o);
                if (!ok)
                    std::this_thread::sleep_for(std::chrono::milliseconds(50));
                return ok;
            },
            std::chrono::seconds(30));
        if (!ready)
            throw std::runtime_error("nats-server did not become ready: " + log());
    }

    // SIGTERM (a graceful stop: what it stored is on disk) and wait.
    void stop() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGTERM);
        int status = 0;
        const bool exited = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; },
                                       std::chrono::seconds(30));
        if (!exited) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        pid_ = -1;
    }

  private:
    TempDir dir_;
    std::uint16_t port_;
    pid_t pid_ = -1;
};

// A program run in the background with stdout and stderr in files of its own.
class Program {
  public:
    explicit Program(std::vector<std::string> args) {
        const std::string out = (dir_.path() / "stdout").string();
        const std::string err = (dir_.path() / "stderr").string();
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        const int rc = posix_spawn(&pid_, args[0].c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            throw std::runtime_error("cannot start " + args[0]);
    }
    ~Program() {
        if (pid_ > 0)
            stop(SIGKILL);
    }
    Program(const Program&) = delete;
    Program& operator=(const Program&) = delete;

    std::string out() const { return read_file(dir_.path() / "stdout"); }
    std::string err() const { return read_file(dir_.path() / "stderr"); }
    // Sends `signal` and waits (bounded); the exit status, 128+signal when killed by one, -1
    // when it did not exit in time.
    int stop(int signal) {
        if (pid_ <= 0)
            return -1;
        ::kill(pid_, signal);
        int status = 0;
        const bool exited = wait_until([&] { return ::waitpid(pid_, &status, WNOHANG) == pid_; },
                                       std::chrono::seconds(30));
        if (!exited) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
        }
        pid_ = -1;
        if (!exited)
            return -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }

  private:
    TempDir dir_;
    pid_t pid_ = -1;
};

// One message read from the stream.
struct StreamMessage {
    std::string subject;
    std::string msg_id;  // the Nats-Msg-Id header
    std::string data;
};

// A libnats connection with a JetStream context, for the test's own reads.
class NatsClient {
  public:
    explicit NatsClient(const std::string& url) {
        natsOptions_Create(&opts_);
        natsOptions_SetURL(opts_, url.c_str());
        if (natsConnection_Connect(&nc_, opts_) != NATS_OK ||
            natsConnection_JetStream(&js_, nc_, nullptr) != NATS_OK)
            throw std::runtime_error("cannot connect to " + url);
    }
    ~NatsClient() {
        jsCtx_Destroy(js_);
        natsConnection_Destroy(nc_);
        natsOptions_Destroy(opts_);
    }
    NatsClient(const NatsClient&) = delete;
    NatsClient& operator=(const NatsClient&) = delete;
    jsCtx* js() { return js_; }

    // The number of messages the stream holds (0 when it does not exist).
    std::uint64_t stream_messages(const std::string& stream) {
        jsStreamInfo* si = nullptr;
        if (js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, nullptr) != NATS_OK)
            return 0;
        const std::uint64_t n = si->State.Msgs;
        jsStreamInfo_Destroy(si);
        return n;
    }

    // Every message of the stream, read and acknowledged by a new durable pull consumer.
    std::vector<StreamMessage> read_all(const std::string& stream, const std::string& durable,
                                        const std::string& subject = "nkhost.events.>") {
        std::vector<StreamMessage> out;
        const std::uint64_t expected = stream_messages(stream);
        natsSubscription* sub = nullptr;
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = stream.c_str();
        so.Config.AckPolicy = js_AckExplicit;
        jsErrCode jerr = static_cast<jsErrCode>(0);
        const natsStatus s =
            js_PullSubscribe(&sub, js_, subject.c_str(), durable.c_str(), nullptr, &so, &jerr);
        if (s != NATS_OK)
            throw std::runtime_error("cannot subscribe to " + stream + ": " +
                                     natsStatus_GetText(s) + " " + std::to_string(jerr) + " " +
                                     nats_GetLastError(nullptr));
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
        while (out.size() < expected && std::chrono::steady_clock::now() < deadline) {
            natsMsgList list{};
            if (natsSubscription_Fetch(&list, sub, 500, 1000, nullptr) != NATS_OK)
                continue;
            for (int i = 0; i < list.Count; ++i) {
                natsMsg* m = list.Msgs[i];
                StreamMessage sm;
                sm.subject = natsMsg_GetSubject(m);
                const char* id = nullptr;
                if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) == NATS_OK && id != nullptr)
                    sm.msg_id = id;
                sm.data.assign(natsMsg_GetData(m),
                               static_cast<std::size_t>(natsMsg_GetDataLength(m)));
                natsMsg_Ack(m, nullptr);
                out.push_back(std::move(sm));
            }
            natsMsgList_Destroy(&list);
        }
        natsSubscription_Destroy(sub);
        return out;
    }

  private:
    natsOptions* opts_ = nullptr;
    natsConnection* nc_ = nullptr;
    jsCtx* js_ = nullptr;
};

// A directory "modules-under-test" in `dir` holding jetstream.so (and event_archive.so when
// asked): a server's runtime.path.
inline std::filesystem::path jetstream_modules(const TempDir& dir, bool with_archive = false) {
    namespace fs = std::filesystem;
    const fs::path modules = dir.path() / "modules-under-test";
    fs::create_directories(modules);
    fs::copy_file(build_dir() / "plugins" / "jetstream.so", modules / "jetstream.so",
                  fs::copy_options::overwrite_existing);
    if (with_archive)
        fs::copy_file(build_dir() / "plugins" / "event_archive.so", modules / "event_archive.so",
                      fs::copy_options::overwrite_existing);
    return modules;
}

// POST /v2/event {"name": <name_json>, "properties": {"n": "<n>"}}; the status (0: no answer).
inline int post_event(const Nkhost& server, const std::string& token, const std::string& name_json,
                      int n) {
    auto c = server.client();
    c->set_bearer_token_auth(token);
    auto res =
        c->Post("/v2/event",
                "{\"name\":" + name_json + ",\"properties\":{\"n\":\"" + std::to_string(n) + "\"}}",
                "application/json");
    return res ? res->status : 0;
}

// Posts events named `name_json` with properties {"n": i}, i = 0, 1, ..., from a thread until
// stopped; remembers which were acknowledged (200).
class Poster {
  public:
    Poster(const Nkhost& server, std::string token, std::string name_json = "\"load\"")
        : server_(server), token_(std::move(token)), name_json_(std::move(name_json)) {
        thread_ = std::thread([this] {
            for (int i = 0; !stop_.load(); ++i)
                if (post_event(server_, token_, name_json_, i) == 200) {
                    std::lock_guard lock(mutex_);
                    acked_.insert(i);
                }
        });
    }
    ~Poster() { stop(); }
    Poster(const Poster&) = delete;
    Poster& operator=(const Poster&) = delete;
    void stop() {
        stop_.store(true);
        if (thread_.joinable())
            thread_.join();
    }
    std::size_t acked() {
        std::lock_guard lock(mutex_);
        return acked_.size();
    }
    std::set<int> acked_set() {
        std::lock_guard lock(mutex_);
        return acked_;
    }

  private:
    const Nkhost& server_;
    std::string token_;
    std::string name_json_;
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::set<int> acked_;
    std::thread thread_;
};

}  // namespace nk::test
