// event_archive: appends every event the server processes (custom events, session_start,
// session_end) as one JSON line to a file, for replay, audits and offline analysis.
//
//   {"id":"0193…","name":"level_up","properties":{"level":"3"},"external":true,
//    "timestamp":"2026-12-04T21:10:45Z","user_id":"…","username":"alice","session_id":null,
//    "node":"nakama","received_at":"2026-12-04T21:10:45.123Z"}
//
// Configured by runtime.env (see README.md): EVENT_ARCHIVE_PATH (unset: the plugin is off),
// EVENT_ARCHIVE_MAX_BYTES, EVENT_ARCHIVE_MAX_FILES, EVENT_ARCHIVE_BUFFER_BYTES.
//
// How it stays out of the way of the event workers:
//  - a handler only formats its line and appends it to an in-memory buffer under a mutex held
//    for a memcpy; it never touches the file, so a slow or full disk never stalls a worker;
//  - one writer thread (started in InitModule, stopped and joined by the shutdown handler, which
//    also runs when a hot reload retires this generation) swaps the buffer out and writes it at
//    least once a second, sooner when a lot has built up;
//  - the buffer is bounded: when the disk cannot keep up, new lines are dropped and counted,
//    never queued without limit;
//  - write errors (disk full, permissions) drop the lines of that write and are counted
//    (plugin metrics) and logged at most once per 10 s; the file is reopened on the next write.
// Lines never interleave (whole lines are appended under the mutex and written by one thread)
// and never tear: a write that fails half-way is cut back to the last whole line.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>

#include <nk/sdk.hpp>
#include <nk_plugins/event_json.hpp>

namespace {

using Clock = std::chrono::steady_clock;

// ---- configuration ---------------------------------------------------------------------------

struct Config {
    std::string path;                                  // EVENT_ARCHIVE_PATH
    std::uint64_t max_bytes = 100ull * 1024 * 1024;    // EVENT_ARCHIVE_MAX_BYTES, per file
    std::uint64_t max_files = 5;                       // EVENT_ARCHIVE_MAX_FILES, current included
    std::uint64_t buffer_bytes = 16ull * 1024 * 1024;  // EVENT_ARCHIVE_BUFFER_BYTES, unwritten
};

constexpr auto kFlushInterval = std::chrono::seconds(1);
constexpr std::size_t kEarlyFlushBytes = 256 * 1024;  // wake the writer before the second is up
constexpr auto kErrorLogInterval = std::chrono::seconds(10);

// A positive integer from runtime.env into `out`; `out` keeps its default when the key is absent.
nk::Error read_positive(const nk::Context& ctx, const char* key, std::uint64_t& out) {
    auto it = ctx.env.find(key);
    if (it == ctx.env.end())
        return {};
    const std::string& text = it->second;
    char* end = nullptr;
    errno = 0;
    const unsigned long long v = std::strtoull(text.c_str(), &end, 10);
    if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE || v == 0)
        return nk::Error::InvalidArgument(std::string(key) + " must be a positive integer, got \"" +
                                          text + "\"");
    out = v;
    return {};
}

// ---- one line of JSON ------------------------------------------------------------------------

// The event as one line of JSON (the form jetstream publishes too), '\n' included.
std::string format_line(const nk::Context& ctx, const nk::Event& evt) {
    std::string line = nk_plugins::event_json::format(ctx, evt);
    line.push_back('\n');
    return line;
}

// ---- the file --------------------------------------------------------------------------------

// The archive file and its rotated predecessors PATH.1 (newest) .. PATH.<max_files-1>. Used by
// the writer thread only.
class ArchiveFile {
  public:
    explicit ArchiveFile(const Config& config) : config_(config) {}
    ~ArchiveFile() { close(); }
    ArchiveFile(const ArchiveFile&) = delete;
    ArchiveFile& operator=(const ArchiveFile&) = delete;

    // Appends whole lines (`data` ends with '\n'), rotating so that no file grows past
    // max_bytes (a single line longer than that gets a file of its own). On failure returns
    // the reason and sets `unwritten` to the bytes not written; the file keeps whole lines only.
    std::string append(std::string_view data, std::size_t& unwritten) {
        while (!data.empty()) {
            if (fd_ < 0) {
                if (std::string err = open(); !err.empty()) {
                    unwritten = data.size();
                    return err;
                }
            }
            std::size_t take = data.size();
            if (regular_ && size_ + take > config_.max_bytes) {
                const std::size_t room = size_ < config_.max_bytes ? config_.max_bytes - size_ : 0;
                take = whole_lines_within(data, room);
                if (take == 0 && size_ == 0)  // one line longer than a whole file
                    take = data.find('\n') + 1;
                if (take == 0) {
                    if (std::string err = rotate(); !err.empty()) {
                        unwritten = data.size();
                        return err;
                    }
                    continue;
                }
            }
            if (std::string err = write_all(data.substr(0, take)); !err.empty()) {
                unwritten = data.size();
                return err;
            }
            data.remove_prefix(take);
        }
        unwritten = 0;
        return {};
    }

