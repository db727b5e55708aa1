// jetstream: publishes every event the server processes (custom events, session_start,
// session_end) to a NATS JetStream stream, one message per event, with the same JSON as
// event_archive's lines (nk_plugins/event_json.hpp) as payload.
//
//   subject  <JETSTREAM_SUBJECT_PREFIX>.<event name, sanitised>   e.g. nkhost.events.level_up
//   header   Nats-Msg-Id: <the event's id>   (JetStream drops a second copy within its
//            duplicate window, so a retried publish is stored once)
//
// Configured by runtime.env (README.md). How it stays out of the way of the event workers:
//  - a handler formats the payload and appends it to a bounded queue under a mutex held for a
//    move; it never talks to NATS. A full queue drops the event and counts it;
//  - one publisher thread of the plugin sends with js_PublishMsgAsync, at most
//    JETSTREAM_MAX_PENDING unacknowledged at a time; acks arrive on libnats' own thread
//    (the ack handler), which only updates the in-flight table;
//  - a publish that is refused (no responders while JetStream restarts, a stream error) goes
//    back to the front of the queue; one unacknowledged for JETSTREAM_ACK_TIMEOUT_MS while
//    connected is taken back from libnats and sent again (same Nats-Msg-Id);
//  - reconnection is libnats' (infinite attempts, a reconnect buffer); while disconnected the
//    thread publishes nothing and events wait in the queue (JETSTREAM_BUFFER events).
// Shutdown (server stop or hot reload) drains for at most JETSTREAM_DRAIN_MS; what is left goes
// to the next generation at a hot reload (state handoff) and is counted as dropped otherwise.
// It destroys only this generation's connection, context and options: never
// nats_Close(), which would tear libnats down for the whole process. libnats itself is pinned
// in memory (RTLD_NODELETE) so that unloading this plugin never unmaps the library its threads
// run in.
#include <dlfcn.h>

#include <nats/nats.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <nk/sdk.hpp>
#include <nk_plugins/event_json.hpp>

namespace {

using Clock = std::chrono::steady_clock;

// ---- configuration ---------------------------------------------------------------------------

struct Config {
    std::vector<std::string> servers{"nats://127.0.0.1:4222"};  // JETSTREAM_URL (comma-separated)
    std::string stream = "NKHOST_EVENTS";                       // JETSTREAM_STREAM
    std::string prefix = "nkhost.events";                       // JETSTREAM_SUBJECT_PREFIX
    jsRetentionPolicy retention = js_LimitsPolicy;              // JETSTREAM_RETENTION
    std::uint64_t replicas = 1;                                 // JETSTREAM_REPLICAS
    std::uint64_t max_pending = 4096;                           // JETSTREAM_MAX_PENDING
    std::uint64_t buffer = 100000;                              // JETSTREAM_BUFFER (events)
    std::uint64_t ack_timeout_ms = 5000;                        // JETSTREAM_ACK_TIMEOUT_MS
    std::uint64_t drain_ms = 3000;                              // JETSTREAM_DRAIN_MS
    std::uint64_t reconnect_buffer_bytes = 8ull * 1024 * 1024;  // JETSTREAM_RECONNECT_BUFFER_BYTES
};

constexpr auto kIdle = std::chrono::milliseconds(100);  // the publisher's longest sleep
constexpr auto kStreamRetry = std::chrono::seconds(1);
constexpr auto kLogInterval = std::chrono::seconds(10);
// After the drain: how long to wait for running ack handlers, then for libnats' closed
// callback. Both are normally immediate; JETSTREAM_DRAIN_MS plus these stay within the default
// runtime.hot_reload_grace_ms (5 s).
constexpr auto kAckHandlersWait = std::chrono::milliseconds(500);
constexpr auto kCloseWait = std::chrono::seconds(1);
constexpr int kMaxRejections = 5;

nk::Error read_positive(const nk::Context& ctx, const char* key, std::uint64_t& out,
                        std::uint64_t max = INT32_MAX) {
    auto it = ctx.env.find(key);
    if (it == ctx.env.end())
        return {};
    const std::string& text = it->second;
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE || v == 0 || v > max)
        return nk::Error::InvalidArgument(std::string(key) + " must be an integer from 1 to " +
                                          std::to_string(max) + ", got \"" + text + "\"");
    out = v;
    return {};
}

// A subject prefix: dot-separated tokens, none empty, no wildcard, no whitespace.
bool valid_prefix(std::string_view p) {
    if (p.empty() || p.front() == '.' || p.back() == '.' || p.find("..") != std::string_view::npos)
        return false;
    return std::none_of(p.begin(), p.end(), [](char c) {
        return c == '*' || c == '>' || static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
    });
}

