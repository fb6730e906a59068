// SPDX-License-Identifier: MIT
// Memory the device may reach: a memfd mapped into this process, so that it
// can be handed to a vfio-user server by fd or pinned by the kernel's IOMMU
// driver by address. 2 MiB hugetlb pages when the host has them.
#pragma once

#include <cstddef>

#include "vfioq/result.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::dma {

inline constexpr size_t kHugePageSize = 2u << 20;

struct DmaMemory {
    UniqueFd fd;
    std::byte* data = nullptr;
    size_t size = 0;         // as asked
    size_t mapped_size = 0;  // rounded up to the page size
    bool hugepages = false;

    DmaMemory() = default;
    DmaMemory(DmaMemory&& o) noexcept { *this = std::move(o); }
    DmaMemory& operator=(DmaMemory&& o) noexcept;
    ~DmaMemory();
};

// Hugetlb pages are tried for sizes of at least `hugepages_from` bytes (0:
// never); without them normal pages are used and a notice is logged once per
// process. The mapping is marked MADV_DONTFORK: a child process must not
// share pages a device writes.
Result<DmaMemory> allocate_dma_memory(size_t size, size_t hugepages_from, const char* name);

}  // namespace vfioq::dma