    void close() {
        if (fd_ >= 0)
            ::close(fd_);
        fd_ = -1;
    }

  private:
    static std::size_t whole_lines_within(std::string_view data, std::size_t room) {
        if (room == 0)
            return 0;
        const std::size_t last = data.substr(0, room).rfind('\n');
        return last == std::string_view::npos ? 0 : last + 1;
    }

    std::string open() {
        fd_ = ::open(config_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
        if (fd_ < 0)
            return "cannot open " + config_.path + ": " + std::strerror(errno);
        struct stat st {};
        if (::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode)) {
            regular_ = true;  // rotation and repair only for regular files (not /dev/stdout)
            size_ = static_cast<std::uint64_t>(st.st_size);
        } else {
            regular_ = false;
            size_ = 0;
        }
        return {};
    }

    std::string write_all(std::string_view data) {
        std::size_t done = 0;
        while (done < data.size()) {
            const ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                const std::string reason = std::strerror(n < 0 ? errno : EIO);
                // Cut a partly written write back to the last whole line, and reopen next time
                // (the file may have been replaced, or its permissions fixed).
                if (regular_ && done > 0 && ::ftruncate(fd_, static_cast<off_t>(size_)) != 0) {
                    // Nothing more to do: the next reader sees a torn last line.
                }
                close();
                return "cannot write to " + config_.path + ": " + reason;
            }
            done += static_cast<std::size_t>(n);
        }
        size_ += data.size();
        return {};
    }

    // PATH.<n-2> -> PATH.<n-1>, ..., PATH -> PATH.1, then a fresh PATH.
    std::string rotate() {
        close();
        const std::uint64_t keep = config_.max_files;
        if (keep <= 1) {
            if (::unlink(config_.path.c_str()) != 0 && errno != ENOENT)
                return "cannot rotate " + config_.path + ": " + std::strerror(errno);
        } else {
            for (std::uint64_t i = keep - 1; i >= 1; --i) {
                const std::string from =
                    i == 1 ? config_.path : config_.path + "." + std::to_string(i - 1);
                const std::string to = config_.path + "." + std::to_string(i);
                if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT)
                    return "cannot rotate " + from + ": " + std::strerror(errno);
            }
        }
        return open();
    }

    const Config& config_;
    int fd_ = -1;
    bool regular_ = false;
    std::uint64_t size_ = 0;
};

// ---- the archive -----------------------------------------------------------------------------

class Archive {
  public:
    Archive(Config config, nk::Logger logger, nk::Module nk)
        : config_(std::move(config)), file_(config_), logger_(logger), nk_(nk) {}
    ~Archive() { stop(); }

    void start() {
        writer_ = std::thread([this] { run(); });
    }

    // Stops the writer after it wrote everything buffered. Idempotent.
    void stop() {
        {
            std::lock_guard lock(mutex_);
            if (stopping_)
                return;
            stopping_ = true;
        }
        wake_.notify_one();
        if (writer_.joinable())
            writer_.join();
    }

    // Called by the event handlers, on any worker: formats outside the lock, appends the whole
    // line under it. Never waits for the disk.
    void add(const nk::Context& ctx, const nk::Event& evt) {
        const std::string line = format_line(ctx, evt);
        bool wake = false;
        {
            std::lock_guard lock(mutex_);
            if (stopping_ || pending_.size() + line.size() > config_.buffer_bytes) {
                dropped_full_.fetch_add(1, std::memory_order_relaxed);
                return;
            }
            wake = pending_.size() < kEarlyFlushBytes &&
                   pending_.size() + line.size() >= kEarlyFlushBytes;
            pending_ += line;
        }
        if (wake)
            wake_.notify_one();
    }

  private:
    void run() {
        std::string writing;
        for (;;) {
            bool last;
            {
                std::unique_lock lock(mutex_);
                wake_.wait_for(lock, kFlushInterval,
                               [this] { return stopping_ || pending_.size() >= kEarlyFlushBytes; });
                writing.swap(pending_);
                last = stopping_;
            }
            write(writing);
            writing.clear();
            report_drops();
            if (last)
                break;  // nothing is added once stopping_ is set
        }
        file_.close();
    }