nk::Error read_config(const nk::Context& ctx, Config& c) {
    auto get = [&](const char* key) -> const std::string* {
        auto it = ctx.env.find(key);
        return it == ctx.env.end() ? nullptr : &it->second;
    };
    if (const std::string* url = get("JETSTREAM_URL")) {
        c.servers.clear();
        std::string_view rest = *url;
        while (!rest.empty()) {
            const auto comma = rest.find(',');
            std::string_view one = rest.substr(0, comma);
            while (!one.empty() && one.front() == ' ')
                one.remove_prefix(1);
            while (!one.empty() && one.back() == ' ')
                one.remove_suffix(1);
            if (!one.empty())
                c.servers.emplace_back(one);
            rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
        }
        if (c.servers.empty())
            return nk::Error::InvalidArgument("JETSTREAM_URL is empty");
    }
    if (const std::string* s = get("JETSTREAM_STREAM")) {
        if (s->empty() || s->find_first_of(".*> \t\r\n/\\") != std::string::npos)
            return nk::Error::InvalidArgument(
                "JETSTREAM_STREAM must be a stream name (no '.', '*', '>', '/', '\\' or "
                "whitespace), got \"" +
                *s + "\"");
        c.stream = *s;
    }
    if (const std::string* p = get("JETSTREAM_SUBJECT_PREFIX")) {
        if (!valid_prefix(*p))
            return nk::Error::InvalidArgument(
                "JETSTREAM_SUBJECT_PREFIX must be dot-separated subject tokens without "
                "wildcards or whitespace, got \"" +
                *p + "\"");
        c.prefix = *p;
    }
    if (const std::string* r = get("JETSTREAM_RETENTION")) {
        if (*r == "limits")
            c.retention = js_LimitsPolicy;
        else if (*r == "workqueue")
            c.retention = js_WorkQueuePolicy;
        else if (*r == "interest")
            c.retention = js_InterestPolicy;
        else
            return nk::Error::InvalidArgument(
                "JETSTREAM_RETENTION must be limits, workqueue or interest, got \"" + *r + "\"");
    }
    if (auto err = read_positive(ctx, "JETSTREAM_REPLICAS", c.replicas, 5))
        return err;
    if (auto err = read_positive(ctx, "JETSTREAM_MAX_PENDING", c.max_pending, 1u << 20))
        return err;
    if (auto err = read_positive(ctx, "JETSTREAM_BUFFER", c.buffer, 100000000))
        return err;
    if (auto err = read_positive(ctx, "JETSTREAM_ACK_TIMEOUT_MS", c.ack_timeout_ms))
        return err;
    if (auto err = read_positive(ctx, "JETSTREAM_DRAIN_MS", c.drain_ms))
        return err;
    if (auto err = read_positive(ctx, "JETSTREAM_RECONNECT_BUFFER_BYTES", c.reconnect_buffer_bytes))
        return err;
    return {};
}

// ---- subjects --------------------------------------------------------------------------------

// An event name as one subject token: '.', '*', '>', whitespace and control characters become
// '_' (a '.' would split the token, '*' and '>' are wildcards); an empty name is "_"; a name
// longer than kMaxTokenBytes is cut there (at a UTF-8 character boundary): NATS refuses a
// protocol line over 4 KiB, and one too long would close the connection.
constexpr std::size_t kMaxTokenBytes = 256;
std::string subject_token(std::string_view name) {
    if (name.size() > kMaxTokenBytes) {
        std::size_t cut = kMaxTokenBytes;
        while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80)
            --cut;  // name[cut] continues a character: cut before it
        name = name.substr(0, cut);
    }
    std::string out(name);
    for (char& c : out) {
        const auto u = static_cast<unsigned char>(c);
        if (c == '.' || c == '*' || c == '>' || u <= 0x20 || u == 0x7f)
            c = '_';
    }
    if (out.empty())
        out = "_";
    return out;
}

// ---- the publisher ---------------------------------------------------------------------------

struct Item {
    std::string id;
    std::string subject;
    std::string payload;
};

std::string status_text(natsStatus s) {
    std::string text = natsStatus_GetText(s);
    const char* last = nats_GetLastError(nullptr);
    if (last != nullptr && *last != '\0' && text != last)
        text += std::string(" (") + last + ")";
    return text;
}

class Publisher {
  public:
    Publisher(Config config, nk::Logger logger, nk::Module nk)
        : config_(std::move(config)), logger_(logger), nk_(nk) {}
    ~Publisher() {
        if (thread_.joinable())
            stop(false);
        destroy_connection();  // a module refused in InitModule: only the connection to undo
    }
    Publisher(const Publisher&) = delete;
    Publisher& operator=(const Publisher&) = delete;

