// SPDX-License-Identifier: MIT
#include "vfioq/pci_info.hpp"

#include <fmt/format.h>
#include <linux/pci_regs.h>

#include <array>

namespace vfioq {
namespace {

// The 256-byte header and capability area, with zero padding so that decoding a
// capability that starts near the end never reads past the array.
struct ConfigImage {
    std::array<uint8_t, 256 + 64> bytes{};
    [[nodiscard]] uint8_t u8(size_t off) const { return bytes[off]; }
    [[nodiscard]] uint16_t u16(size_t off) const { return static_cast<uint16_t>(bytes[off] | bytes[off + 1] << 8); }
    [[nodiscard]] uint32_t u32(size_t off) const { return u16(off) | uint32_t{u16(off + 2)} << 16; }
};

Result<ConfigImage> read_header(Transport& transport) {
    ConfigImage image;
    auto r = transport.config_read(0, std::as_writable_bytes(std::span(image.bytes).first(256)));
    if (!r) return r.error().with_context("reading config space");
    return image;
}

std::string describe(const ConfigImage& c, uint8_t id, uint16_t at) {
    switch (id) {
        case PCI_CAP_ID_PM: {
            const uint16_t pmc = c.u16(at + PCI_PM_PMC);
            const uint16_t ctrl = c.u16(at + PCI_PM_CTRL);
            return fmt::format("version {}, D{}", pmc & PCI_PM_CAP_VER_MASK, ctrl & PCI_PM_CTRL_STATE_MASK);
        }
        case PCI_CAP_ID_MSIX: {
            const uint16_t flags = c.u16(at + PCI_MSIX_FLAGS);
            const uint32_t table = c.u32(at + PCI_MSIX_TABLE);
            const uint32_t pba = c.u32(at + PCI_MSIX_PBA);
            return fmt::format("{} vectors, table BAR{}+{:#x}, PBA BAR{}+{:#x}, {}{}",
                               (flags & PCI_MSIX_FLAGS_QSIZE) + 1, table & PCI_MSIX_TABLE_BIR,
                               table & PCI_MSIX_TABLE_OFFSET, pba & PCI_MSIX_PBA_BIR, pba & PCI_MSIX_PBA_OFFSET,
                               flags & PCI_MSIX_FLAGS_ENABLE ? "enabled" : "disabled",
                               flags & PCI_MSIX_FLAGS_MASKALL ? ", function masked" : "");
        }
        case PCI_CAP_ID_MSI: return "MSI";
        case PCI_CAP_ID_EXP: {
            const uint16_t flags = c.u16(at + PCI_EXP_FLAGS);
            const uint32_t devcap = c.u32(at + PCI_EXP_DEVCAP);
            const uint32_t lnkcap = c.u32(at + PCI_EXP_LNKCAP);
            const uint16_t lnksta = c.u16(at + PCI_EXP_LNKSTA);
            static const char* const types[] = {"endpoint", "legacy endpoint", "?", "?", "root port",
                                                "upstream port", "downstream port", "PCIe-PCI bridge",
                                                "PCI-PCIe bridge", "root complex integrated endpoint",
                                                "root complex event collector"};
            const unsigned type = (flags & PCI_EXP_FLAGS_TYPE) >> 4;
            // A function integrated in the root complex has no link, and its link registers
            // are reserved (QEMU makes an endpoint on its root bus one of these).
            const bool linkless = type == PCI_EXP_TYPE_RC_END || type == PCI_EXP_TYPE_RC_EC;
            const std::string link =
                linkless ? std::string("no link")
                         : fmt::format("link {} x{} (capable {} x{})", pci_link_speed_name(lnksta & PCI_EXP_LNKSTA_CLS),
                                       (lnksta & PCI_EXP_LNKSTA_NLW) >> 4,
                                       pci_link_speed_name(lnkcap & PCI_EXP_LNKCAP_SLS),
                                       (lnkcap & PCI_EXP_LNKCAP_MLW) >> 4);
            return fmt::format("{}, version {}, {}, max payload {} bytes{}", type < std::size(types) ? types[type] : "?",
                               flags & PCI_EXP_FLAGS_VERS, link, 128u << (devcap & PCI_EXP_DEVCAP_PAYLOAD),
                               devcap & PCI_EXP_DEVCAP_FLR ? ", FLR" : "");
        }
        default: return "";
    }
}

const char* capability_name(uint8_t id) {
    switch (id) {
        case PCI_CAP_ID_PM: return "Power Management";
        case PCI_CAP_ID_MSI: return "MSI";
        case PCI_CAP_ID_VNDR: return "Vendor Specific";
        case PCI_CAP_ID_EXP: return "PCI Express";
        case PCI_CAP_ID_MSIX: return "MSI-X";
        default: return "unknown";
    }
}

}  // namespace

std::string pci_link_speed_name(unsigned speed) {
    static const char* const names[] = {"?", "2.5 GT/s (Gen1)", "5 GT/s (Gen2)", "8 GT/s (Gen3)",
                                        "16 GT/s (Gen4)", "32 GT/s (Gen5)", "64 GT/s (Gen6)"};
    return speed < std::size(names) ? names[speed] : "?";
}

Result<PciIdentity> read_pci_identity(Transport& transport) {
    auto c = read_header(transport);
    if (!c) return c.error();
    PciIdentity id;
    id.vendor_id = c->u16(PCI_VENDOR_ID);
    id.device_id = c->u16(PCI_DEVICE_ID);
    id.subsystem_vendor_id = c->u16(PCI_SUBSYSTEM_VENDOR_ID);
    id.subsystem_id = c->u16(PCI_SUBSYSTEM_ID);
    id.revision = c->u8(PCI_REVISION_ID);
    id.class_code = c->u32(PCI_CLASS_REVISION) >> 8;
    return id;
}

Result<std::vector<PciCapability>> read_pci_capabilities(Transport& transport) {
    auto c = read_header(transport);
    if (!c) return c.error();
    std::vector<PciCapability> caps;
    if (!(c->u16(PCI_STATUS) & PCI_STATUS_CAP_LIST)) return caps;
    uint16_t at = c->u8(PCI_CAPABILITY_LIST) & ~3u;
    // 48 capabilities of 4 bytes fill the 192 bytes after the header: more means a loop.
    for (int hops = 0; at != 0; ++hops) {
        if (hops >= 48 || at < 0x40 || at > 0xFC)
            return make_error(EPROTO, fmt::format("{}: capability list is malformed at config offset {:#x}",
                                                  transport.name(), at));
        const uint8_t id = c->u8(at + PCI_CAP_LIST_ID);
        caps.push_back({id, at, capability_name(id), describe(*c, id, at)});
        at = c->u8(at + PCI_CAP_LIST_NEXT) & ~3u;
    }
    return caps;
}

}  // namespace vfioq
