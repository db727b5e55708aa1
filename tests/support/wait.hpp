// Test support: waiting on conditions and holding threads at a gate.
//
// Header-only, so any suite linking nk_doctest_main can use it. Both helpers are thread-safe.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace nk::test {

// Polls `pred` until true or a generous safety deadline; the deadline is never the thing tested.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = std::chrono::seconds(30)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline)
            return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
}

// A gate threads (e.g. event handlers) block on until the test opens it; waiting() counts the
// threads that reached it, so a test can wait until they are all held.
class Gate {
  public:
    void wait() {
        std::unique_lock lock(m_);
        ++waiting_;
        cv_.wait(lock, [&] { return open_; });
    }
    void open() {
        std::lock_guard lock(m_);
        open_ = true;
        cv_.notify_all();
    }
    int waiting() {
        std::lock_guard lock(m_);
        return waiting_;
    }

  private:
    std::mutex m_;
    std::condition_variable cv_;
    bool open_ = false;
    int waiting_ = 0;
};

}  // namespace nk::test
