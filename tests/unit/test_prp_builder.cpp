// SPDX-License-Identifier: MIT
// NVMe PRPs against the rules: PRP1, PRP2 or a chained list, and the page
// boundaries a PRP layout needs.
#include <gtest/gtest.h>

#include <vector>

#include "dma/prp_builder.hpp"

namespace vfioq::dma {
namespace {

constexpr uint64_t kPage = 4096;

class PrpTest : public ::testing::Test {
protected:
    static constexpr uint64_t kPoolIova = 0x9000000;
    PrpTest() : memory_(16 * kSglPageSize), pool_(memory_.data(), kPoolIova, 16) {}
    // Reads the PRP list back as the controller would: every page address after PRP1.
    std::vector<uint64_t> walk(const PrpResult& r, uint64_t entries) {
        std::vector<uint64_t> out{r.prp1};
        if (entries == 2) out.push_back(r.prp2);
        if (entries <= 2) return out;
        uint64_t list = r.prp2;
        for (uint64_t left = entries - 1; left > 0;) {
            const auto* e = reinterpret_cast<const uint64_t*>(memory_.data() + (list - kPoolIova));
            for (uint32_t i = 0; i < 512 && left > 0; ++i) {
                if (i == 511 && left > 1) {
                    list = e[i];
                    break;
                }
                out.push_back(e[i]);
                --left;
            }
        }
        return out;
    }
    std::vector<std::byte> memory_;
    SglPagePool pool_;
};

TEST_F(PrpTest, OneAndTwoPagesNeedNoList) {
    const DmaSegment one[] = {{0x100010, 100}};
    auto r = build_prp(one, 1 << 20, pool_);
    ASSERT_EQ(r.error, SglError::kNone);
    EXPECT_EQ(r.prp1, 0x100010u);
    EXPECT_EQ(r.prp2, 0u);
    const DmaSegment two[] = {{0x100800, 0x1000}};  // crosses one page boundary
    r = build_prp(two, 1 << 20, pool_);
    EXPECT_EQ(r.prp2, 0x101000u);
    EXPECT_EQ(r.first_page, -1);
}

TEST_F(PrpTest, LongTransfersChainListPages) {
    // 600 pages from scattered segments: 599 listed entries need two list pages.
    std::vector<DmaSegment> segs;
    segs.push_back({0x1000200, kPage - 0x200});
    for (uint64_t i = 1; i < 600; ++i) segs.push_back({0x2000000 + i * 2 * kPage, kPage});
    auto r = build_prp(segs, 1 << 30, pool_);
    ASSERT_EQ(r.error, SglError::kNone);
    EXPECT_EQ(pool_.free_pages(), 14u);
    auto got = walk(r, 600);
    ASSERT_EQ(got.size(), 600u);
    EXPECT_EQ(got[0], 0x1000200u);
    for (uint64_t i = 1; i < 600; ++i) ASSERT_EQ(got[i], 0x2000000 + i * 2 * kPage) << i;
    pool_.give_chain(r.first_page);
    EXPECT_EQ(pool_.free_pages(), 16u);
}

TEST_F(PrpTest, LayoutsPrpsCannotExpressAreRefused) {
    const DmaSegment mid_start[] = {{0x100000, kPage}, {0x200010, 100}};
    EXPECT_EQ(build_prp(mid_start, 1 << 20, pool_).error, SglError::kNotPageAligned);
    const DmaSegment short_end[] = {{0x100000, 100}, {0x200000, 100}};
    auto r = build_prp(short_end, 1 << 20, pool_);
    EXPECT_EQ(r.error, SglError::kNotPageAligned);
    EXPECT_EQ(r.segment, 0u);
    const DmaSegment odd[] = {{0x100001, 100}};
    EXPECT_EQ(build_prp(odd, 1 << 20, pool_).error, SglError::kMisaligned);
    const DmaSegment big[] = {{0x100000, 2 << 20}};
    EXPECT_EQ(build_prp(big, 1 << 20, pool_).error, SglError::kTooLong);
    EXPECT_EQ(pool_.free_pages(), 16u);
}

TEST_F(PrpTest, WithoutAnIommuEveryEntryIsThePhysicalPage) {
    BusAddressMap bus;
    constexpr uint64_t base = BusAddressMap::kBase;
    std::vector<uint64_t> physical;
    for (uint64_t i = 0; i < 40; ++i) physical.push_back(0x80000000 - i * 5 * kPage);  // scattered, descending
    ASSERT_TRUE(bus.set(base, physical));
    // 2 pages from an offset, then 30 whole pages elsewhere in the handle space.
    const DmaSegment segs[] = {{base + 0x208, 2 * kPage - 0x208}, {base + 8 * kPage, 30 * kPage}};
    auto r = build_prp(segs, 1 << 20, pool_, &bus);
    ASSERT_EQ(r.error, SglError::kNone);
    const auto got = walk(r, 32);
    ASSERT_EQ(got.size(), 32u);
    EXPECT_EQ(got[0], physical[0] + 0x208) << "PRP1 keeps the offset in its page";
    EXPECT_EQ(got[1], physical[1]);
    for (uint64_t i = 0; i < 30; ++i) ASSERT_EQ(got[2 + i], physical[8 + i]) << i;
    pool_.give_chain(r.first_page);
    const DmaSegment unmapped[] = {{base + 39 * kPage, 2 * kPage}};
    r = build_prp(unmapped, 1 << 20, pool_, &bus);
    EXPECT_EQ(r.error, SglError::kNotMapped) << "the second page is past the map";
    EXPECT_EQ(pool_.free_pages(), 16u);
}

}  // namespace
}  // namespace vfioq::dma
