// SPDX-License-Identifier: MIT
// The SGL builder: a list of DMA segments to the card's descriptors
// (docs/device-interface.md, 3.2). One or two DATA descriptors go inline in
// DPTR1/DPTR2; longer lists put DPTR1 inline and chain the rest through
// 4 KiB pages of segment arrays taken from a per-queue pool of DMA memory.
// IOVA-contiguous neighbours are merged first. CAP's MAX_SGE, SGE_ALIGN and
// MAX_XFER are enforced: a request that breaks them is refused (never split
// or bounced), with the segment and the limit named. In no-IOMMU mode each
// segment is translated to physical addresses and split where its pages are
// not physically contiguous (MAX_SGE counts the descriptors after that).
// Fast path: no allocation, no lock, no system call.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "bus_address_map.hpp"
#include "vfioq/dma.hpp"
#include "vfioq/sgq_commands.hpp"

namespace vfioq::dma {

inline constexpr uint32_t kSglPageSize = 4096;
inline constexpr uint32_t kSglPerPage = kSglPageSize / sizeof(sgq::SglDescriptor);

struct SglLimits {
    uint32_t max_sge = 1024;
    uint32_t sge_align_log2 = 0;
    uint32_t max_xfer_log2 = 24;
    // Descriptors the submission entry holds: 2 on the SGQ card (DPTR1, DPTR2),
    // 1 in NVMe (SGL1). With 1, a list of more than one goes wholly into segment arrays.
    uint32_t inline_descriptors = 2;
};

// Segment-array pages of one queue pair: one DMA buffer cut into pages, a free stack, and chains.
class SglPagePool {
public:
    SglPagePool() = default;
    // `bus` (no-IOMMU mode) gives each page's physical address; null: IOVAs are what the device sees.
    SglPagePool(std::byte* base, uint64_t iova, uint32_t pages, const BusAddressMap* bus = nullptr);

    // -1 when none is free.
    int32_t take();
    // Returns a chain that take() and link() built, starting at `first`.
    void give_chain(int32_t first);
    void link(uint32_t page, int32_t next) { next_[page] = next; }

    [[nodiscard]] sgq::SglDescriptor* page(uint32_t p) const {
        return reinterpret_cast<sgq::SglDescriptor*>(base_ + uint64_t{p} * kSglPageSize);
    }
    // Where the device finds page p.
    [[nodiscard]] uint64_t page_address(uint32_t p) const { return address_[p]; }
    [[nodiscard]] uint32_t pages() const { return static_cast<uint32_t>(next_.size()); }
    [[nodiscard]] uint32_t free_pages() const { return free_count_; }
    // The page a device address falls in, or -1 (for checks and tests).
    [[nodiscard]] int32_t page_of(uint64_t address) const;

private:
    std::byte* base_ = nullptr;
    std::vector<uint64_t> address_;  // of each page, as the device sees it
    std::vector<int32_t> next_;      // chain links
    std::vector<uint32_t> free_;     // stack
    uint32_t free_count_ = 0;
};

enum class SglError : uint8_t {
    kNone,
    kEmpty,
    kZeroLength,
    kMisaligned,
    kTooManyDescriptors,
    kTooLong,
    kNoPages,
    kNotPageAligned,  // PRPs: a segment that must start or end on a page does not
    kNotMapped,       // no-IOMMU mode: an IOVA that is no DMA memory of the device
};

struct SglResult {
    SglError error = SglError::kNone;
    uint32_t segment = 0;      // the segment at fault
    uint32_t descriptors = 0;  // DATA descriptors after merging
    uint64_t total = 0;        // bytes
    int32_t first_page = -1;   // chain to give back when the command completes
};

// One segment behind an IOMMU that every CAP limit allows (what build_sgl() checks, as a yes or
// no): it goes alone into the first inline descriptor, so an encoder may write it itself and
// leave build_sgl(), which names what is wrong, for everything else.
[[nodiscard]] inline bool one_inline_segment(const DmaSegment& s, const SglLimits& limits, const BusAddressMap* bus) {
    const uint64_t align_mask = (uint64_t{1} << limits.sge_align_log2) - 1;
    return !bus && limits.max_sge != 0 && s.len != 0 && ((s.iova | s.len) & align_mask) == 0 &&
           s.len <= (uint64_t{1} << limits.max_xfer_log2);
}

// Fills dptr1/dptr2 (and pool pages) for `segments`; with one inline descriptor, dptr2 is left unused.
// `bus`: translate IOVAs to physical addresses (no-IOMMU mode); null: IOVAs go as they are.
SglResult build_sgl(std::span<const DmaSegment> segments, const SglLimits& limits, SglPagePool& pool,
                    sgq::SglDescriptor& dptr1, sgq::SglDescriptor& dptr2, const BusAddressMap* bus = nullptr);

// Back-pressure, not an error of the request: said without formatting on the fast path.
inline constexpr const char* kNoPagesReason = "the queue pair's descriptor pages are all in use; poll and submit again";

// "segment 3 (IOVA 0x1003, 17 bytes) is not aligned to 4 bytes (CAP.SGE_ALIGN)" and so on.
std::string describe(const SglResult& result, std::span<const DmaSegment> segments, const SglLimits& limits);

}  // namespace vfioq::dma