    void write(const std::string& lines) {
        if (lines.empty())
            return;
        std::size_t unwritten = 0;
        const std::string error = file_.append(lines, unwritten);
        const std::size_t total = count_lines(lines);
        const std::size_t lost =
            count_lines(std::string_view(lines).substr(lines.size() - unwritten));
        if (total > lost)
            nk_.MetricsCounterAdd("event_archive_lines_written", {},
                                  static_cast<std::int64_t>(total - lost));
        if (error.empty())
            return;
        nk_.MetricsCounterAdd("event_archive_write_errors", {}, 1);
        nk_.MetricsCounterAdd("event_archive_events_dropped", {{"reason", "write_error"}},
                              static_cast<std::int64_t>(lost));
        ++errors_since_log_;
        const auto now = Clock::now();
        if (last_error_log_ == Clock::time_point{} || now - last_error_log_ >= kErrorLogInterval) {
            logger_.Error(
                "event archive: %s (%llu events dropped; %llu write errors since the "
                "last report)",
                error.c_str(), static_cast<unsigned long long>(lost),
                static_cast<unsigned long long>(errors_since_log_));
            last_error_log_ = now;
            errors_since_log_ = 0;
        }
    }

    // Lines dropped by add() are counted there (an atomic) and reported here, off the workers.
    void report_drops() {
        const std::uint64_t n = dropped_full_.exchange(0, std::memory_order_relaxed);
        if (n == 0)
            return;
        nk_.MetricsCounterAdd("event_archive_events_dropped", {{"reason", "buffer_full"}},
                              static_cast<std::int64_t>(n));
        logger_.Warn(
            "event archive: %llu events dropped, the buffer (EVENT_ARCHIVE_BUFFER_BYTES "
            "%llu) was full",
            static_cast<unsigned long long>(n),
            static_cast<unsigned long long>(config_.buffer_bytes));
    }

    static std::size_t count_lines(std::string_view s) {
        std::size_t n = 0;
        for (char c : s)
            n += c == '\n';
        return n;
    }

    const Config config_;
    ArchiveFile file_;  // writer thread only
    nk::Logger logger_;
    nk::Module nk_;
    std::thread writer_;

    std::mutex mutex_;  // guards pending_ and stopping_
    std::condition_variable wake_;
    std::string pending_;
    bool stopping_ = false;
    std::atomic<std::uint64_t> dropped_full_{0};

    Clock::time_point last_error_log_{};  // writer thread only
    std::uint64_t errors_since_log_ = 0;
};

}  // namespace

NK_INIT_MODULE(ctx, logger, nk, initializer) {
    Config config;
    auto path = ctx.env.find("EVENT_ARCHIVE_PATH");
    if (path == ctx.env.end() || path->second.empty()) {
        logger.Info("event archive off: set EVENT_ARCHIVE_PATH in runtime.env to turn it on");
        return {};
    }
    config.path = path->second;
    if (auto err = read_positive(ctx, "EVENT_ARCHIVE_MAX_BYTES", config.max_bytes))
        return err;
    if (auto err = read_positive(ctx, "EVENT_ARCHIVE_MAX_FILES", config.max_files))
        return err;
    if (auto err = read_positive(ctx, "EVENT_ARCHIVE_BUFFER_BYTES", config.buffer_bytes))
        return err;

    // Shared by the handlers and the shutdown handler; the host destroys the handlers (and so
    // the last reference) only after every call returned.
    auto archive = std::make_shared<Archive>(config, logger, nk);
    auto record = [archive](const nk::Context& c, nk::Logger&, const nk::Event& evt) {
        archive->add(c, evt);
    };
    if (auto err = initializer.RegisterEvent(record))
        return err;
    if (auto err = initializer.RegisterEventSessionStart(record))
        return err;
    if (auto err = initializer.RegisterEventSessionEnd(record))
        return err;
    if (auto err = initializer.RegisterShutdown(
            [archive](const nk::Context&, nk::Logger&, nk::Module&, std::int64_t) {
                archive->stop();  // writes what is buffered, then joins the writer
            }))
        return err;
    archive->start();  // last: a failed registration above leaves no thread behind
    logger.Info("event archive: writing events to %s (rotation at %llu bytes, %llu files)",
                config.path.c_str(), static_cast<unsigned long long>(config.max_bytes),
                static_cast<unsigned long long>(config.max_files));
    return {};
}
