// SPDX-License-Identifier: MIT
// The legacy VFIO path: /dev/vfio/vfio (the container), /dev/vfio/N (the
// group), the type1v2 IOMMU (or no IOMMU), MAP_DMA/UNMAP_DMA by address.
#include <fcntl.h>
#include <fmt/format.h>

#include <cstring>
#include <vector>

#include "iommu_backend.hpp"
#include "pci_sysfs.hpp"
#include "vfio_ioctl.hpp"
#include "vfio_kernel_abi.hpp"

namespace vfioq::kernel {

namespace {

class ContainerBackend final : public IommuBackend {
public:
    const char* kind() const override {
        return noiommu_ ? "container/group (no IOMMU, unsafe)" : "container/group (type1v2)";
    }
    const DmaLimits& limits() const override { return limits_; }
    int device_fd() const override { return device_.get(); }

    Result<void> map(const DmaMapping& m) override {
        if (noiommu_) return make_error(ENOTSUP, bdf_ + ": no IOMMU: DMA uses physical addresses, nothing is mapped");
        vfio_iommu_type1_dma_map req{};
        req.argsz = sizeof(req);
        req.flags = (m.readable ? VFIO_DMA_MAP_FLAG_READ : 0) | (m.writable ? VFIO_DMA_MAP_FLAG_WRITE : 0);
        req.vaddr = reinterpret_cast<uint64_t>(m.vaddr);
        req.iova = m.iova;
        req.size = m.size;
        if (int rc = vfio_ioctl(container_.get(), VFIO_IOMMU_MAP_DMA, &req); rc < 0) {
            const int err = -rc;
            std::string hint;
            if (err == ENOMEM) hint = " (RLIMIT_MEMLOCK too low, or the memory is not pinnable)";
            if (err == ENOSPC) hint = " (the IOMMU's limit of DMA mappings is reached)";
            return make_error(err, fmt::format("{}: VFIO_IOMMU_MAP_DMA of {:#x} bytes at IOVA {:#x} failed: {}{}",
                                               bdf_, m.size, m.iova, std::strerror(err), hint));
        }
        return {};
    }

    Result<void> unmap(uint64_t iova, uint64_t size) override {
        if (noiommu_) return {};
        vfio_iommu_type1_dma_unmap req{};
        req.argsz = sizeof(req);
        req.iova = iova;
        req.size = size;
        if (int rc = vfio_ioctl(container_.get(), VFIO_IOMMU_UNMAP_DMA, &req); rc < 0)
            return make_error(
                -rc, fmt::format("{}: VFIO_IOMMU_UNMAP_DMA at IOVA {:#x} failed: {}", bdf_, iova, std::strerror(-rc)));
        return {};
    }

    Result<void> open(const std::string& bdf, bool noiommu) {
        bdf_ = bdf;
        noiommu_ = noiommu;
        container_.reset(::open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC));
        if (!container_)
            return make_error(errno, fmt::format("{}: cannot open /dev/vfio/vfio: {} (is the vfio module loaded? "
                                                 "modprobe vfio-pci)",
                                                 bdf, std::strerror(errno)));
        if (vfio_ioctl(container_.get(), VFIO_GET_API_VERSION) != VFIO_API_VERSION)
            return make_error(ENOTSUP, bdf + ": the kernel's VFIO API version is not the one vfioq speaks");
        const int type = noiommu ? VFIO_NOIOMMU_IOMMU : VFIO_TYPE1v2_IOMMU;
        if (vfio_ioctl(container_.get(), VFIO_CHECK_EXTENSION, type) <= 0)
            return make_error(ENOTSUP, noiommu ? bdf + ": the kernel offers no VFIO no-IOMMU mode (boot with "
                                                       "vfio.enable_unsafe_noiommu_mode=1, and a kernel with "
                                                       "CONFIG_VFIO_NOIOMMU)"
                                               : bdf + ": the kernel's VFIO has no type1v2 IOMMU driver "
                                                       "(modprobe vfio_iommu_type1)");
        auto group = sysfs::iommu_group(bdf);
        if (!group) return make_error(ENODEV, binding_problem(bdf));
        const std::string path = fmt::format("/dev/vfio/{}{}", noiommu ? "noiommu-" : "", *group);
        group_.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!group_) {
            const int err = errno;
            std::string why = std::strerror(err);
            if (noiommu && err == EPERM)
                why += ": no-IOMMU mode needs CAP_SYS_RAWIO (run as root)";
            else if (err == EACCES || err == EPERM)
                why += fmt::format(": give the user the group node (scripts/bind-vfio bind {} --user NAME, or chown "
                                   "{})",
                                   bdf, path);
            else if (err == ENOENT && noiommu && !sysfs::noiommu_group(*group))
                why += fmt::format(": IOMMU group {} has an IOMMU behind it, so no-IOMMU mode is not for it (unset "
                                   "VFIOQ_UNSAFE_NOIOMMU)",
                                   *group);
            else if (err == ENOENT)
                why += ": " + binding_problem(bdf);
            else if (err == EBUSY)
                why += ": another process has the group open";
            return make_error(err, fmt::format("{}: cannot open {}: {}", bdf, path, why));
        }
        vfio_group_status status{};
        status.argsz = sizeof(status);
        if (int rc = vfio_ioctl(group_.get(), VFIO_GROUP_GET_STATUS, &status); rc < 0)
            return failed(rc, "VFIO_GROUP_GET_STATUS");
        if (!(status.flags & VFIO_GROUP_FLAGS_VIABLE)) {
            std::string members;
            for (const auto& d : sysfs::group_devices(*group)) {
                const auto drv = sysfs::driver(d);
                members += fmt::format(" {} ({})", d, drv.empty() ? "no driver" : drv);
            }
            return make_error(EPERM, fmt::format("{}: IOMMU group {} is not viable: every device in it must be bound "
                                                 "to vfio-pci or to no driver; the group holds:{}",
                                                 bdf, *group, members));
        }
        int cfd = container_.get();
        if (int rc = vfio_ioctl(group_.get(), VFIO_GROUP_SET_CONTAINER, &cfd); rc < 0)
            return failed(rc, "VFIO_GROUP_SET_CONTAINER");
        if (int rc = vfio_ioctl(container_.get(), VFIO_SET_IOMMU, type); rc < 0) return failed(rc, "VFIO_SET_IOMMU");
        if (!noiommu)
            if (auto r = read_iommu_info(); !r) return r.error();
        limits_.pins_memory = true;
        limits_.physical_addresses = noiommu;
        const int fd = vfio_ioctl(group_.get(), VFIO_GROUP_GET_DEVICE_FD, bdf.c_str());
        if (fd < 0) return failed(fd, "VFIO_GROUP_GET_DEVICE_FD");
        device_.reset(fd);
        return {};
    }

private:
    // "BDF: NAME failed: why" for a vfio_ioctl result below zero.
    [[nodiscard]] Error failed(int rc, const char* name) const {
        return make_error(-rc, fmt::format("{}: {} failed: {}", bdf_, name, std::strerror(-rc)));
    }

