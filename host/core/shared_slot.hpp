// SharedSlot<T>: one replaceable std::shared_ptr<const T>, read and replaced from any thread.
//
// libstdc++ 12's std::atomic<std::shared_ptr> guards its pointer with a lock bit that
// ThreadSanitizer does not model, so every concurrent store/load pair is reported as a race.
// A plain mutex held for the copy of one shared_ptr costs about the same (one uncontended
// lock and one reference-count increment) and is understood by every tool. Readers that care
// avoid even that by caching the value and watching a generation counter.
#pragma once

#include <memory>
#include <mutex>
#include <utility>

namespace nk {

template <class T>
class SharedSlot {
  public:
    std::shared_ptr<const T> load() const {
        std::lock_guard lock(mutex_);
        return value_;
    }
    void store(std::shared_ptr<const T> next) {
        std::lock_guard lock(mutex_);
        value_.swap(next);  // the old value is released outside the lock (by `next`)
    }

  private:
    mutable std::mutex mutex_;
    std::shared_ptr<const T> value_;
};

}  // namespace nk
