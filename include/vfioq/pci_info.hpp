// SPDX-License-Identifier: MIT
// Decoding a device's PCI config space: identity and the capability list.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vfioq/export.hpp"
#include "vfioq/result.hpp"
#include "vfioq/transport.hpp"

namespace vfioq {

struct PciIdentity {
    uint16_t vendor_id = 0;
    uint16_t device_id = 0;
    uint16_t subsystem_vendor_id = 0;
    uint16_t subsystem_id = 0;
    uint8_t revision = 0;
    uint32_t class_code = 0;  // base class, subclass, programming interface
};

struct PciCapability {
    uint8_t id = 0;
    uint16_t offset = 0;
    std::string name;     // "MSI-X"
    std::string summary;  // "16 vectors, table BAR2+0x0, PBA BAR2+0x1000, disabled"
};

struct PciLink {
    unsigned speed = 0;  // 1 = 2.5 GT/s ... 6 = 64 GT/s
    unsigned width = 0;
};
// "16 GT/s (Gen4)"
VFIOQ_API std::string pci_link_speed_name(unsigned speed);

VFIOQ_API Result<PciIdentity> read_pci_identity(Transport& transport);

// Walks the capability list; a list that loops or leaves config space is an
// error naming the offset, not a hang.
VFIOQ_API Result<std::vector<PciCapability>> read_pci_capabilities(Transport& transport);

}  // namespace vfioq
