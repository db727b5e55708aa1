// Helpers for the runtime suites: fixture paths, a thread-safe log
// capture, an EventSink that records what plugins emit, and waiting with a deadline.
#pragma once

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <ostream>
#include <streambuf>
#include <string>
#include <thread>
#include <vector>

#include "events/handlers.hpp"
#include "log/log.hpp"
#include "support/process.hpp"
#include "support/wait.hpp"

namespace nk::test {

namespace fs = std::filesystem;

inline fs::path fixture(const std::string& name) {
    return build_dir() / "fixtures" / name / (name + ".so");
}
inline fs::path sample(const std::string& name) {
    return build_dir() / "modules" / (name + ".so");
}

// Copies `files` into `dir` (created), keeping their file names.
inline void install(const fs::path& dir, const std::vector<fs::path>& files) {
    fs::create_directories(dir);
    for (const auto& f : files)
        fs::copy_file(f, dir / f.filename(), fs::copy_options::overwrite_existing);
}

// A std::ostream whose contents can be read while other threads log.
class LogCapture {
  public:
    explicit LogCapture(const std::string& level = "debug") : stream_(&buf_) {
        nk::log::Options o;
        o.level = level;
        nk::log::init(o, stream_);
    }
    ~LogCapture() {
        nk::log::Options o;
        o.level = "warn";
        nk::log::init(o);
    }
    std::string text() const {
        std::lock_guard lock(buf_.mutex);
        return buf_.text;
    }
    bool contains(const std::string& s) const { return text().find(s) != std::string::npos; }
    bool wait_for(const std::string& s) const {
        return wait_until([&] { return contains(s); });
    }

  private:
    struct Buf : std::streambuf {
        mutable std::mutex mutex;
        std::string text;
        int_type overflow(int_type c) override {
            if (c != traits_type::eof()) {
                std::lock_guard lock(mutex);
                text.push_back(static_cast<char>(c));
            }
            return c;
        }
        std::streamsize xsputn(const char* s, std::streamsize n) override {
            std::lock_guard lock(mutex);
            text.append(s, static_cast<std::size_t>(n));
            return n;
        }
    };
    Buf buf_;
    std::ostream stream_;
};

// Records every event offered (a copy), then forwards it to `next` (may be null).
class RecordingSink final : public events::EventSink {
  public:
    explicit RecordingSink(events::EventSink* next = nullptr) : next_(next) {}
    void set_next(events::EventSink* next) { next_ = next; }
    events::SubmitResult submit(events::Event&& e) override {
        {
            std::lock_guard lock(mutex_);
            seen_.push_back(e);
        }
        cv_.notify_all();
        return next_ != nullptr ? next_->submit(std::move(e)) : events::SubmitResult::accepted;
    }
    std::vector<events::Event> seen() const {
        std::lock_guard lock(mutex_);
        return seen_;
    }
    // The first recorded event named `name`, waiting for it (safety net only).
    bool wait_for(const std::string& name, events::Event& out,
                  std::chrono::milliseconds limit = std::chrono::seconds(20)) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, limit, [&] {
            for (const auto& e : seen_)
                if (e.name == name) {
                    out = e;
                    return true;
                }
            return false;
        });
    }
    std::size_t count(const std::string& name) const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (const auto& e : seen_)
            n += e.name == name;
        return n;
    }

  private:
    events::EventSink* next_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::vector<events::Event> seen_;
};

inline std::string prop(const events::Event& e, const std::string& key) {
    for (const auto& [k, v] : e.properties)
        if (k == key)
            return v;
    return "<missing>";
}

}  // namespace nk::test
