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
                const uint64_t in_page = p.addr - pool_.page_address(static_cast<uint32_t>(page));
                EXPECT_LE(in_page + p.len, kSglPageSize) << "a segment array stays in its page";
                const SglDescriptor* arr = reinterpret_cast<const SglDescriptor*>(
                    reinterpret_cast<const std::byte*>(pool_.page(static_cast<uint32_t>(page))) + in_page);
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

    // The build succeeded and decodes to `want`, descriptor by descriptor; its pages go back.
    void expect_built(const SglResult& r, const SglDescriptor& d1, const SglDescriptor& d2,
                      const std::vector<DmaSegment>& segs, const SglLimits& limits, const std::vector<DmaSegment>& want,
                      int iter) {
        ASSERT_EQ(r.error, SglError::kNone) << "iteration " << iter << ": " << describe(r, segs, limits);
        ASSERT_EQ(r.descriptors, want.size()) << "iteration " << iter;
        const auto got = decode(d1, d2);
        ASSERT_EQ(got.size(), want.size()) << "iteration " << iter;
        for (size_t i = 0; i < got.size(); ++i) {
            ASSERT_EQ(got[i].iova, want[i].iova) << "iteration " << iter << " descriptor " << i;
            ASSERT_EQ(got[i].len, want[i].len) << "iteration " << iter << " descriptor " << i;
        }
        pool_.give_chain(r.first_page);
        ASSERT_EQ(pool_.free_pages(), kPages);
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

// No-IOMMU mode: IOVAs are handles whose pages sit at scattered physical
// addresses, some runs of them contiguous. The pool's own pages are scattered too.
class PhysicalSglTest : public SglTest {
protected:
    static constexpr uint64_t kHandlePages = 512;
    static constexpr uint64_t kData = BusAddressMap::kBase;                        // data handles
    static constexpr uint64_t kPool = BusAddressMap::kBase + (uint64_t{1} << 30);  // the pool's handles

    PhysicalSglTest() {
        std::mt19937_64 rng(7);
        std::vector<uint64_t> pages;
        uint64_t phys = 0x40000000;
        while (pages.size() < kHandlePages) {
            // Runs of 1 to 8 contiguous pages, each run somewhere else.
            const uint64_t run = 1 + rng() % 8;
            phys += (2 + rng() % 100) * kSglPageSize;
            for (uint64_t i = 0; i < run && pages.size() < kHandlePages; ++i, phys += kSglPageSize) pages.push_back(phys);
            if (rng() % 4 == 0) phys -= (200 + rng() % 100) * kSglPageSize;  // and some go backwards
        }
        physical_ = pages;
        EXPECT_TRUE(bus_.set(kData, pages));
        std::vector<uint64_t> pool_pages;
        for (uint32_t i = 0; i < kPages; ++i) pool_pages.push_back(0x200000000 + (kPages - i) * 3 * kSglPageSize);
        EXPECT_TRUE(bus_.set(kPool, pool_pages));
        pool_ = SglPagePool(memory_.data(), kPool, kPages, &bus_);
    }

    // The reference: every byte's physical address, page by page, merged where contiguous.
    std::vector<DmaSegment> reference_physical(const std::vector<DmaSegment>& in) const {
        std::vector<DmaSegment> pieces;
        for (const auto& s : in) {
            for (uint64_t at = s.iova; at < s.iova + s.len;) {
                const uint64_t page = (at - kData) / kSglPageSize, off = (at - kData) % kSglPageSize;
                const uint64_t len = std::min(kSglPageSize - off, s.iova + s.len - at);
                pieces.push_back({physical_[page] + off, len});
                at += len;
            }
        }
        return reference_merge(pieces);
    }

    BusAddressMap bus_;
    std::vector<uint64_t> physical_;
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

// An encoder writes a lone segment itself when one_inline_segment() says so: it must say yes
// exactly when build_sgl() would put that segment alone into DPTR1, and no on every limit.
TEST_F(SglTest, AOneSegmentCommandIsWrittenInlineExactlyWhenBuildSglWouldTakeIt) {
    const SglLimits limits{.max_sge = 4, .sge_align_log2 = 2, .max_xfer_log2 = 12};
    const SglLimits no_sge{.max_sge = 0, .sge_align_log2 = 2, .max_xfer_log2 = 12};
    const DmaSegment cases[] = {{0x10000, 16}, {0x10000, 4096}, {0x10000, 4100}, {0x10000, 0},
                                {0x10002, 16}, {0x10000, 18},   {0x1000c, 4},    {0xFFFFFFF000, 4096}};
    for (const SglLimits& l : {limits, no_sge}) {
        for (const DmaSegment& seg : cases) {
            SglDescriptor d1{}, d2{};
            const bool built = build_sgl({&seg, 1}, l, pool_, d1, d2).error == SglError::kNone;
            EXPECT_EQ(one_inline_segment(seg, l, nullptr), built)
                << "IOVA " << seg.iova << ", " << seg.len << " bytes, MAX_SGE " << l.max_sge;
        }
    }
    BusAddressMap bus;
    EXPECT_FALSE(one_inline_segment(cases[0], limits, &bus)) << "no-IOMMU mode translates each segment";
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
        if (limits.inline_descriptors == 1) {
            ASSERT_TRUE(d2.unused()) << "NVMe has one SGL descriptor inline";
        }
        expect_built(r, d1, d2, segs, limits, want, iter);
        if (HasFatalFailure()) return;
    }
}

TEST_F(PhysicalSglTest, SegmentsSplitWherePhysicalPagesAreNotContiguous) {
    SglDescriptor d1{}, d2{};
    // Pages 0 and 1 of the handle space: contiguous or not, as the map says.
    const DmaSegment one[] = {{kData + 100, 2 * kSglPageSize}};
    auto r = build_sgl(one, {}, pool_, d1, d2, &bus_);
    ASSERT_EQ(r.error, SglError::kNone) << describe(r, one, {});
    const auto want = reference_physical({one[0]});
    ASSERT_EQ(r.descriptors, want.size());
    EXPECT_EQ(d1.addr, physical_[0] + 100) << "the first byte's physical address";
    EXPECT_EQ(r.total, 2 * kSglPageSize);
    const auto got = decode(d1, d2);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].iova, want[i].iova);
}

