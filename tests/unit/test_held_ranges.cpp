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

}  // namespace
}  // namespace vfioq::dma
