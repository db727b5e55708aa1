#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include "core/blocking_pool.hpp"

TEST_CASE("blocking pool runs every posted task before stop returns") {
    std::atomic<int> ran{0};
    nk::BlockingPool pool(4);
    std::vector<std::thread> producers;
    for (int p = 0; p < 4; ++p)
        producers.emplace_back([&] {
            for (int i = 0; i < 1000; ++i) CHECK(pool.post([&] { ran.fetch_add(1); }));
        });
    for (auto& t : producers) t.join();
    pool.stop();
    CHECK(ran.load() == 4000);
    CHECK_FALSE(pool.post([] {}));
}
