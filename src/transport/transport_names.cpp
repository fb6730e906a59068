// SPDX-License-Identifier: MIT
// Names of VFIO region and IRQ indexes, and the RegionMapping owner.
#include <sys/mman.h>

#include <cstring>
#include <utility>

#include "vfioq/transport.hpp"

namespace vfioq {

const char* region_name(uint32_t index) {
    static const char* const names[] = {"BAR0", "BAR1", "BAR2", "BAR3", "BAR4", "BAR5", "ROM", "config space", "VGA"};
    return index < std::size(names) ? names[index] : "device-specific region";
}

const char* irq_name(uint32_t index) {
    static const char* const names[] = {"INTx", "MSI", "MSI-X", "ERR", "REQ"};
    return index < std::size(names) ? names[index] : "device-specific IRQ";
}

RegionMapping& RegionMapping::operator=(RegionMapping&& o) noexcept {
    if (this != &o) {
        if (base_) ::munmap(base_, length_);
        base_ = std::exchange(o.base_, nullptr);
        length_ = std::exchange(o.length_, 0);
        region_offset_ = o.region_offset_;
    }
    return *this;
}

void RegionMapping::replace_with_all_ones() {
    if (!base_) return;
    // MAP_FIXED swaps the pages in one step: an access racing it sees the old mapping or the new.
    void* p = ::mmap(base_, length_, PROT_READ | PROT_WRITE, MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) std::memset(base_, 0xFF, length_);
}

RegionMapping::~RegionMapping() {
    if (base_) ::munmap(base_, length_);
}

}  // namespace vfioq
