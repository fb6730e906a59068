// SPDX-License-Identifier: MIT
// The SGL builder against a simple reference: decode what it wrote by the
// spec's rules and compare with the input's merged segments.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "dma/sgl_builder.hpp"

namespace vfioq::dma {
namespace {

using sgq::SglDescriptor;

class SglTest : public ::testing::Test {
protected:
    static constexpr uint32_t kPages = 64;
    static constexpr uint64_t kPoolIova = 0x7000000;
    SglTest() : memory_(kPages * kSglPageSize), pool_(memory_.data(), kPoolIova, kPages) {}

    // The spec's walk (3.2): every DATA descriptor in order; fails the test on a rule broken.
    std::vector<DmaSegment> decode(const SglDescriptor& d1, const SglDescriptor& d2) {
        std::vector<DmaSegment> out;
        auto walk = [&](SglDescriptor p) {
            for (int guard = 0; guard < 1000; ++guard) {
                EXPECT_EQ(p.addr % 16, 0u);
                EXPECT_EQ(p.len % 16, 0u);
                EXPECT_GT(p.len, 0u);
                const int32_t page = pool_.page_of(p.addr);
                EXPECT_GE(page, 0) << "segment array outside the pool";
                if (page < 0) return;
                EXPECT_LE(p.addr - kPoolIova + p.len, uint64_t{kPages} * kSglPageSize);
                const SglDescriptor* arr = reinterpret_cast<const SglDescriptor*>(
                    memory_.data() + (p.addr - kPoolIova));
                const uint32_t n = p.len / 16;
                const bool last_array = p.kind() == sgq::kSglLastSegment;
                std::optional<SglDescriptor> next;
                for (uint32_t i = 0; i < n; ++i) {
                    if (arr[i].kind() == sgq::kSglData) {
                        out.push_back({arr[i].addr, arr[i].len});
                    } else {
                        EXPECT_FALSE(last_array) << "a LAST_SEGMENT array holds DATA only";
                        EXPECT_EQ(i + 1, n) << "only the last descriptor of a SEGMENT array may chain";
                        next = arr[i];
                    }
                }
                if (!next) return;
                p = *next;
            }
            ADD_FAILURE() << "chain does not end";
        };
        if (d1.kind() == sgq::kSglData) {
            out.push_back({d1.addr, d1.len});
            if (d2.unused()) return out;
            if (d2.kind() == sgq::kSglData)
                out.push_back({d2.addr, d2.len});
            else
                walk(d2);
        } else {
            EXPECT_TRUE(d2.unused());
            walk(d1);
        }
        return out;
    }

    static std::vector<DmaSegment> reference_merge(const std::vector<DmaSegment>& in) {
        std::vector<DmaSegment> out;
        for (const auto& s : in) {
            if (!out.empty() && out.back().iova + out.back().len == s.iova && out.back().len + s.len <= UINT32_MAX)
                out.back().len += s.len;
            else
                out.push_back(s);
        }
        return out;
    }

