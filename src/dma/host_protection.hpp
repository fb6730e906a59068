// SPDX-License-Identifier: MIT
// What the process may do with memory it asks to register: the device may be
// told to read it (the process must be able to read it) and to write it (a
// READ command lands there). The kernel's VFIO would refuse to pin memory the
// process cannot write for a writable mapping; a vfio-user client would fault
// serving the server's DMA_WRITE. So registration asks first.
#pragma once

#include <cstdint>

#include "vfioq/result.hpp"

namespace vfioq::dma {

struct HostProtection {
    bool writable = false;  // every page of the range is writable (all are readable, or it is an error)
};

// The protection of [a, b) as /proc/self/maps has it: EFAULT naming the first
// page that is not mapped, EACCES naming the first that cannot be read.
Result<HostProtection> host_protection(uintptr_t a, uintptr_t b);

}  // namespace vfioq::dma