    // Creates the options, the connection (a server that is down is retried in the background:
    // RetryOnFailedConnect) and the JetStream context, and creates the stream if the server is
    // reachable. An error refuses the module.
    nk::Error connect() {
        std::vector<const char*> urls;
        for (const auto& s : config_.servers)
            urls.push_back(s.c_str());
        natsStatus s = natsOptions_Create(&opts_);
        if (s == NATS_OK)
            s = natsOptions_SetServers(opts_, urls.data(), static_cast<int>(urls.size()));
        if (s == NATS_OK)
            s = natsOptions_SetName(opts_, "nkhost-jetstream");
        if (s == NATS_OK)
            s = natsOptions_SetAllowReconnect(opts_, true);
        if (s == NATS_OK)
            s = natsOptions_SetMaxReconnect(opts_, -1);  // for ever
        if (s == NATS_OK)
            s = natsOptions_SetReconnectWait(opts_, 250);
        if (s == NATS_OK)
            s = natsOptions_SetReconnectBufSize(opts_,
                                                static_cast<int>(config_.reconnect_buffer_bytes));
        if (s == NATS_OK)
            s = natsOptions_SetTimeout(opts_, 2000);
        if (s == NATS_OK)
            // With a connected callback the first connect is asynchronous: InitModule never
            // waits for a server that is down (without one, libnats would block here until the
            // server comes up).
            s = natsOptions_SetRetryOnFailedConnect(opts_, true, &Publisher::on_connected, this);
        if (s == NATS_OK)
            s = natsOptions_SetDisconnectedCB(opts_, &Publisher::on_disconnected, this);
        if (s == NATS_OK)
            s = natsOptions_SetReconnectedCB(opts_, &Publisher::on_reconnected, this);
        if (s == NATS_OK)
            s = natsOptions_SetClosedCB(opts_, &Publisher::on_closed, this);
        if (s != NATS_OK)
            return nk::Error::Internal("jetstream: NATS options: " + status_text(s));

        s = natsConnection_Connect(&conn_, opts_);
        if (s == NATS_NOT_YET_CONNECTED) {
            logger_.Warn(
                "jetstream: NATS at %s not reachable yet; retrying in the background, "
                "events are buffered meanwhile",
                config_.servers.front().c_str());
        } else if (s != NATS_OK) {
            return nk::Error::Internal("jetstream: cannot connect to " + config_.servers.front() +
                                       ": " + status_text(s));
        }

        jsOptions jo;
        jsOptions_Init(&jo);
        jo.Wait = static_cast<int64_t>(config_.ack_timeout_ms);
        // Our own bound keeps libnats below this; it never stalls the publisher.
        jo.PublishAsync.MaxPending = static_cast<int64_t>(config_.max_pending) + 1;
        jo.PublishAsync.AckHandler = &Publisher::on_ack;
        jo.PublishAsync.AckHandlerClosure = this;
        s = natsConnection_JetStream(&js_, conn_, &jo);
        if (s != NATS_OK)
            return nk::Error::Internal("jetstream: JetStream context: " + status_text(s));

        if (natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED) {
            std::string error;
            if (!ensure_stream(error))
                return nk::Error::Internal("jetstream: " + error);
        }
        return {};
    }

    void start() {
        thread_ = std::thread([this] { run(); });
    }