TEST_F(PhysicalSglTest, AnIovaOutsideTheMapIsRefusedByName) {
    SglDescriptor d1{}, d2{};
    const DmaSegment outside[] = {{kData, 64}, {kData + kHandlePages * kSglPageSize, 64}};
    auto r = build_sgl(outside, {}, pool_, d1, d2, &bus_);
    EXPECT_EQ(r.error, SglError::kNotMapped);
    EXPECT_EQ(r.segment, 1u);
    EXPECT_NE(describe(r, outside, {}).find("segment 1"), std::string::npos);
    EXPECT_NE(describe(r, outside, {}).find("not in DMA memory"), std::string::npos);
    const DmaSegment low[] = {{0x10000, 64}};
    EXPECT_EQ(build_sgl(low, {}, pool_, d1, d2, &bus_).error, SglError::kNotMapped)
        << "an IOVA that never was a handle goes nowhere near the device";
    EXPECT_EQ(pool_.free_pages(), kPages);
}

TEST_F(PhysicalSglTest, ThousandsOfRandomShapesDecodeToTheirPhysicalRuns) {
    std::mt19937_64 rng(43);
    const uint64_t end = kData + kHandlePages * kSglPageSize;
    for (int iter = 0; iter < 3000; ++iter) {
        const SglLimits limits{.max_sge = 1 + static_cast<uint32_t>(rng() % 1200), .sge_align_log2 = 0,
                               .max_xfer_log2 = 24, .inline_descriptors = 1 + static_cast<uint32_t>(iter % 2)};
        const uint32_t n = 1 + static_cast<uint32_t>(rng() % 400);
        std::vector<DmaSegment> segs;
        for (uint32_t i = 0; i < n; ++i) {
            const uint64_t len = 1 + rng() % (3 * kSglPageSize);
            const uint64_t at = kData + rng() % (end - kData - len);
            // Now and then the next segment follows on from the last.
            if (!segs.empty() && rng() % 3 == 0 && segs.back().iova + segs.back().len + len <= end)
                segs.push_back({segs.back().iova + segs.back().len, len});
            else
                segs.push_back({at, len});
        }
        SglDescriptor d1{}, d2{};
        auto r = build_sgl(segs, limits, pool_, d1, d2, &bus_);
        const auto want = reference_physical(segs);
        if (want.size() > limits.max_sge) {
            ASSERT_EQ(r.error, SglError::kTooManyDescriptors) << "iteration " << iter;
            continue;
        }
        expect_built(r, d1, d2, segs, limits, want, iter);
        if (HasFatalFailure()) return;
    }
}

TEST(BusAddressMap, TranslatesHandlesAndRunsUntilAPageIsElsewhere) {
    BusAddressMap map;
    constexpr uint64_t P = BusAddressMap::kPageSize, base = BusAddressMap::kBase + (uint64_t{5} << 30) - 2 * P;
    // Four pages across a 1 GiB chunk boundary: two contiguous, then a jump, then one more after it.
    const uint64_t pages[] = {0x10000000, 0x10001000, 0x20000000, 0x20001000};
    ASSERT_TRUE(map.set(base, pages));
    auto r = map.translate(base + 0x10, 4 * P);
    EXPECT_EQ(r.address, 0x10000010u);
    EXPECT_EQ(r.len, 2 * P - 0x10) << "runs to the end of the contiguous pages";
    r = map.translate(base + 2 * P + 8, 100);
    EXPECT_EQ(r.address, 0x20000008u);
    EXPECT_EQ(r.len, 100u) << "never beyond what was asked";
    r = map.translate(base + 2 * P, 2 * P);
    EXPECT_EQ(r.len, 2 * P) << "contiguous across the chunk boundary";
    EXPECT_EQ(map.translate(base + 4 * P, 1).address, 0u) << "past the mapped pages";
    EXPECT_EQ(map.translate(0x1000, 1).address, 0u) << "below the handle space";
    EXPECT_EQ(map.translate(~uint64_t{0} - P, 1).address, 0u) << "above it";
    map.clear(base + P, P);
    EXPECT_EQ(map.translate(base + P, 1).address, 0u);
    EXPECT_EQ(map.translate(base, 2 * P).len, P) << "a cleared page ends a run";
    EXPECT_FALSE(map.set(0x1000, pages)) << "outside the handle space";
    EXPECT_FALSE(map.set(base + 1, pages)) << "not page aligned";
}

}  // namespace
}  // namespace vfioq::dma
