// BlockingPool: the threads where work that may block runs (database calls,
// bcrypt, plugin hooks and RPCs), so io threads never block.
//
// post() is thread-safe and never blocks. Jobs run in FIFO order across
// `threads` workers. stop() lets queued jobs finish, then joins; jobs posted
// after stop() began are refused (Posted::stopping).
//
// What a client can make the pool hold is bounded (Options): the number of
// queued jobs and the bytes they hold (Job::bytes, e.g. a request body); over
// either bound post() refuses the job and the caller answers "unavailable".
// A queued job whose `abandoned` probe says its client has gone is dropped
// unrun (Job::on_drop is called instead), when a worker reaches it or when a
// full queue makes room.
//
// Lanes: jobs of Lane::password (bcrypt) run on at most
// Options::password_threads workers at once. A worker never waits for a
// password slot: while the cap is reached it takes the next general job, so
// password floods leave the other workers serving reads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace nk {

class BlockingPool {
public:
    enum class Lane { general, password };
    static constexpr std::size_t kLanes = 2;

    struct Options {
        std::size_t threads = 4;           // 0 is taken as 1
        std::size_t max_queued = 0;        // queued (not yet running) jobs, all lanes; 0 = unbounded
        std::size_t max_queued_bytes = 0;  // sum of Job::bytes of queued jobs; 0 = unbounded
        std::size_t password_threads = 0;  // workers running Lane::password at once; 0 = no cap
        // Optional. Called under the pool's lock with a lane's number of queued jobs whenever it
        // changed: must be cheap and non-blocking (it sets a gauge).
        std::function<void(Lane lane, std::size_t queued)> queued_changed;
    };

    struct Job {
        std::function<void()> run;
        std::size_t bytes = 0;  // what the queued job holds; counted until it starts or is dropped
        Lane lane = Lane::general;
        // Optional. Called under the pool's lock: must be cheap, non-blocking, thread-safe.
        std::function<bool()> abandoned;
        // Optional. Called instead of `run` when the job is dropped as abandoned, outside the lock.
        std::function<void()> on_drop;
    };

    enum class Posted { accepted, queue_full, queue_bytes_full, stopping };

    explicit BlockingPool(std::size_t threads);  // no queue bounds, no password cap
    explicit BlockingPool(const Options& options);
    ~BlockingPool();
    BlockingPool(const BlockingPool&) = delete;
    BlockingPool& operator=(const BlockingPool&) = delete;

    // A general job holding no bytes; true when accepted.
    bool post(std::function<void()> task);
    Posted post(Job job);
    void stop();  // idempotent; waits for queued jobs
    // stop() bounded by `wait`: returns how many workers are still running a job then (not
    // joined; the destructor would wait for them, so a non-zero answer means "exit the process").
    std::size_t stop_within(std::chrono::milliseconds wait);
    std::size_t size() const { return threads_.size(); }
    std::size_t password_threads() const { return password_cap_; }
    // Jobs of `lane` queued and not yet running (a snapshot).
    std::size_t queued(Lane lane) const;

private:
    struct Entry {
        Job job;
        std::uint64_t seq;
    };
    void run();
    // Under the lock: the queue the next job comes from, or nullptr when none may run now.
    std::deque<Entry>* next_queue();
    // Under the lock: moves abandoned jobs out of the queues into `dropped`.
    void take_abandoned(std::vector<Job>& dropped);
    void unqueue(const Job& job);
    // Under the lock: reports the length of queues_[lane] (Options::queued_changed).
    void report_queued(std::size_t lane) const;

    const Options options_;
    const std::size_t password_cap_;
    mutable std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<Entry> queues_[kLanes];
    std::size_t queued_bytes_ = 0;
    std::size_t password_running_ = 0;
    std::uint64_t next_seq_ = 0;
    bool stopping_ = false;
    std::size_t live_ = 0;  // workers that have not returned from run()
    std::condition_variable exited_cv_;
    std::vector<std::thread> threads_;
};

}  // namespace nk