    // Called by the event handlers, on any worker. Never waits for NATS.
    void add(const nk::Context& ctx, const nk::Event& evt) {
        Item item{evt.id, config_.prefix + "." + subject_token(evt.name),
                  nk_plugins::event_json::format(ctx, evt)};
        {
            std::lock_guard lock(mutex_);
            if (stopping_ || queue_.size() >= config_.buffer) {
                dropped_full_.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            queue_.push_back(std::move(item));
        }
        wake_.notify_one();
    }

    // Drains (bounded by JETSTREAM_DRAIN_MS), counts what is left as dropped, joins the thread.
    // Idempotent.
    // Drains (bounded by JETSTREAM_DRAIN_MS), joins the thread and destroys the connection.
    // What is left (buffered, or sent without an ack) is kept for save_handoff() when
    // `hand_over` (a hot reload replacing this generation), else counted as dropped.
    // Idempotent.
    void stop(bool hand_over) {
        {
            std::lock_guard lock(mutex_);
            if (stopping_)
                return;
            stopping_ = true;
            ++nudges_;
            drain_deadline_ = Clock::now() + std::chrono::milliseconds(config_.drain_ms);
        }
        wake_.notify_one();
        if (thread_.joinable())
            thread_.join();
        std::vector<Item> left = take_back_pending();  // sent first: older than the queue
        {
            std::lock_guard lock(mutex_);
            for (auto& item : queue_)
                left.push_back(std::move(item));
            queue_.clear();
            inflight_.clear();
            rejections_.clear();
        }
        report();
        if (hand_over) {
            if (!left.empty())
                logger_.Info("jetstream: %llu unpublished events go to the next generation",
                             static_cast<unsigned long long>(left.size()));
            std::lock_guard lock(mutex_);
            leftover_ = std::move(left);
        } else if (!left.empty()) {
            nk_.MetricsCounterAdd("jetstream_events_dropped", {{"reason", "shutdown"}},
                                  static_cast<std::int64_t>(left.size()));
            logger_.Warn(
                "jetstream: %llu events not acknowledged within JETSTREAM_DRAIN_MS "
                "(%llu ms) at shutdown, counted as dropped",
                static_cast<unsigned long long>(left.size()),
                static_cast<unsigned long long>(config_.drain_ms));
        }
        destroy_connection();
    }

    // The events stop(true) kept, as a version-1 blob: per event, id, subject and payload, each
    // a 4-byte little-endian length and its bytes.
    std::string save_handoff() {
        std::lock_guard lock(mutex_);
        std::string blob;
        auto put = [&blob](const std::string& field) {
            const auto n = static_cast<std::uint32_t>(field.size());
            for (int shift = 0; shift < 32; shift += 8)
                blob.push_back(static_cast<char>((n >> shift) & 0xFF));
            blob += field;
        };
        for (const Item& item : leftover_) {
            put(item.id);
            put(item.subject);
            put(item.payload);
        }
        leftover_.clear();
        return blob;
    }

    // Takes a version-1 blob from the generation this one replaced: its events go to the front
    // of the queue (they are older), within JETSTREAM_BUFFER (the rest is dropped, counted).
    nk::Error load_handoff(const std::string& blob) {
        std::vector<Item> items;
        std::size_t at = 0;
        auto get = [&](std::string& out) {
            if (blob.size() - at < 4)
                return false;
            std::uint32_t n = 0;
            for (int i = 0; i < 4; ++i)
                n |= static_cast<std::uint32_t>(static_cast<unsigned char>(blob[at + i]))
                     << (8 * i);
            at += 4;
            if (blob.size() - at < n)
                return false;
            out.assign(blob, at, n);
            at += n;
            return true;
        };
        while (at < blob.size()) {
            Item item;
            if (!get(item.id) || !get(item.subject) || !get(item.payload))
                return nk::Error::InvalidArgument("jetstream: truncated handoff");
            items.push_back(std::move(item));
        }
        std::size_t dropped = 0;
        {
            std::lock_guard lock(mutex_);
            for (auto it = items.rbegin(); it != items.rend(); ++it) {
                if (queue_.size() >= config_.buffer) {
                    ++dropped;
                    continue;
                }
                queue_.push_front(std::move(*it));
            }
        }
        dropped_full_.fetch_add(dropped, std::memory_order_relaxed);
        wake_.notify_one();
        if (!items.empty())
            logger_.Info("jetstream: %llu unpublished events taken from the previous generation",
                         static_cast<unsigned long long>(items.size() - dropped));
        return {};
    }

  private:
    // Closes and destroys this generation's connection, JetStream context and options (never
    // nats_Close()). Waits, bounded, for libnats' closed callback so none of our callbacks runs
    // after this returns.
    // Takes back every publish libnats still tracks (sent, no ack yet), then waits until ack
    // handlers already running returned (libnats counts a publish as pending until its handler
    // returned): afterwards libnats calls no ack handler of ours. Publisher thread stopped.
    std::vector<Item> take_back_pending() {
        std::vector<Item> items;
        if (js_ == nullptr)
            return items;
        natsMsgList pending{};
        // (libnats 3.4 crashes on a context that never published asynchronously.)
        if (published_any_ && js_PublishAsyncGetPendingList(&pending, js_) == NATS_OK) {
            for (int i = 0; i < pending.Count; ++i)
                items.push_back(to_item(pending.Msgs[i]));
            natsMsgList_Destroy(&pending);
        }
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = kAckHandlersWait.count();
        js_PublishAsyncComplete(js_, &po);
        return items;
    }

    void destroy_connection() {
        take_back_pending();  // none left after stop(); needed when InitModule failed
        if (conn_ != nullptr) {
            natsConnection_Close(conn_);
            std::unique_lock lock(mutex_);
            wake_.wait_for(lock, kCloseWait, [this] { return closed_; });
        }
        callbacks_open_.store(false);
        while (callbacks_running_.load() > 0)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        if (js_ != nullptr)
            jsCtx_Destroy(js_);
        js_ = nullptr;
        if (conn_ != nullptr)
            natsConnection_Destroy(conn_);
        conn_ = nullptr;
        if (opts_ != nullptr)
            natsOptions_Destroy(opts_);
        opts_ = nullptr;
    }

    // Creates the stream when it does not exist; an existing one is used as it is.
    bool ensure_stream(std::string& error) {
        jsErrCode jerr = static_cast<jsErrCode>(0);
        jsStreamInfo* si = nullptr;
        natsStatus s = js_GetStreamInfo(&si, js_, config_.stream.c_str(), nullptr, &jerr);
        if (s == NATS_OK) {
            jsStreamInfo_Destroy(si);
            stream_ready_ = true;
            return true;
        }
        if (s != NATS_NOT_FOUND) {
            error = "stream " + config_.stream + ": " + status_text(s);
            return false;
        }
        const std::string subjects = config_.prefix + ".>";
        const char* subject_list[] = {subjects.c_str()};
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        cfg.Name = config_.stream.c_str();
        cfg.Subjects = subject_list;
        cfg.SubjectsLen = 1;
        cfg.Retention = config_.retention;
        cfg.Replicas = static_cast<int64_t>(config_.replicas);
        cfg.Storage = js_FileStorage;
        s = js_AddStream(&si, js_, &cfg, nullptr, &jerr);
        if (s == NATS_OK || jerr == JSStreamNameExistErr) {  // or another node created it
            jsStreamInfo_Destroy(si);
            stream_ready_ = true;
            logger_.Info("jetstream: stream %s on subjects %s ready", config_.stream.c_str(),
                         subjects.c_str());
            return true;
        }
        error = "cannot create stream " + config_.stream + ": " + status_text(s) +
                (jerr != 0 ? " (JetStream error " + std::to_string(jerr) + ")" : "");
        return false;
    }

    bool connected() const {
        return conn_ != nullptr && natsConnection_Status(conn_) == NATS_CONN_STATUS_CONNECTED;
    }

    void run() {
        Clock::time_point next_stream_try{};
        Clock::time_point last_stream_log{};
        std::vector<Item> batch;
        // Idle: nothing can be sent now (disconnected, no stream, JetStream refusing); wait for
        // kIdle or a nudge (a (re)connect, stop()) rather than for queued events, which would
        // spin while they cannot go anywhere.
        bool idle = false;
        std::uint64_t seen_nudges = 0;
        for (;;) {
            {
                std::unique_lock lock(mutex_);
                if (idle)
                    wake_.wait_for(lock, kIdle, [&] { return nudges_ != seen_nudges; });
                else
                    wake_.wait_for(lock, kIdle, [this] {
                        return (!queue_.empty() && inflight_.size() < config_.max_pending) ||
                               (stopping_ && queue_.empty() && inflight_.empty());
                    });
                seen_nudges = nudges_;
                idle = true;  // unless it gets to publish below
                if (stopping_ &&
                    ((queue_.empty() && inflight_.empty()) || Clock::now() >= drain_deadline_))
                    break;
            }
            if (const auto now = Clock::now(); now - last_report_ >= kIdle) {
                report();
                last_report_ = now;
            }
            if (!connected())
                continue;  // libnats reconnects; events wait in the queue
            if (recheck_stream_.exchange(false))
                stream_ready_ = false;
            if (!stream_ready_) {
                const auto now = Clock::now();
                if (now < next_stream_try)
                    continue;
                std::string error;
                if (!ensure_stream(error)) {
                    next_stream_try = now + kStreamRetry;
                    if (now - last_stream_log >= kLogInterval) {
                        logger_.Error("jetstream: %s; events are buffered meanwhile",
                                      error.c_str());
                        last_stream_log = now;
                    }
                    continue;
                }
            }
            if (backoff_.exchange(false))
                continue;  // JetStream refused publishes (typically no responders while it
                           // starts up after a restart): give it kIdle, no tight resend loop
            retry_timed_out();
            idle = !publish_some(batch);
        }
        report();
    }

    // Sends queued events while fewer than JETSTREAM_MAX_PENDING are in flight. False when
    // libnats could not send (the rest waits).
    bool publish_some(std::vector<Item>& batch) {
        batch.clear();
        const auto now = Clock::now();
        {
            std::lock_guard lock(mutex_);
            while (!queue_.empty() && inflight_.size() < config_.max_pending) {
                Item& item = queue_.front();
                // Recorded before the publish: the ack may come back before it returns.
                inflight_[item.id] = now;
                batch.push_back(std::move(item));
                queue_.pop_front();
            }
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            Item& item = batch[i];
            natsMsg* msg = nullptr;
            natsStatus s = natsMsg_Create(&msg, item.subject.c_str(), nullptr, item.payload.data(),
                                          static_cast<int>(item.payload.size()));
            if (s == NATS_OK)
                s = natsMsgHeader_Set(msg, "Nats-Msg-Id", item.id.c_str());
            if (s == NATS_OK) {
                published_any_ = true;
                s = js_PublishMsgAsync(js_, &msg, nullptr);
            }
            natsMsg_Destroy(msg);  // no-op when libnats took it
            if (s == NATS_MAX_PAYLOAD) {
                // Larger than the server's max_payload: it can never be sent. Dropped, counted.
                std::lock_guard lock(mutex_);
                inflight_.erase(item.id);
                dropped_rejected_.fetch_add(1, std::memory_order_relaxed);
                last_nack_ = "payload larger than the NATS server's max_payload";
                continue;
            }
            if (s != NATS_OK) {
                // Not sent (disconnected meanwhile, reconnect buffer full): this and the rest
                // of the batch go back to the front of the queue, in order.
                std::lock_guard lock(mutex_);
                for (std::size_t k = batch.size(); k-- > i;) {
                    inflight_.erase(batch[k].id);
                    queue_.push_front(std::move(batch[k]));
                }
                publish_errors_.fetch_add(1, std::memory_order_relaxed);
                note_error("publish failed: " + status_text(s));
                return false;
            }
        }
        return true;
    }

    // Publishes not acknowledged within JETSTREAM_ACK_TIMEOUT_MS of being sent (and of the
    // last reconnect) are taken back from libnats and queued again, first. JetStream stores a
    // message sent twice once (same Nats-Msg-Id within the duplicate window). The in-flight
    // publishes are looked over at most every timeout / 8 (100 ms at the most), not on every
    // pass of the publisher: the walk holds the lock the event workers queue under.
    void retry_timed_out() {
        const auto now = Clock::now();
        const auto timeout = std::chrono::milliseconds(config_.ack_timeout_ms);
        if (now < next_timeout_check_)
            return;
        next_timeout_check_ =
            now + std::min<Clock::duration>(timeout / 8, std::chrono::milliseconds(100));
        if (now - Clock::time_point(Clock::duration(last_reconnect_.load())) < timeout)
            return;
        {
            std::lock_guard lock(mutex_);
            bool expired = false;
            for (const auto& [id, sent] : inflight_)
                if (now - sent >= timeout) {
                    expired = true;
                    break;
                }
            if (!expired)
                return;
        }
        natsMsgList pending{};
        if (js_PublishAsyncGetPendingList(&pending, js_) != NATS_OK)
            return;  // NATS_NOT_FOUND: everything was acknowledged meanwhile
        std::vector<Item> back;
        for (int i = 0; i < pending.Count; ++i)
            back.push_back(to_item(pending.Msgs[i]));
        natsMsgList_Destroy(&pending);
        {
            std::lock_guard lock(mutex_);
            for (auto it = back.rbegin(); it != back.rend(); ++it) {
                inflight_.erase(it->id);
                queue_.push_front(std::move(*it));
            }
        }
        retries_.fetch_add(back.size(), std::memory_order_relaxed);
    }

    static Item to_item(natsMsg* msg) {
        Item item;
        const char* id = nullptr;
        if (natsMsgHeader_Get(msg, "Nats-Msg-Id", &id) == NATS_OK && id != nullptr)
            item.id = id;
        item.subject = natsMsg_GetSubject(msg);
        item.payload.assign(natsMsg_GetData(msg),
                            static_cast<std::size_t>(natsMsg_GetDataLength(msg)));
        return item;
    }

    // Errors are logged at most once per kLogInterval, with how many happened since.
    void note_error(const std::string& what) {
        const auto now = Clock::now();
        ++errors_since_log_;
        if (last_error_log_ != Clock::time_point{} && now - last_error_log_ < kLogInterval)
            return;
        logger_.Warn("jetstream: %s (%llu errors since the last report); retrying", what.c_str(),
                     static_cast<unsigned long long>(errors_since_log_));
        last_error_log_ = now;
        errors_since_log_ = 0;
    }

    // Counters kept by the handlers and libnats' threads, turned into plugin metrics here, on
    // the publisher thread.
    void report() {
        if (const auto n = acked_.exchange(0, std::memory_order_relaxed))
            nk_.MetricsCounterAdd("jetstream_events_published", {}, static_cast<std::int64_t>(n));
        if (const auto n = retries_.exchange(0, std::memory_order_relaxed))
            nk_.MetricsCounterAdd("jetstream_publish_retries", {{"reason", "timeout"}},
                                  static_cast<std::int64_t>(n));
        if (const auto n = nacks_.exchange(0, std::memory_order_relaxed)) {
            nk_.MetricsCounterAdd("jetstream_publish_retries", {{"reason", "error"}},
                                  static_cast<std::int64_t>(n));
            note_error("JetStream refused " + std::to_string(n) +
                       " publishes (last: " + last_nack_text() + ")");
        }
        if (const auto n = publish_errors_.exchange(0, std::memory_order_relaxed))
            nk_.MetricsCounterAdd("jetstream_publish_errors", {}, static_cast<std::int64_t>(n));
        if (const auto n = disconnects_.exchange(0, std::memory_order_relaxed)) {
            nk_.MetricsCounterAdd("jetstream_disconnects", {}, static_cast<std::int64_t>(n));
            logger_.Warn(
                "jetstream: disconnected from NATS; reconnecting, events are buffered "
                "(JETSTREAM_BUFFER %llu)",
                static_cast<unsigned long long>(config_.buffer));
        }
        if (connects_.exchange(0, std::memory_order_relaxed) > 0)
            logger_.Info("jetstream: connected to NATS");
        if (const auto n = reconnects_.exchange(0, std::memory_order_relaxed)) {
            (void)n;
            logger_.Info("jetstream: reconnected to NATS");
        }
        if (const auto n = dropped_rejected_.exchange(0, std::memory_order_relaxed)) {
            nk_.MetricsCounterAdd("jetstream_events_dropped", {{"reason", "rejected"}},
                                  static_cast<std::int64_t>(n));
            logger_.Error("jetstream: %llu events dropped, refused by NATS %d times (last: %s)",
                          static_cast<unsigned long long>(n), kMaxRejections,
                          last_nack_text().c_str());
        }
        const auto dropped = dropped_full_.exchange(0, std::memory_order_relaxed);
        if (dropped > 0) {
            nk_.MetricsCounterAdd("jetstream_events_dropped", {{"reason", "buffer_full"}},
                                  static_cast<std::int64_t>(dropped));
            dropped_since_log_ += dropped;
            const auto now = Clock::now();
            if (last_drop_log_ == Clock::time_point{} || now - last_drop_log_ >= kLogInterval) {
                logger_.Warn(
                    "jetstream: %llu events dropped, the buffer (JETSTREAM_BUFFER %llu) "
                    "was full",
                    static_cast<unsigned long long>(dropped_since_log_),
                    static_cast<unsigned long long>(config_.buffer));
                last_drop_log_ = now;
                dropped_since_log_ = 0;
            }
        }
        std::size_t queued = 0, inflight = 0;
        {
            std::lock_guard lock(mutex_);
            queued = queue_.size();
            inflight = inflight_.size();
        }
        nk_.MetricsGaugeSet("jetstream_events_buffered", {}, static_cast<double>(queued));
        nk_.MetricsGaugeSet("jetstream_events_in_flight", {}, static_cast<double>(inflight));
    }

    std::string last_nack_text() {
        std::lock_guard lock(mutex_);
        return last_nack_;
    }

    // ---- libnats callbacks (its threads) ----

    // Callbacks run only while callbacks_open_; destroy_connection() closes it and waits for
    // those running, so none runs once the connection is destroyed.
    struct CallbackScope {
        explicit CallbackScope(Publisher* p) : p_(p) {
            p_->callbacks_running_.fetch_add(1);
            ok = p_->callbacks_open_.load();
        }
        ~CallbackScope() { p_->callbacks_running_.fetch_sub(1); }
        Publisher* p_;
        bool ok = false;
    };

    static void on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
        auto* self = static_cast<Publisher*>(closure);
        CallbackScope scope(self);
        if (scope.ok) {
            const char* raw_id = nullptr;
            natsMsgHeader_Get(msg, "Nats-Msg-Id", &raw_id);
            const std::string id = raw_id != nullptr ? raw_id : "";
            Item item;
            if (pa == nullptr)
                item = to_item(msg);  // refused: it goes back to the queue
            {
                std::lock_guard lock(self->mutex_);
                // Only what is in flight counts (libnats calls this once per publish it still
                // tracks; what a timeout took back is not tracked any more).
                if (self->inflight_.erase(id) > 0) {
                    if (pa != nullptr) {
                        self->rejections_.erase(id);
                        self->acked_.fetch_add(1, std::memory_order_relaxed);
                    } else {
                        if (pae != nullptr && pae->ErrText != nullptr)
                            self->last_nack_ = pae->ErrText;
                        self->nack(std::move(item), pae);
                    }
                }
            }
            self->wake_.notify_one();
        }
        natsMsg_Destroy(msg);
    }

