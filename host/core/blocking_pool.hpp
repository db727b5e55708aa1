// BlockingPool: the threads where work that may block runs (database calls,
// bcrypt, plugin hooks and RPCs), so io threads never block.
//
// post() is thread-safe and never blocks. Tasks run in FIFO order across
// `threads` workers. stop() lets queued tasks finish, then joins; tasks posted
// after stop() began are dropped (and reported by post() returning false).
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nk {

class BlockingPool {
public:
    explicit BlockingPool(std::size_t threads);
    ~BlockingPool();
    BlockingPool(const BlockingPool&) = delete;
    BlockingPool& operator=(const BlockingPool&) = delete;

    bool post(std::function<void()> task);
    void stop();  // idempotent; waits for queued tasks
    std::size_t size() const { return threads_.size(); }

private:
    void run();

    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<std::function<void()>> tasks_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace nk
