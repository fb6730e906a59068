// SPDX-License-Identifier: MIT
// The last range a DMA context keeps held, so that registering the same buffer
// again takes no lock: its word on its own, then through DmaContext with threads
// registering while others unregister, flush, translate and read the statistics
// (this suite runs under ThreadSanitizer too).
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "../support/fake_transport.hpp"
#include "dma/last_range_hold.hpp"
#include "vfioq/dma.hpp"

namespace vfioq {
namespace {

TEST(LastRangeHold, HitsOnlyTheRangeKeptAndOnlyWhileItIsNotChanging) {
    dma::LastRangeHold h;
    char mem[64] = {};
    uint64_t iova = 0;
    EXPECT_FALSE(h.try_hold(mem, 64, iova)) << "nothing kept yet";
    ASSERT_TRUE(h.begin_change());
    EXPECT_FALSE(h.try_hold(mem, 64, iova)) << "no hit while the range changes";
    int entry = 0;
    h.end_change(mem, 64, 0x1000, &entry);
    EXPECT_FALSE(h.try_hold(mem, 63, iova)) << "another length";
    EXPECT_FALSE(h.try_hold(mem + 1, 63, iova)) << "another start";
    ASSERT_TRUE(h.try_hold(mem, 64, iova));
    EXPECT_EQ(iova, 0x1000u);
    ASSERT_TRUE(h.try_hold(mem, 64, iova));
    EXPECT_EQ(h.holds_now(), 2u);
    EXPECT_FALSE(h.begin_change()) << "a held range is not changed";
    EXPECT_FALSE(h.release());
    EXPECT_FALSE(h.release());
    EXPECT_EQ(h.take_hits(), 2u);
    EXPECT_EQ(h.take_hits(), 0u) << "hits are counted out once";
    ASSERT_TRUE(h.begin_change());
    EXPECT_EQ(h.entry(), &entry);
    h.end_change(nullptr, 0, 0, nullptr);
    EXPECT_FALSE(h.try_hold(mem, 64, iova));
}

// Keeps [p, p + len) as the last range and takes one hold on it.
void keep_and_hold(dma::LastRangeHold& h, const void* p, size_t len) {
    ASSERT_TRUE(h.begin_change());
    h.end_change(p, len, 0, nullptr);
    uint64_t iova = 0;
    ASSERT_TRUE(h.try_hold(p, len, iova));
}

TEST(LastRangeHold, AStateOrphanedWhileHeldIsFreedByTheLastRelease) {
    dma::LastRangeHold h;
    char mem[8] = {};
    uint64_t iova = 0;
    keep_and_hold(h, mem, sizeof(mem));
    ASSERT_TRUE(h.try_hold(mem, 8, iova));
    EXPECT_FALSE(h.orphan()) << "held: the last release frees";
    EXPECT_FALSE(h.try_hold(mem, 8, iova)) << "no hit once orphaned";
    EXPECT_FALSE(h.release());
    EXPECT_TRUE(h.release());
    dma::LastRangeHold unheld;
    EXPECT_TRUE(unheld.orphan());
}

TEST(LastRangeHold, AClosedRangeIsNotHitButItsHoldsAreReleased) {
    dma::LastRangeHold h;
    char mem[8] = {};
    uint64_t iova = 0;
    keep_and_hold(h, mem, sizeof(mem));
    h.close();
    EXPECT_FALSE(h.try_hold(mem, 8, iova));
    EXPECT_FALSE(h.release());
    EXPECT_EQ(h.holds_now(), 0u);
}

TEST(DmaContextLastRange, RegisteringTheSameBufferAgainIsAHitCountedOnce) {
    test::FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    std::vector<std::byte> mem(3 * 4096);
    for (int i = 0; i < 10; ++i) {
        auto r = ctx.register_memory(mem.data() + 100, 5000);
        ASSERT_TRUE(r) << r.error().message;
        EXPECT_EQ(r->iova_of(mem.data() + 100), *ctx.translate(mem.data() + 100, 5000));
    }
    const auto s = ctx.stats();
    EXPECT_EQ(s.cache_misses, 1u);
    EXPECT_EQ(s.cache_hits, 9u) << "the context's own hold is not an application's hit";
    EXPECT_EQ(s.registered_mappings, 1u);
}

TEST(DmaContextLastRange, MemoryNoRegistrationNamesIsNotReachableThroughTheContextsOwnHold) {
    test::FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    std::vector<std::byte> mem(2 * 4096);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(ctx.register_memory(mem.data(), 4096));  // kept as the last range
    auto held = ctx.register_memory(mem.data(), 4096);
    ASSERT_TRUE(held);
    EXPECT_TRUE(ctx.translate(mem.data(), 4096)) << "held by the application";
    *held = Registration{};
    auto gone = ctx.translate(mem.data(), 4096);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, EFAULT);
    // And it can be unregistered at once: the context lets go of its own hold.
    EXPECT_TRUE(ctx.unregister(mem.data(), 4096));
    EXPECT_EQ(ctx.stats().registered_mappings, 0u);
    EXPECT_TRUE(t.mapped.empty());
}

TEST(DmaContextLastRange, AHeldLastRangeIsBusyToUnregisterAndGoneAfterClose) {
    test::FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    std::vector<std::byte> mem(4096);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(ctx.register_memory(mem.data(), mem.size()));
    auto fast = ctx.register_memory(mem.data(), mem.size());
    ASSERT_TRUE(fast);
    EXPECT_EQ(ctx.unregister(mem.data(), mem.size()).error().code, EBUSY);
    ctx.detach();
    auto after = ctx.register_memory(mem.data(), mem.size());
    ASSERT_FALSE(after) << "a closed device hands out no hold, kept range or not";
    EXPECT_EQ(after.error().code, ENODEV);
}

TEST(DmaContextLastRange, AHoldOnTheLastRangeMayOutliveTheContext) {
    auto t = std::make_unique<test::FakeTransport>(false);
    auto ctx = std::make_unique<DmaContext>(*t, "fake-card");
    std::vector<std::byte> mem(4096);
    for (int i = 0; i < 2; ++i) ASSERT_TRUE(ctx->register_memory(mem.data(), mem.size()));
    auto fast = ctx->register_memory(mem.data(), mem.size());
    ASSERT_TRUE(fast);
    ctx.reset();  // the state stays until the hold goes (the address sanitizer checks the rest)
    t.reset();
    EXPECT_TRUE(static_cast<bool>(*fast));
    *fast = Registration{};
}

TEST(DmaContextLastRange, ThreadsRegisteringOneBufferWhileOthersUnregisterFlushAndTranslate) {
    test::FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    // Both threads register one page; the one unregistered is pages apart, so that no mapping merges
    // with another (a merged mapping has an IOVA of its own).
    std::vector<std::byte> mem(8 * 4096);
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> registered{0}, wrong{0};
    std::vector<std::thread> threads;
    for (int k = 0; k < 2; ++k)
        threads.emplace_back([&] {
            std::byte* p = mem.data();
            while (!stop.load(std::memory_order_relaxed)) {
                auto r = ctx.register_memory(p, 4096);
                if (!r) continue;  // EBUSY-free: only a closed device refuses, and it is not closed
                registered.fetch_add(1, std::memory_order_relaxed);
                auto iova = ctx.translate(p, 4096);
                if (!iova || *iova != r->iova_of(p)) wrong.fetch_add(1, std::memory_order_relaxed);
            }
        });
    threads.emplace_back([&] {
        while (!stop.load(std::memory_order_relaxed)) {
            (void)ctx.unregister(mem.data() + 6 * 4096, 4096);  // a range nobody holds: lets the last range go
            ctx.flush();
            (void)ctx.stats();
            std::this_thread::yield();
        }
    });
    while (registered.load() < 20000) std::this_thread::yield();
    stop.store(true);
    for (auto& th : threads) th.join();
    EXPECT_EQ(wrong.load(), 0u) << "a registration held memory the context did not translate to its IOVA";
    const auto s = ctx.stats();
    EXPECT_EQ(s.cache_hits + s.cache_misses, registered.load()) << "every registration is a hit or a miss, once";
    // Nothing held: the memory is unreachable and every mapping can go.
    EXPECT_FALSE(ctx.translate(mem.data(), 4096));
    ctx.flush();
    EXPECT_EQ(ctx.stats().registered_mappings, 0u);
}

}  // namespace
}  // namespace vfioq
