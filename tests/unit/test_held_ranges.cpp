// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include "dma/held_ranges.hpp"

namespace vfioq::dma {
namespace {

TEST(HeldRanges, ABytesIsHeldWhileSomeHoldNamesIt) {
    HeldRanges h;
    EXPECT_FALSE(h.covers(100, 101));
    h.add(100, 200);
    EXPECT_TRUE(h.covers(100, 200));
    EXPECT_TRUE(h.covers(150, 151));
    EXPECT_FALSE(h.covers(99, 150));
    EXPECT_FALSE(h.covers(150, 201));
    EXPECT_FALSE(h.covers(200, 300));
    EXPECT_EQ(h.first_unheld(150, 300), 200u);
    EXPECT_EQ(h.first_unheld(50, 300), 50u);
    EXPECT_EQ(h.first_unheld(120, 180), 180u);
}

TEST(HeldRanges, NeighbouringAndOverlappingHoldsAreCountedApart) {
    HeldRanges h;
    h.add(100, 200);
    h.add(200, 300);  // a neighbour: together they cover the span
    h.add(150, 250);  // overlapping both
    EXPECT_TRUE(h.covers(100, 300));
    EXPECT_EQ(h.most_holds(100, 300), 2u);
    EXPECT_EQ(h.most_holds(100, 150), 1u);
    EXPECT_EQ(h.most_holds(300, 400), 0u);
    h.remove(100, 200);
    EXPECT_EQ(h.first_unheld(100, 300), 100u);
    EXPECT_TRUE(h.covers(150, 300));
    h.remove(150, 250);
    EXPECT_EQ(h.first_unheld(150, 300), 150u);
    EXPECT_TRUE(h.covers(200, 300));
    h.remove(200, 300);
    EXPECT_FALSE(h.covers(200, 201));
    EXPECT_EQ(h.boundaries(), 0u) << "nothing is left behind once every hold is gone";
}

TEST(HeldRanges, TheSameRangeHeldTwiceStaysHeldUntilBothGo) {
    HeldRanges h;
    h.add(0x1000, 0x2000);
    h.add(0x1000, 0x2000);
    EXPECT_EQ(h.boundaries(), 2u);
    h.remove(0x1000, 0x2000);
    EXPECT_TRUE(h.covers(0x1000, 0x2000));
    h.remove(0x1000, 0x2000);
    EXPECT_FALSE(h.covers(0x1000, 0x1001));
    EXPECT_EQ(h.boundaries(), 0u);
}

TEST(HeldRanges, HoldingTheSameBytesAgainReusesTheirBoundariesAndWhatIsKeptStaysBounded) {
    HeldRanges h;
    h.add(0, 1 << 20);
    h.add(8192, 12288);
    h.remove(8192, 12288);
    EXPECT_EQ(h.boundaries(), 2u);
    const size_t kept = h.boundaries_kept();
    EXPECT_EQ(kept, 4u) << "the sub-range's boundaries wait for its next hold";
    for (int i = 0; i < 1000; ++i) {
        h.add(8192, 12288);
        EXPECT_TRUE(h.covers(0, 1 << 20));
        h.remove(8192, 12288);
    }
    EXPECT_EQ(h.boundaries_kept(), kept);
    // Many ranges held and let go: what says nothing is tidied away as it piles up.
    for (uintptr_t i = 0; i < 10000; ++i) {
        h.add((2 << 20) + i * 64, (2 << 20) + i * 64 + 32);
        h.remove((2 << 20) + i * 64, (2 << 20) + i * 64 + 32);
    }
    EXPECT_EQ(h.boundaries(), 2u);
    EXPECT_LE(h.boundaries_kept(), 130u);
    EXPECT_TRUE(h.covers(0, 1 << 20));
    EXPECT_FALSE(h.covers((2 << 20), (2 << 20) + 1));
    h.remove(0, 1 << 20);
    EXPECT_EQ(h.boundaries(), 0u);
    EXPECT_EQ(h.first_unheld(0, 100), 0u);
}

// The range shifted last keeps the boundaries it found for its next shift. Another range finds
// its own afresh, also an outer one whose inside was split while the inner range was the last;
// and after a tidy, which may erase boundaries, the next shift finds them afresh too.
TEST(HeldRanges, TheRangeShiftedLastCountsWhatWasSplitInsideItAndSurvivesATidy) {
    HeldRanges h;
    h.add(0x1000, 0x5000);
    h.add(0x2000, 0x3000);  // boundaries inside the range shifted before
    h.remove(0x2000, 0x3000);
    h.add(0x1000, 0x5000);
    h.add(0x2000, 0x3000);
    EXPECT_EQ(h.most_holds(0x1000, 0x2000), 2u);
    EXPECT_EQ(h.most_holds(0x2000, 0x3000), 3u);
    EXPECT_EQ(h.most_holds(0x3000, 0x5000), 2u);
    h.remove(0x2000, 0x3000);
    h.remove(0x1000, 0x5000);
    EXPECT_EQ(h.most_holds(0x1000, 0x5000), 1u);
    EXPECT_TRUE(h.covers(0x1000, 0x5000));
    // Enough short holds to tidy, then the same range as before: its boundaries were erased.
    for (uintptr_t i = 0; i < 200; ++i) {
        h.add(0x100000 + i * 64, 0x100000 + i * 64 + 32);
        h.remove(0x100000 + i * 64, 0x100000 + i * 64 + 32);
    }
    h.add(0x100000, 0x100020);
    h.remove(0x100000, 0x100020);
    h.add(0x100000, 0x100020);
    EXPECT_TRUE(h.covers(0x100000, 0x100020));
    EXPECT_FALSE(h.covers(0x100020, 0x100021));
    h.remove(0x100000, 0x100020);
    h.remove(0x1000, 0x5000);
    EXPECT_EQ(h.boundaries(), 0u);
    EXPECT_EQ(h.first_unheld(0x1000, 0x5000), 0x1000u);
}

}  // namespace
}  // namespace vfioq::dma
