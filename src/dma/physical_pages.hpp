// SPDX-License-Identifier: MIT
// Physical addresses of this process's pages, from /proc/self/pagemap, for
// no-IOMMU mode. The kernel shows page frame numbers only to CAP_SYS_ADMIN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "vfioq/result.hpp"

namespace vfioq::dma {

// The physical address of each 4 KiB page of [addr, addr + len) (both page
// aligned). The pages must be resident and locked (mlock) so that they stay
// where they are. EPERM without CAP_SYS_ADMIN, EFAULT for a page not present.
Result<std::vector<uint64_t>> physical_pages(const void* addr, size_t len);

}  // namespace vfioq::dma
