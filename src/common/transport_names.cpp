// SPDX-License-Identifier: MIT
// Names of VFIO region and IRQ indexes, and the RegionMapping owner.
#include <sys/mman.h>

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

RegionMapping::~RegionMapping() {
    if (base_) ::munmap(base_, length_);
}

}  // namespace vfioq