    // A refused publish (under mutex_). No responders (JetStream restarting) and timeouts are
    // retried for ever; an error JetStream answered with (a message over the stream's size
    // limit, a missing stream) kMaxRejections times for the same event drops it, counted: it
    // would otherwise hold the queue for good.
    void nack(Item item, const jsPubAckErr* pae) {
        backoff_.store(true);
        // No responders: JetStream is not up yet, or no stream takes the subject (deleted under
        // us); a missing stream is created again.
        if (pae != nullptr &&
            (pae->ErrCode == JSStreamNotFoundErr || pae->Err == NATS_NO_RESPONDERS))
            recheck_stream_.store(true);
        if (pae != nullptr && pae->ErrCode != 0 && ++rejections_[item.id] >= kMaxRejections) {
            rejections_.erase(item.id);
            dropped_rejected_.fetch_add(1, std::memory_order_relaxed);
            return;
        }
        queue_.push_front(std::move(item));
        nacks_.fetch_add(1, std::memory_order_relaxed);
    }

    static void on_disconnected(natsConnection*, void* closure) {
        auto* self = static_cast<Publisher*>(closure);
        CallbackScope scope(self);
        if (scope.ok)
            self->disconnects_.fetch_add(1);
    }

    static void on_reconnected(natsConnection*, void* closure) {
        auto* self = static_cast<Publisher*>(closure);
        CallbackScope scope(self);
        if (scope.ok) {
            self->last_reconnect_.store(Clock::now().time_since_epoch().count());
            self->reconnects_.fetch_add(1);
            {
                std::lock_guard lock(self->mutex_);
                ++self->nudges_;
            }
            self->wake_.notify_one();
        }
    }