    // IOVA ranges, page sizes and the DMA mappings still available, from the capability chain.
    Result<void> read_iommu_info() {
        std::vector<uint8_t> buf(sizeof(vfio_iommu_type1_info));
        for (int attempt = 0; attempt < 2; ++attempt) {
            auto* info = reinterpret_cast<vfio_iommu_type1_info*>(buf.data());
            info->argsz = static_cast<uint32_t>(buf.size());
            if (int rc = vfio_ioctl(container_.get(), VFIO_IOMMU_GET_INFO, info); rc < 0)
                return failed(rc, "VFIO_IOMMU_GET_INFO");
            if (info->argsz <= buf.size()) break;
            buf.resize(info->argsz);
        }
        const auto* info = reinterpret_cast<const vfio_iommu_type1_info*>(buf.data());
        if (info->flags & VFIO_IOMMU_INFO_PGSIZES) limits_.page_sizes = info->iova_pgsizes;
        if (!(info->flags & VFIO_IOMMU_INFO_CAPS) || info->cap_offset == 0) return {};
        uint32_t off = info->cap_offset;
        for (int guard = 0; off != 0 && off + sizeof(vfio_info_cap_header) <= buf.size() && guard < 64; ++guard) {
            const auto* hdr = reinterpret_cast<const vfio_info_cap_header*>(buf.data() + off);
            if (hdr->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
                const auto* cap = reinterpret_cast<const vfio_iommu_type1_info_cap_iova_range*>(hdr);
                if (off + sizeof(*cap) + cap->nr_iovas * sizeof(vfio_iova_range) <= buf.size()) {
                    limits_.iova_ranges.clear();
                    for (uint32_t i = 0; i < cap->nr_iovas; ++i)
                        limits_.iova_ranges.push_back({cap->iova_ranges[i].start, cap->iova_ranges[i].end});
                }
            } else if (hdr->id == VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL) {
                limits_.max_mappings = reinterpret_cast<const vfio_iommu_type1_info_dma_avail*>(hdr)->avail;
            }
            off = hdr->next;
        }
        return {};
    }

    std::string bdf_;
    bool noiommu_ = false;
    UniqueFd container_, group_, device_;
    DmaLimits limits_;
};

}  // namespace

Result<std::unique_ptr<IommuBackend>> open_container(const std::string& bdf, bool noiommu) {
    auto b = std::make_unique<ContainerBackend>();
    if (auto r = b->open(bdf, noiommu); !r) return r.error();
    return std::unique_ptr<IommuBackend>(std::move(b));
}

std::string binding_problem(const std::string& bdf) {
    if (!sysfs::exists(bdf)) return fmt::format("{}: no such PCI function (lspci -D lists them)", bdf);
    const auto drv = sysfs::driver(bdf);
    if (drv.empty())
        return fmt::format("{}: bound to no driver; bind it to vfio-pci: scripts/bind-vfio bind {}", bdf, bdf);
    if (drv != "vfio-pci")
        return fmt::format("{}: bound to the {} driver, not vfio-pci; rebind it: scripts/bind-vfio bind {}", bdf, drv,
                           bdf);
    if (!sysfs::iommu_group(bdf))
        return fmt::format("{}: has no IOMMU group: the IOMMU is off (boot with intel_iommu=on or amd_iommu=on, and "
                           "VT-d/AMD-Vi enabled in the firmware), or use the unsafe no-IOMMU mode",
                           bdf);
    return fmt::format("{}: bound to vfio-pci", bdf);
}

}  // namespace vfioq::kernel
