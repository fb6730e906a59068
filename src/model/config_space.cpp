// SPDX-License-Identifier: MIT
#include "config_space.hpp"

#include <linux/pci_regs.h>

#include <cstring>

#include "vfioq/sgq_registers.hpp"

namespace vfioq::model {
namespace {

constexpr uint32_t kBar0LowAttributes = PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64;

}  // namespace

ConfigSpace::ConfigSpace(const ModelConfig& c) {
    auto put8 = [&](uint32_t off, uint8_t v, uint8_t mask = 0) {
        bytes_[off] = v;
        writable_[off] = mask;
    };
    auto put16 = [&](uint32_t off, uint16_t v, uint16_t mask = 0) {
        put8(off, v & 0xFF, mask & 0xFF);
        put8(off + 1, v >> 8, mask >> 8);
    };
    auto put32 = [&](uint32_t off, uint32_t v, uint32_t mask = 0) {
        put16(off, v & 0xFFFF, mask & 0xFFFF);
        put16(off + 2, v >> 16, mask >> 16);
    };

    put16(PCI_VENDOR_ID, c.vendor_id);
    put16(PCI_DEVICE_ID, c.device_id);
    put16(PCI_COMMAND, 0, PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER | PCI_COMMAND_PARITY | PCI_COMMAND_SERR |
                              PCI_COMMAND_INTX_DISABLE);
    put16(PCI_STATUS, PCI_STATUS_CAP_LIST);
    put8(PCI_REVISION_ID, c.revision);
    put8(PCI_CLASS_PROG, 0x00);
    put16(PCI_CLASS_DEVICE, 0x0880);  // other system peripheral
    put8(PCI_CACHE_LINE_SIZE, 0, 0xFF);
    put8(PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL);

    // 64-bit memory BARs: the low bits that are not writable give the size away.
    put32(PCI_BASE_ADDRESS_0, kBar0LowAttributes, ~static_cast<uint32_t>(sgq::kBar0Size - 1));
    put32(PCI_BASE_ADDRESS_1, 0, 0xFFFFFFFF);
    put32(PCI_BASE_ADDRESS_2, kBar0LowAttributes, ~static_cast<uint32_t>(sgq::kBar2Size - 1));
    put32(PCI_BASE_ADDRESS_3, 0, 0xFFFFFFFF);
    put16(PCI_SUBSYSTEM_VENDOR_ID, c.subsystem_vendor_id);
    put16(PCI_SUBSYSTEM_ID, c.subsystem_id);
    put8(PCI_CAPABILITY_LIST, kPmCapOffset);
    put8(PCI_INTERRUPT_LINE, 0, 0xFF);
    put8(PCI_INTERRUPT_PIN, 0);  // MSI-X only

    // Power Management, version 3; the power state field is writable.
    put8(kPmCapOffset + PCI_CAP_LIST_ID, PCI_CAP_ID_PM);
    put8(kPmCapOffset + PCI_CAP_LIST_NEXT, kMsixCapOffset);
    put16(kPmCapOffset + PCI_PM_PMC, 3);
    put16(kPmCapOffset + PCI_PM_CTRL, 0, PCI_PM_CTRL_STATE_MASK);

    // MSI-X: NQP + 1 vectors, table and PBA in BAR2.
    put8(kMsixCapOffset + PCI_CAP_LIST_ID, PCI_CAP_ID_MSIX);
    put8(kMsixCapOffset + PCI_CAP_LIST_NEXT, kPcieCapOffset);
    put16(kMsixCapOffset + PCI_MSIX_FLAGS, static_cast<uint16_t>(c.vector_count() - 1),
          PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
    put32(kMsixCapOffset + PCI_MSIX_TABLE, sgq::kMsixTableOffset | 2);
    put32(kMsixCapOffset + PCI_MSIX_PBA, sgq::kMsixPbaOffset | 2);

    // PCI Express endpoint, capability version 2, with FLR and the configured link.
    put8(kPcieCapOffset + PCI_CAP_LIST_ID, PCI_CAP_ID_EXP);
    put8(kPcieCapOffset + PCI_CAP_LIST_NEXT, 0);
    put16(kPcieCapOffset + PCI_EXP_FLAGS, 2 | (PCI_EXP_TYPE_ENDPOINT << 4));
    put32(kPcieCapOffset + PCI_EXP_DEVCAP, 1 /* 256-byte payload */ | PCI_EXP_DEVCAP_FLR);
    // Bit 15 (Initiate FLR) is an action, not state: it always reads 0.
    put16(kPcieCapOffset + PCI_EXP_DEVCTL, 0x2810, 0x7FFF);
    const uint32_t link = uint32_t{c.link_speed} | uint32_t{c.link_width} << 4;
    put32(kPcieCapOffset + PCI_EXP_LNKCAP, link);
    put16(kPcieCapOffset + PCI_EXP_LNKCTL, 0, 0x0FFB);
    put16(kPcieCapOffset + PCI_EXP_LNKSTA, static_cast<uint16_t>(link));
    put32(kPcieCapOffset + PCI_EXP_LNKCAP2, (1u << (c.link_speed + 1)) - 2);  // supported speeds vector
}

void ConfigSpace::read(uint32_t offset, std::span<std::byte> out) const {
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
}

bool ConfigSpace::write(uint32_t offset, std::span<const std::byte> in) {
    bool flr = false;
    for (size_t i = 0; i < in.size(); ++i) {
        const uint32_t at = offset + static_cast<uint32_t>(i);
        const auto value = static_cast<uint8_t>(in[i]);
        // Device Control bit 15 (Initiate FLR) reads as 0; writing 1 resets the function.
        if (at == kPcieCapOffset + PCI_EXP_DEVCTL + 1 && (value & 0x80)) flr = true;
        bytes_[at] = static_cast<uint8_t>((bytes_[at] & ~writable_[at]) | (value & writable_[at]));
    }
    return flr;
}

uint16_t ConfigSpace::read16(uint32_t offset) const {
    return static_cast<uint16_t>(bytes_[offset] | bytes_[offset + 1] << 8);
}

void ConfigSpace::set16(uint32_t offset, uint16_t value) {
    bytes_[offset] = value & 0xFF;
    bytes_[offset + 1] = value >> 8;
}

bool ConfigSpace::msix_enabled() const {
    return read16(kMsixCapOffset + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_ENABLE;
}

bool ConfigSpace::msix_function_masked() const {
    return read16(kMsixCapOffset + PCI_MSIX_FLAGS) & PCI_MSIX_FLAGS_MASKALL;
}

void ConfigSpace::set_msix_enabled(bool enabled) {
    uint16_t flags = read16(kMsixCapOffset + PCI_MSIX_FLAGS);
    flags = enabled ? (flags | PCI_MSIX_FLAGS_ENABLE) : (flags & ~PCI_MSIX_FLAGS_ENABLE);
    set16(kMsixCapOffset + PCI_MSIX_FLAGS, flags);
}

}  // namespace vfioq::model