    static void on_connected(natsConnection*, void* closure) {  // the first connect, late
        auto* self = static_cast<Publisher*>(closure);
        CallbackScope scope(self);
        if (scope.ok) {
            self->last_reconnect_.store(Clock::now().time_since_epoch().count());
            self->connects_.fetch_add(1);
            {
                std::lock_guard lock(self->mutex_);
                ++self->nudges_;
            }
            self->wake_.notify_one();
        }
    }

    static void on_closed(natsConnection*, void* closure) {
        auto* self = static_cast<Publisher*>(closure);
        CallbackScope scope(self);
        if (scope.ok) {
            std::lock_guard lock(self->mutex_);
            self->closed_ = true;
        }
        if (scope.ok)
            self->wake_.notify_all();
    }

    const Config config_;
    nk::Logger logger_;
    nk::Module nk_;

    natsOptions* opts_ = nullptr;
    natsConnection* conn_ = nullptr;
    jsCtx* js_ = nullptr;
    bool stream_ready_ = false;   // publisher thread (and connect(), before it starts)
    bool published_any_ = false;  // publisher thread; read after it was joined
    std::thread thread_;

    std::mutex mutex_;  // guards everything below up to the atomics
    std::condition_variable wake_;
    std::deque<Item> queue_;                                       // to send, retries first
    std::unordered_map<std::string, Clock::time_point> inflight_;  // id -> when sent
    Clock::time_point next_timeout_check_{};  // publisher thread only
    std::unordered_map<std::string, int> rejections_;              // id -> JetStream errors
    bool stopping_ = false;
    bool closed_ = false;
    std::uint64_t nudges_ = 0;  // (re)connects and stop(): wake an idle publisher
    Clock::time_point drain_deadline_{};
    std::string last_nack_;
    std::vector<Item> leftover_;  // kept by stop(true) for save_handoff()