    std::vector<std::byte> memory_;
    SglPagePool pool_;
};

TEST_F(SglTest, OneAndTwoSegmentsGoInline) {
    SglDescriptor d1{}, d2{};
    const DmaSegment one[] = {{0x10000, 100}};
    auto r = build_sgl(one, {}, pool_, d1, d2);
    ASSERT_EQ(r.error, SglError::kNone);
    EXPECT_EQ(r.first_page, -1);
    EXPECT_EQ(d1.kind(), sgq::kSglData);
    EXPECT_TRUE(d2.unused());
    const DmaSegment two[] = {{0x10000, 100}, {0x20000, 50}};
    r = build_sgl(two, {}, pool_, d1, d2);
    ASSERT_EQ(r.error, SglError::kNone);
    EXPECT_EQ(d2.kind(), sgq::kSglData);
    EXPECT_EQ(d2.len, 50u);
    EXPECT_EQ(r.total, 150u);
    EXPECT_EQ(pool_.free_pages(), kPages);
}

TEST_F(SglTest, ContiguousNeighboursMerge) {
    SglDescriptor d1{}, d2{};
    const DmaSegment segs[] = {{0x10000, 0x100}, {0x10100, 0x100}, {0x10200, 0x10}, {0x30000, 8}};
    auto r = build_sgl(segs, {}, pool_, d1, d2);
    ASSERT_EQ(r.error, SglError::kNone);
    EXPECT_EQ(r.descriptors, 2u);
    EXPECT_EQ(d1.len, 0x210u);
    EXPECT_EQ(d2.addr, 0x30000u);
}

TEST_F(SglTest, LimitsAreRefusedWithTheSegmentNamed) {
    SglDescriptor d1{}, d2{};
    const SglLimits limits{.max_sge = 4, .sge_align_log2 = 2, .max_xfer_log2 = 12};
    const DmaSegment misaligned[] = {{0x10000, 16}, {0x20002, 16}};
    auto r = build_sgl(misaligned, limits, pool_, d1, d2);
    EXPECT_EQ(r.error, SglError::kMisaligned);
    EXPECT_EQ(r.segment, 1u);
    EXPECT_NE(describe(r, misaligned, limits).find("segment 1 (IOVA 0x20002, 16 bytes)"), std::string::npos);
    const DmaSegment too_long[] = {{0x10000, 4096}, {0x20000, 4}};
    r = build_sgl(too_long, limits, pool_, d1, d2);
    EXPECT_EQ(r.error, SglError::kTooLong);
    EXPECT_NE(describe(r, too_long, limits).find("MAX_XFER"), std::string::npos);
    std::vector<DmaSegment> many;
    for (uint64_t i = 0; i < 5; ++i) many.push_back({0x10000 + i * 0x100, 4});
    r = build_sgl(many, limits, pool_, d1, d2);
    EXPECT_EQ(r.error, SglError::kTooManyDescriptors);
    EXPECT_NE(describe(r, many, limits).find("MAX_SGE"), std::string::npos);
    const DmaSegment empty[] = {{0x10000, 0}};
    EXPECT_EQ(build_sgl(empty, limits, pool_, d1, d2).error, SglError::kZeroLength);
    EXPECT_EQ(build_sgl({}, limits, pool_, d1, d2).error, SglError::kEmpty);
    EXPECT_EQ(pool_.free_pages(), kPages) << "a refused request keeps no pages";
}

TEST_F(SglTest, PagePoolExhaustionIsBackPressureAndPagesComeBack) {
    SglDescriptor d1{}, d2{};
    std::vector<DmaSegment> segs;
    for (uint64_t i = 0; i < 1000; ++i) segs.push_back({0x100000 + i * 0x1000, 512});
    const SglLimits limits{.max_sge = 1024, .sge_align_log2 = 0, .max_xfer_log2 = 24};
    std::vector<int32_t> chains;
    for (;;) {
        auto r = build_sgl(segs, limits, pool_, d1, d2);
        if (r.error == SglError::kNoPages) break;
        ASSERT_EQ(r.error, SglError::kNone);
        chains.push_back(r.first_page);
    }
    EXPECT_EQ(chains.size(), kPages / 4);  // 999 in pages: 4 pages each
    for (int32_t c : chains) pool_.give_chain(c);
    EXPECT_EQ(pool_.free_pages(), kPages);
}

TEST_F(SglTest, ThousandsOfRandomShapesDecodeToTheirMergedSegments) {
    std::mt19937_64 rng(42);
    for (int iter = 0; iter < 4000; ++iter) {
        const uint32_t align_log2 = static_cast<uint32_t>(rng() % 4);
        const uint64_t align = 1ull << align_log2;
        const SglLimits limits{.max_sge = 1 + static_cast<uint32_t>(rng() % 1200), .sge_align_log2 = align_log2,
                               .max_xfer_log2 = 24, .inline_descriptors = 1 + static_cast<uint32_t>(iter % 2)};
        const uint32_t n = 1 + static_cast<uint32_t>(rng() % 1100);
        std::vector<DmaSegment> segs;
        uint64_t at = 0x100000 + (rng() % 64) * align;
        for (uint32_t i = 0; i < n; ++i) {
            const uint64_t len = (1 + rng() % 300) * align;
            segs.push_back({at, len});
            at += len + (rng() % 3 == 0 ? 0 : (1 + rng() % 50) * align);  // a third are contiguous
        }
        SglDescriptor d1{}, d2{};
        auto r = build_sgl(segs, limits, pool_, d1, d2);
        const auto want = reference_merge(segs);
        if (want.size() > limits.max_sge) {
            ASSERT_EQ(r.error, SglError::kTooManyDescriptors) << "iteration " << iter;
            continue;
        }
        ASSERT_EQ(r.error, SglError::kNone) << "iteration " << iter << ": " << describe(r, segs, limits);
        ASSERT_EQ(r.descriptors, want.size());
        if (limits.inline_descriptors == 1) {
            ASSERT_TRUE(d2.unused()) << "NVMe has one SGL descriptor inline";
        }
        const auto got = decode(d1, d2);
        ASSERT_EQ(got.size(), want.size()) << "iteration " << iter;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_EQ(got[i].iova, want[i].iova) << "iteration " << iter << " descriptor " << i;
            ASSERT_EQ(got[i].len, want[i].len) << "iteration " << iter << " descriptor " << i;
        }
        pool_.give_chain(r.first_page);
        ASSERT_EQ(pool_.free_pages(), kPages);
    }
}

}  // namespace
}  // namespace vfioq::dma
