// SPDX-License-Identifier: MIT
#include "bus_address_map.hpp"

#include <fmt/format.h>

namespace vfioq::dma {

Result<void> BusAddressMap::set(uint64_t iova, std::span<const uint64_t> physical_pages) {
    const uint64_t size = physical_pages.size() * kPageSize;
    if (iova % kPageSize || iova < kBase || iova - kBase > kSpan || size > kSpan - (iova - kBase))
        return make_error(EINVAL, fmt::format("handle range at {:#x} of {:#x} bytes is outside the no-IOMMU map",
                                              iova, size));
    for (uint64_t i = 0; i < physical_pages.size(); ++i) {
        const uint64_t off = iova - kBase + i * kPageSize;
        const uint64_t c = off / kChunkBytes;
        if (!owned_[c]) {
            owned_[c] = std::make_unique<Chunk>(kPagesPerChunk);  // value-initialised: all unmapped
            chunks_[c].store(owned_[c].get(), std::memory_order_release);
        }
        owned_[c][(off % kChunkBytes) / kPageSize].store(physical_pages[i], std::memory_order_relaxed);
    }
    return {};
}

void BusAddressMap::clear(uint64_t iova, uint64_t size) {
    for (uint64_t p = iova / kPageSize * kPageSize; p < iova + size; p += kPageSize) {
        if (p < kBase || p - kBase >= kSpan) continue;
        const uint64_t off = p - kBase;
        if (auto& chunk = owned_[off / kChunkBytes])
            chunk[(off % kChunkBytes) / kPageSize].store(0, std::memory_order_relaxed);
    }
}

}  // namespace vfioq::dma
