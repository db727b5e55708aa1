// jetstream_consumer: reads the events the jetstream plugin publishes, with a durable pull
// consumer, and acknowledges each one after processing it (printing its JSON line, or counting).
//
//   jetstream_consumer <durable name> [options]
//
// Every process started with the same durable name shares one consumer on the server: each
// fetch hands a batch of messages to one process, so several processes split the stream between
// them. A message that is not acknowledged within the ack wait (the process died or hung
// mid-batch) is delivered again, to whichever process fetches next: at-least-once, so
// deduplicate by the event's "id" when exactly-once matters. README.md shows two at work.
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

struct Options {
    std::string durable;
    std::string url = "nats://127.0.0.1:4222";
    std::string stream = "NKHOST_EVENTS";
    std::string subject = "nkhost.events.>";
    int batch = 100;
    std::int64_t ack_wait_ms = 30000;
    bool count_only = false;
    // For demonstrations and tests: after this many messages, process half of the next batch
    // and hold the rest unacknowledged, as a process that dies mid-batch would (0: off).
    std::int64_t hold_after = 0;
};

void usage() {
    std::fprintf(stderr,
                 "usage: jetstream_consumer <durable name> [--url nats://127.0.0.1:4222]\n"
                 "         [--stream NKHOST_EVENTS] [--subject nkhost.events.>] [--batch 100]\n"
                 "         [--ack-wait-ms 30000] [--count] [--hold-after N]\n"
                 "Prints each event's JSON line (or, with --count, a running count) to stdout and\n"
                 "acknowledges it. Processes with the same durable name share the work.\n");
}

bool parse(int argc, char** argv, Options& o) {
    if (argc < 2 || argv[1][0] == '-')
        return false;
    o.durable = argv[1];
    for (int i = 2; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--count") {
            o.count_only = true;
        } else if (a == "--url" && has_value) {
            o.url = argv[++i];
        } else if (a == "--stream" && has_value) {
            o.stream = argv[++i];
        } else if (a == "--subject" && has_value) {
            o.subject = argv[++i];
        } else if (a == "--batch" && has_value) {
            o.batch = std::atoi(argv[++i]);
        } else if (a == "--ack-wait-ms" && has_value) {
            o.ack_wait_ms = std::atoll(argv[++i]);
        } else if (a == "--hold-after" && has_value) {
            o.hold_after = std::atoll(argv[++i]);
        } else {
            return false;
        }
    }
    return o.batch > 0 && o.ack_wait_ms > 0 && o.hold_after >= 0;
}

std::atomic<bool> stop_requested{false};
void on_signal(int) {
    stop_requested.store(true);
}

int fail(const char* what, natsStatus s) {
    std::fprintf(stderr, "jetstream_consumer: %s: %s (%s)\n", what, natsStatus_GetText(s),
                 nats_GetLastError(nullptr));
    return 1;
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    if (!parse(argc, argv, o)) {
        usage();
        return 2;
    }
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);

    natsOptions* opts = nullptr;
    natsConnection* nc = nullptr;
    jsCtx* js = nullptr;
    natsSubscription* sub = nullptr;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, o.url.c_str());
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);  // ride out a server restart
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, opts);
    if (s != NATS_OK)
        return fail(("cannot connect to " + o.url).c_str(), s);
    s = natsConnection_JetStream(&js, nc, nullptr);
    if (s != NATS_OK)
        return fail("JetStream context", s);

    // The durable consumer: created by the first process, shared by the others.
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = o.stream.c_str();
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = o.ack_wait_ms * 1000 * 1000;  // nanoseconds
    jsErrCode jerr = static_cast<jsErrCode>(0);
    s = js_PullSubscribe(&sub, js, o.subject.c_str(), o.durable.c_str(), nullptr, &so, &jerr);
    if (s != NATS_OK)
        return fail(("pull consumer " + o.durable + " on " + o.stream).c_str(), s);
    std::fprintf(stderr, "jetstream_consumer: consumer %s on stream %s ready\n", o.durable.c_str(),
                 o.stream.c_str());

    std::int64_t processed = 0;
    bool holding = false;
    while (!stop_requested.load()) {
        if (holding) {  // a process hung mid-batch: its unacknowledged messages wait for AckWait
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            continue;
        }
        natsMsgList list{};
        s = natsSubscription_Fetch(&list, sub, o.batch, 1000, &jerr);
        if (s == NATS_TIMEOUT)
            continue;  // nothing new within a second
        if (s != NATS_OK) {
            std::fprintf(stderr, "jetstream_consumer: fetch: %s; retrying\n",
                         natsStatus_GetText(s));
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
            continue;
        }
        const bool hold_this = o.hold_after > 0 && processed >= o.hold_after && list.Count > 1;
        const int process = hold_this ? list.Count / 2 : list.Count;
        for (int i = 0; i < process; ++i) {
            natsMsg* m = list.Msgs[i];
            if (o.count_only) {
                ++processed;
            } else {
                std::fwrite(natsMsg_GetData(m), 1,
                            static_cast<std::size_t>(natsMsg_GetDataLength(m)), stdout);
                std::fputc('\n', stdout);
                ++processed;
            }
            // Acknowledge once processed: after this the server never delivers it again.
            std::fflush(stdout);
            if (natsMsg_AckSync(m, nullptr, nullptr) != NATS_OK)
                std::fprintf(stderr, "jetstream_consumer: ack failed, it will be redelivered\n");
        }
        if (o.count_only)
            std::printf("%lld\n", static_cast<long long>(processed));
        std::fflush(stdout);
        if (hold_this) {
            for (int i = process; i < list.Count; ++i) {
                const char* id = nullptr;
                natsMsgHeader_Get(list.Msgs[i], "Nats-Msg-Id", &id);
                std::fprintf(stderr, "jetstream_consumer: holding %s\n", id ? id : "?");
            }
            std::fprintf(stderr, "jetstream_consumer: holding %d unacknowledged messages\n",
                         list.Count - process);
            holding = true;
        }
        natsMsgList_Destroy(&list);
    }

    std::fprintf(stderr, "jetstream_consumer: %lld messages processed\n",
                 static_cast<long long>(processed));
    // Destroy, not Unsubscribe: the durable consumer stays on the server for the next run.
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(opts);
    nats_Close();  // a program (unlike a plugin) may tear libnats down at exit
    return 0;
}
