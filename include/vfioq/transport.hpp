// SPDX-License-Identifier: MIT
// Transport: how vfioq reaches a device. One interface for the vfio-user
// client and (later) kernel VFIO through a container/group or iommufd/cdev.
// It moves bytes, fds and interrupts; it knows nothing of rings or commands.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "vfioq/export.hpp"
#include "vfioq/result.hpp"

namespace vfioq {

// Region and IRQ indexes of a PCI device, as VFIO numbers them.
enum class PciRegion : uint32_t { kBar0 = 0, kBar1, kBar2, kBar3, kBar4, kBar5, kRom, kConfig, kVga };
enum class PciIrq : uint32_t { kIntx = 0, kMsi, kMsix, kErr, kReq };

VFIOQ_API const char* region_name(uint32_t index);
VFIOQ_API const char* irq_name(uint32_t index);

struct DeviceInfo {
    bool is_pci = false;
    bool can_reset = false;
    uint32_t num_regions = 0;
    uint32_t num_irqs = 0;
};

struct MmapArea {
    uint64_t offset = 0;  // within the region
    uint64_t size = 0;
};

struct RegionInfo {
    uint32_t index = 0;
    uint64_t size = 0;
    bool readable = false;
    bool writable = false;
    bool mappable = false;
    // Parts of the region that can be mapped. A mappable region without a
    // sparse-mmap capability is one area covering all of it.
    std::vector<MmapArea> mmap_areas;
};

struct IrqInfo {
    uint32_t index = 0;
    uint32_t count = 0;
    bool eventfd = false;
    bool maskable = false;
    bool automasked = false;
    bool noresize = false;
};

// A mapping of part of a region into this process; unmapped when destroyed.
class VFIOQ_API RegionMapping {
public:
    RegionMapping() = default;
    RegionMapping(void* base, size_t length, uint64_t region_offset)
        : base_(base), length_(length), region_offset_(region_offset) {}
    RegionMapping(const RegionMapping&) = delete;
    RegionMapping& operator=(const RegionMapping&) = delete;
    RegionMapping(RegionMapping&& o) noexcept { *this = std::move(o); }
    RegionMapping& operator=(RegionMapping&& o) noexcept;
    ~RegionMapping();

    [[nodiscard]] void* data() const { return base_; }
    [[nodiscard]] size_t size() const { return length_; }
    [[nodiscard]] uint64_t region_offset() const { return region_offset_; }
    // The device is gone: the same addresses now hold private memory reading all-ones.
    void replace_with_all_ones();
    [[nodiscard]] bool contains(uint64_t offset, size_t len) const {
        return base_ != nullptr && offset >= region_offset_ && len <= length_ &&
               offset - region_offset_ <= length_ - len;
    }

private:
    void* base_ = nullptr;
    size_t length_ = 0;
    uint64_t region_offset_ = 0;
};

// Memory the device may reach by DMA at `iova`. With fd >= 0 the peer maps
// [fd_offset, fd_offset + size) of that fd; otherwise the transport serves the
// peer's accesses from `vaddr` (vfio-user DMA_READ/DMA_WRITE) or pins it (kernel).
struct DmaMapping {
    uint64_t iova = 0;
    uint64_t size = 0;
    void* vaddr = nullptr;
    int fd = -1;
    uint64_t fd_offset = 0;
    bool readable = true;   // the device may read it
    bool writable = true;   // the device may write it
};

struct IovaRange {
    uint64_t start = 0;
    uint64_t end = 0;  // inclusive
};

struct DmaLimits {
    std::vector<IovaRange> iova_ranges;  // empty: not reported (DMA takes the low 48 bits)
    uint64_t page_sizes = 4096;  // a bit per supported page size
    uint64_t max_mappings = 65535;
    // Mappings pin host pages and count against RLIMIT_MEMLOCK (kernel VFIO);
    // a vfio-user server maps the memory itself and nothing is pinned here.
    bool pins_memory = false;
    // No IOMMU (kernel VFIO's unsafe no-IOMMU mode): the device is given
    // physical addresses and dma_map() is never called; the DMA layer pins
    // memory itself and translates its IOVAs (docs/kernel-vfio.md).
    bool physical_addresses = false;
};

class VFIOQ_API Transport {
public:
    virtual ~Transport() = default;

    // How the device was addressed ("vfio-user:/run/card.sock", "model"); errors start with it.
    [[nodiscard]] virtual const std::string& name() const = 0;

    [[nodiscard]] virtual const DeviceInfo& device_info() const = 0;
    virtual Result<RegionInfo> region_info(uint32_t index) = 0;
    virtual Result<IrqInfo> irq_info(uint32_t index) = 0;

    virtual Result<void> region_read(uint32_t index, uint64_t offset, std::span<std::byte> data) = 0;
    virtual Result<void> region_write(uint32_t index, uint64_t offset, std::span<const std::byte> data) = 0;
    // Maps one area that region_info() reported; ENOTSUP where the transport cannot.
    virtual Result<RegionMapping> map_region(uint32_t index, const MmapArea& area) = 0;

    // Interrupts of one index (normally MSI-X): eventfds[i] is signalled for
    // vector start + i; an fd of -1 leaves that vector unassigned.
    virtual Result<void> set_irq_eventfds(uint32_t index, uint32_t start, std::span<const int> eventfds) = 0;
    virtual Result<void> disable_irqs(uint32_t index) = 0;

    [[nodiscard]] virtual const DmaLimits& dma_limits() const = 0;
    virtual Result<void> dma_map(const DmaMapping& mapping) = 0;
    virtual Result<void> dma_unmap(uint64_t iova, uint64_t size) = 0;

    virtual Result<void> reset() = 0;
    // `callback` runs once, on a thread of the transport's, if the connection
    // to the device is lost (the peer closed it or broke the protocol, or the
    // kernel asks for the device back to unbind or remove it); never for our own close. An empty callback stops it; when this returns, no call to
    // the previous callback is running. Transports that cannot lose a connection ignore it.
    virtual void on_connection_lost(std::function<void(const Error&)> callback) { (void)callback; }

    // Config space is a region like any other; these read it with the device named in errors.
    Result<void> config_read(uint64_t offset, std::span<std::byte> data) {
        return region_read(static_cast<uint32_t>(PciRegion::kConfig), offset, data);
    }
    Result<void> config_write(uint64_t offset, std::span<const std::byte> data) {
        return region_write(static_cast<uint32_t>(PciRegion::kConfig), offset, data);
    }
};

}  // namespace vfioq
