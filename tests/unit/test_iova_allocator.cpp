// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include <random>

#include "dma/iova_allocator.hpp"

namespace vfioq::dma {
namespace {

TEST(IovaAllocator, HandsOutAlignedDisjointRangesAboveTheFloor) {
    const IovaRange all{0, ~0ull};
    IovaAllocator a({&all, 1});
    auto x = a.allocate(0x3000, 0x1000);
    auto y = a.allocate(0x1000, 0x200000);
    ASSERT_TRUE(x && y);
    EXPECT_GE(*x, 1u << 16);
    EXPECT_EQ(*x % 0x1000, 0u);
    EXPECT_EQ(*y % 0x200000, 0u);
    EXPECT_TRUE(*x + 0x3000 <= *y || *y + 0x1000 <= *x);
}

TEST(IovaAllocator, FreedSpaceIsMergedAndReused) {
    const IovaRange r{0x100000, 0x10FFFF};  // 64 KiB
    IovaAllocator a({&r, 1});
    std::vector<uint64_t> got;
    for (int i = 0; i < 16; ++i) {
        auto x = a.allocate(0x1000, 0x1000);
        ASSERT_TRUE(x);
        got.push_back(*x);
    }
    auto full = a.allocate(0x1000, 0x1000);
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error().code, ENOSPC);
    // Free every other page, then the rest: the space must come back as one range.
    for (size_t i = 0; i < got.size(); i += 2) a.free(got[i], 0x1000);
    EXPECT_EQ(a.free_ranges(), 8u);
    EXPECT_FALSE(a.allocate(0x2000, 0x1000));  // fragmented: no two neighbours free
    for (size_t i = 1; i < got.size(); i += 2) a.free(got[i], 0x1000);
    EXPECT_EQ(a.free_ranges(), 1u);
    EXPECT_EQ(a.free_bytes(), 0x10000u);
    auto whole = a.allocate(0x10000, 0x1000);
    ASSERT_TRUE(whole);
    EXPECT_EQ(*whole, 0x100000u);
}

TEST(IovaAllocator, UsesEveryReportedRangeAndSkipsHoles) {
    const IovaRange ranges[] = {{0x0, 0xFEDFFFFF}, {0xFEF00000, 0xFFFFFFFFFFFF}};  // the x86 MSI hole
    IovaAllocator a(ranges);
    auto big = a.allocate(0xFEE00000 - 0x10000, 0x1000);  // everything below the hole
    ASSERT_TRUE(big);
    auto next = a.allocate(0x1000, 0x1000);
    ASSERT_TRUE(next);
    EXPECT_GE(*next, 0xFEF00000u) << "must not land in the hole";
}

TEST(IovaAllocator, RejectsBadRequests) {
    const IovaRange all{0, ~0ull};
    IovaAllocator a({&all, 1});
    EXPECT_EQ(a.allocate(0, 0x1000).error().code, EINVAL);
    EXPECT_EQ(a.allocate(0x1000, 0x1800).error().code, EINVAL);  // not a power of two
}

TEST(IovaAllocator, RandomAllocateFreeKeepsTheBooksStraight) {
    const IovaRange r{0x10000, 0x10000 + (64ull << 20) - 1};
    IovaAllocator a({&r, 1});
    const uint64_t total = a.free_bytes();
    std::mt19937_64 rng(7);
    std::vector<std::pair<uint64_t, uint64_t>> live;
    for (int i = 0; i < 5000; ++i) {
        if (live.empty() || rng() % 3 != 0) {
            const uint64_t size = (1 + rng() % 64) * 0x1000;
            if (auto x = a.allocate(size, 0x1000 << (rng() % 4))) {
                for (auto& [s, n] : live) ASSERT_TRUE(*x + size <= s || s + n <= *x) << "overlap";
                live.emplace_back(*x, size);
            }
        } else {
            const size_t k = rng() % live.size();
            a.free(live[k].first, live[k].second);
            live.erase(live.begin() + static_cast<long>(k));
        }
    }
    for (auto& [s, n] : live) a.free(s, n);
    EXPECT_EQ(a.free_bytes(), total);
    EXPECT_EQ(a.free_ranges(), 1u);
}

}  // namespace
}  // namespace vfioq::dma
