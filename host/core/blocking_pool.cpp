#include "core/blocking_pool.hpp"

#include <algorithm>

namespace nk {

namespace {

std::size_t index(BlockingPool::Lane lane) { return static_cast<std::size_t>(lane); }

BlockingPool::Options unbounded(std::size_t threads) {
    BlockingPool::Options o;
    o.threads = threads;
    return o;
}

}  // namespace

BlockingPool::BlockingPool(std::size_t threads) : BlockingPool(unbounded(threads)) {}

BlockingPool::BlockingPool(const Options& options)
    : options_(options),
      password_cap_(options.password_threads == 0
                        ? std::max<std::size_t>(1, options.threads)
                        : std::min(options.password_threads, std::max<std::size_t>(1, options.threads))) {
    const std::size_t threads = std::max<std::size_t>(1, options.threads);
    threads_.reserve(threads);
    live_ = threads;
    for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

BlockingPool::~BlockingPool() { stop(); }

bool BlockingPool::post(std::function<void()> task) {
    Job job;
    job.run = std::move(task);
    return post(std::move(job)) == Posted::accepted;
}

BlockingPool::Posted BlockingPool::post(Job job) {
    std::vector<Job> dropped;
    Posted result = Posted::accepted;
    {
        std::lock_guard lock(mutex_);
        auto over = [&]() -> Posted {
            const std::size_t queued = queues_[0].size() + queues_[1].size();
            if (options_.max_queued != 0 && queued >= options_.max_queued) return Posted::queue_full;
            // A job bigger than the whole budget still runs when nothing else is queued.
            if (options_.max_queued_bytes != 0 && queued != 0 &&
                queued_bytes_ + job.bytes > options_.max_queued_bytes) {
                return Posted::queue_bytes_full;
            }
            return Posted::accepted;
        };
        if (stopping_) {
            result = Posted::stopping;
        } else if ((result = over()) != Posted::accepted) {
            // Work whose client has gone must not make live work wait or be refused.
            take_abandoned(dropped);
            result = over();
        }
        if (result == Posted::accepted) {
            queued_bytes_ += job.bytes;
            const std::size_t lane = index(job.lane);
            queues_[lane].push_back(Entry{std::move(job), next_seq_++});
            report_queued(lane);
        }
    }
    if (result == Posted::accepted) cv_.notify_one();
    for (auto& d : dropped)
        if (d.on_drop) d.on_drop();
    return result;
}

std::size_t BlockingPool::queued(Lane lane) const {
    std::lock_guard lock(mutex_);
    return queues_[index(lane)].size();
}

void BlockingPool::stop() {
    {
        std::lock_guard lock(mutex_);
        if (stopping_ && threads_.empty()) return;
        stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_)
        if (t.joinable() && t.get_id() != std::this_thread::get_id()) t.join();
    std::lock_guard lock(mutex_);
    threads_.clear();
}

std::size_t BlockingPool::stop_within(std::chrono::milliseconds wait) {
    {
        std::unique_lock lock(mutex_);
        stopping_ = true;
        cv_.notify_all();
        if (!exited_cv_.wait_for(lock, wait, [&] { return live_ == 0; })) return live_;
    }
    stop();  // every worker returned: joins at once
    return 0;
}

void BlockingPool::unqueue(const Job& job) { queued_bytes_ -= job.bytes; }

void BlockingPool::report_queued(std::size_t lane) const {
    if (options_.queued_changed)
        options_.queued_changed(static_cast<Lane>(lane), queues_[lane].size());
}

void BlockingPool::take_abandoned(std::vector<Job>& dropped) {
    for (std::size_t lane = 0; lane < kLanes; ++lane) {
        auto& q = queues_[lane];
        const std::size_t before = q.size();
        for (auto it = q.begin(); it != q.end();) {
            if (it->job.abandoned && it->job.abandoned()) {
                unqueue(it->job);
                dropped.push_back(std::move(it->job));
                it = q.erase(it);
            } else {
                ++it;
            }
        }
        if (q.size() != before) report_queued(lane);
    }
}

std::deque<BlockingPool::Entry>* BlockingPool::next_queue() {
    auto& general = queues_[index(Lane::general)];
    auto& password = queues_[index(Lane::password)];
    const bool password_may_run = !password.empty() && password_running_ < password_cap_;
    if (password_may_run && (general.empty() || password.front().seq < general.front().seq))
        return &password;
    if (!general.empty()) return &general;
    return nullptr;
}

void BlockingPool::run() {
    for (;;) {
        Job job;
        bool drop = false;
        {
            std::unique_lock lock(mutex_);
            std::deque<Entry>* q = nullptr;
            cv_.wait(lock, [&] {
                q = next_queue();
                return q != nullptr ||
                       (stopping_ && queues_[0].empty() && queues_[1].empty());
            });
            if (q == nullptr) {  // stopping and drained
                --live_;
                exited_cv_.notify_all();
                return;
            }
            job = std::move(q->front().job);
            q->pop_front();
            report_queued(static_cast<std::size_t>(q - queues_));
            unqueue(job);
            drop = job.abandoned && job.abandoned();
            if (!drop && job.lane == Lane::password) ++password_running_;
        }
        if (drop) {
            if (job.on_drop) job.on_drop();
            continue;
        }
        job.run();
        if (job.lane == Lane::password) {
            {
                std::lock_guard lock(mutex_);
                --password_running_;
            }
            // A worker may be waiting only because the cap was reached.
            cv_.notify_all();
        }
    }
}

}  // namespace nk
