// SPDX-License-Identifier: MIT
// IOVA allocation over the ranges the IOMMU (or vfio-user server) reports
// usable. First fit with alignment; freed space is merged with its free
// neighbours and reused. Control path only: callers serialise.
#pragma once

#include <cstdint>
#include <map>
#include <span>

#include "vfioq/result.hpp"
#include "vfioq/transport.hpp"

namespace vfioq::dma {

class IovaAllocator {
public:
    // IOVAs below `floor` are never handed out (IOVA 0 looks like an unused descriptor).
    explicit IovaAllocator(std::span<const IovaRange> usable, uint64_t floor = 1ull << 16);

    // `align` is a power of two. ENOSPC when no free range can take it.
    Result<uint64_t> allocate(uint64_t size, uint64_t align);
    // Returns [iova, iova + size) exactly as allocated.
    void free(uint64_t iova, uint64_t size);

    [[nodiscard]] uint64_t free_bytes() const;
    [[nodiscard]] size_t free_ranges() const { return free_.size(); }

private:
    std::map<uint64_t, uint64_t> free_;  // start -> end (exclusive); disjoint, never adjacent
};

}  // namespace vfioq::dma
