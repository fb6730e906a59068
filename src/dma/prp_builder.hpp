// SPDX-License-Identifier: MIT
// NVMe PRPs from DMA segments, for controllers without SGL support: PRP1 is
// the first byte, PRP2 the second page or a PRP list in descriptor pages
// (chained through their last entry). The first segment may start anywhere
// dword aligned; every other segment must start on a page, and every segment
// but the last must end on one. In no-IOMMU mode each page entry is the
// physical address of its page. Fast path: no allocation.
#pragma once

#include <cstdint>
#include <span>

#include "sgl_builder.hpp"

namespace vfioq::dma {

struct PrpResult {
    SglError error = SglError::kNone;
    uint32_t segment = 0;     // the segment at fault
    uint64_t total = 0;       // bytes
    int32_t first_page = -1;  // PRP list pages to give back
    uint64_t prp1 = 0, prp2 = 0;
};

PrpResult build_prp(std::span<const DmaSegment> segments, uint64_t max_total, SglPagePool& pool,
                    const BusAddressMap* bus = nullptr);

}  // namespace vfioq::dma
