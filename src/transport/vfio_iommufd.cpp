// SPDX-License-Identifier: MIT
// The iommufd path: the VFIO device cdev (/dev/vfio/devices/vfioN) bound to
// /dev/iommu, attached to an IOAS of its own; IOAS map/unmap at fixed IOVAs.
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

class IommufdBackend final : public IommuBackend {
public:
    ~IommufdBackend() override {
        device_.reset();  // detaches from the IOAS
        if (iommufd_ && ioas_) {
            iommu_destroy d{sizeof(d), ioas_};
            (void)vfio_ioctl(iommufd_.get(), IOMMU_DESTROY, &d);  // nothing to tell at teardown
        }
    }

    const char* kind() const override { return "iommufd + cdev"; }
    const DmaLimits& limits() const override { return limits_; }
    int device_fd() const override { return device_.get(); }

    Result<void> map(const DmaMapping& m) override {
        iommu_ioas_map req{};
        req.size = sizeof(req);
        req.flags = IOMMU_IOAS_MAP_FIXED_IOVA | (m.readable ? IOMMU_IOAS_MAP_READABLE : 0) |
                    (m.writable ? IOMMU_IOAS_MAP_WRITEABLE : 0);
        req.ioas_id = ioas_;
        req.user_va = reinterpret_cast<uint64_t>(m.vaddr);
        req.length = m.size;
        req.iova = m.iova;
        if (int rc = vfio_ioctl(iommufd_.get(), IOMMU_IOAS_MAP, &req); rc < 0) {
            const int err = -rc;
            return make_error(err, fmt::format("{}: IOMMU_IOAS_MAP of {:#x} bytes at IOVA {:#x} failed: {}{}", bdf_,
                                               m.size, m.iova, std::strerror(err),
                                               err == ENOMEM ? " (RLIMIT_MEMLOCK too low?)" : ""));
        }
        return {};
    }

    Result<void> unmap(uint64_t iova, uint64_t size) override {
        iommu_ioas_unmap req{};
        req.size = sizeof(req);
        req.ioas_id = ioas_;
        req.iova = iova;
        req.length = size;
        if (int rc = vfio_ioctl(iommufd_.get(), IOMMU_IOAS_UNMAP, &req); rc < 0)
            return make_error(
                -rc, fmt::format("{}: IOMMU_IOAS_UNMAP at IOVA {:#x} failed: {}", bdf_, iova, std::strerror(-rc)));
        return {};
    }

    Result<void> open(const std::string& bdf) {
        bdf_ = bdf;
        auto cdev = sysfs::vfio_cdev(bdf);
        if (!cdev) {
            if (sysfs::driver(bdf) != "vfio-pci") return make_error(ENODEV, binding_problem(bdf));
            return make_error(ENOTSUP, bdf + ": the kernel offers no VFIO device cdev (CONFIG_VFIO_DEVICE_CDEV); "
                                             "use the container/group path");
        }
        const std::string path = "/dev/vfio/devices/" + *cdev;
        device_.reset(::open(path.c_str(), O_RDWR | O_CLOEXEC));
        if (!device_) {
            const int err = errno;
            std::string why = std::strerror(err);
            if (err == EACCES || err == EPERM)
                why += fmt::format(": give the user the device node (chown {}, and /dev/iommu must be readable)", path);
            return make_error(err, fmt::format("{}: cannot open {}: {}", bdf, path, why));
        }
        iommufd_.reset(::open("/dev/iommu", O_RDWR | O_CLOEXEC));
        if (!iommufd_)
            return make_error(errno, fmt::format("{}: cannot open /dev/iommu: {}", bdf, std::strerror(errno)));
        vfio_device_bind_iommufd bind{};
        bind.argsz = sizeof(bind);
        bind.iommufd = iommufd_.get();
        if (int rc = vfio_ioctl(device_.get(), VFIO_DEVICE_BIND_IOMMUFD, &bind); rc < 0) {
            const int err = -rc;
            return make_error(err, fmt::format("{}: VFIO_DEVICE_BIND_IOMMUFD failed: {}{}", bdf, std::strerror(err),
                                               err == EBUSY ? " (another process or a group user has the device)"
                                                            : ""));
        }
        iommu_ioas_alloc alloc{sizeof(alloc), 0, 0};
        if (int rc = vfio_ioctl(iommufd_.get(), IOMMU_IOAS_ALLOC, &alloc); rc < 0)
            return failed(rc, "IOMMU_IOAS_ALLOC");
        ioas_ = alloc.out_ioas_id;
        vfio_device_attach_iommufd_pt attach{sizeof(attach), 0, ioas_};
        if (int rc = vfio_ioctl(device_.get(), VFIO_DEVICE_ATTACH_IOMMUFD_PT, &attach); rc < 0)
            return failed(rc, "VFIO_DEVICE_ATTACH_IOMMUFD_PT");
        if (auto r = read_ranges(); !r) return r.error();
        limits_.pins_memory = true;
        limits_.max_mappings = 1u << 20;  // iommufd keeps no small count of mappings
        return {};
    }

private:
    Result<void> read_ranges() {
        std::vector<iommu_iova_range> ranges(8);
        int rc = 0;
        for (int attempt = 0; attempt < 3; ++attempt) {
            iommu_ioas_iova_ranges req{};
            req.size = sizeof(req);
            req.ioas_id = ioas_;
            req.num_iovas = static_cast<uint32_t>(ranges.size());
            req.allowed_iovas = reinterpret_cast<uint64_t>(ranges.data());
            rc = vfio_ioctl(iommufd_.get(), IOMMU_IOAS_IOVA_RANGES, &req);
            if (rc == 0) {
                limits_.iova_ranges.clear();
                for (uint32_t i = 0; i < req.num_iovas; ++i)
                    limits_.iova_ranges.push_back({ranges[i].start, ranges[i].last});
                if (req.out_iova_alignment > 1) limits_.page_sizes = req.out_iova_alignment;
                return {};
            }
            if (rc != -EMSGSIZE) break;
            ranges.resize(req.num_iovas);
        }
        return failed(rc < 0 ? rc : -EMSGSIZE, "IOMMU_IOAS_IOVA_RANGES");
    }

    // "BDF: NAME failed: why" for a vfio_ioctl result below zero.
    [[nodiscard]] Error failed(int rc, const char* name) const {
        return make_error(-rc, fmt::format("{}: {} failed: {}", bdf_, name, std::strerror(-rc)));
    }

    std::string bdf_;
    UniqueFd device_, iommufd_;
    uint32_t ioas_ = 0;
    DmaLimits limits_;
};

}  // namespace

Result<std::unique_ptr<IommuBackend>> open_iommufd(const std::string& bdf) {
    auto b = std::make_unique<IommufdBackend>();
    if (auto r = b->open(bdf); !r) return r.error();
    return std::unique_ptr<IommuBackend>(std::move(b));
}

}  // namespace vfioq::kernel