    std::atomic<std::uint64_t> acked_{0}, retries_{0}, nacks_{0}, publish_errors_{0};
    std::atomic<std::uint64_t> dropped_full_{0}, dropped_rejected_{0}, disconnects_{0},
        reconnects_{0}, connects_{0};
    std::atomic<bool> recheck_stream_{false};
    std::atomic<Clock::rep> last_reconnect_{0};
    std::atomic<bool> backoff_{false};
    std::atomic<bool> callbacks_open_{true};
    std::atomic<int> callbacks_running_{0};

    // publisher thread only
    Clock::time_point last_error_log_{}, last_drop_log_{}, last_report_{};
    std::uint64_t errors_since_log_ = 0, dropped_since_log_ = 0;
};

// libnats keeps threads of its own for the life of the process (timers, asynchronous
// callbacks). Unloading this plugin would drop the last reference to libnats and unmap the code
// those threads run: mark it RTLD_NODELETE so it stays loaded, as it would in a program that
// linked it directly.
nk::Error pin_libnats() {
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&natsConnection_Connect), &info) == 0 ||
        info.dli_fname == nullptr)
        return nk::Error::Internal("jetstream: cannot locate libnats");
    void* handle = dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
    if (handle == nullptr)
        return nk::Error::Internal(std::string("jetstream: cannot pin libnats: ") + dlerror());
    dlclose(handle);  // the NODELETE flag stays
    return {};
}

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    Config config;
    if (auto err = read_config(ctx, config))
        return err;
    if (auto err = pin_libnats())
        return err;

    // Shared by the handlers and the shutdown handler; the host destroys the handlers (and so
    // the last reference) only after every call returned.
    auto publisher = std::make_shared<Publisher>(config, logger, nk);
    if (auto err = publisher->connect())
        return err;  // the destructor destroys what was created
    auto publish = [publisher](const nk::Context& c, nk::Logger&, const nk::Event& evt) {
        publisher->add(c, evt);
    };
    if (auto err = initializer.RegisterEvent(publish))
        return err;
    if (auto err = initializer.RegisterEventSessionStart(publish))
        return err;
    if (auto err = initializer.RegisterEventSessionEnd(publish))
        return err;
    // Unpublished events survive a hot reload (ABI 1.1; an older host has no reloads with
    // shutdown handlers, so nothing is lost without it).
    const nk::Error handoff = initializer.RegisterHandoff(
        [publisher](const nk::Context&, nk::Logger&, nk::Module&, std::string& blob) {
            blob = publisher->save_handoff();
            return std::uint32_t{1};
        },
        [publisher](const nk::Context&, nk::Logger&, nk::Module&, std::uint32_t version,
                    const std::string& blob) -> nk::Error {
            if (version != 1)
                return nk::Error::InvalidArgument("jetstream: unknown handoff version " +
                                                  std::to_string(version));
            return publisher->load_handoff(blob);
        });
    if (handoff && handoff.code() != NK_UNIMPLEMENTED)
        return handoff;
    const bool can_hand_over = !handoff;
    if (auto err = initializer.RegisterShutdown([publisher, can_hand_over](const nk::Context& c,
                                                                           nk::Logger&, nk::Module&,
                                                                           std::int64_t) {
            // Drains (bounded), then destroys the connection. A hot reload replacing this
            // generation ("reload") hands what is left to the next one.
            publisher->stop(can_hand_over && c.execution_mode == "reload");
        }))
        return err;
    publisher->start();  // last: a failed registration above leaves no thread behind
    logger.Info("jetstream: publishing events to stream %s, subjects %s.<event name>, via %s",
                config.stream.c_str(), config.prefix.c_str(), config.servers.front().c_str());
    return {};
}
