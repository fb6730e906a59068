// SPDX-License-Identifier: MIT
// The kernel VFIO transport: a VFIO device fd (regions by pread/pwrite and
// mmap, IRQs as eventfds, reset) over one of the IOMMU back-ends.
#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <thread>
#include <vector>

#include "iommu_backend.hpp"
#include "pci_sysfs.hpp"
#include "vfio_ioctl.hpp"
#include "vfio_kernel_abi.hpp"
#include "vfioq/kernel_vfio.hpp"
#include "vfioq/log.hpp"

namespace vfioq {

namespace {

class KernelVfioTransport final : public Transport {
public:
    KernelVfioTransport(std::string name, std::unique_ptr<kernel::IommuBackend> backend)
        : name_(std::move(name)), backend_(std::move(backend)) {}
    ~KernelVfioTransport() override { stop_watching(); }

    Result<void> init() {
        vfio_device_info info{};
        info.argsz = sizeof(info);
        if (int rc = ioctl(VFIO_DEVICE_GET_INFO, &info); rc < 0) return fail(-rc, "VFIO_DEVICE_GET_INFO");
        info_.is_pci = info.flags & VFIO_DEVICE_FLAGS_PCI;
        info_.can_reset = info.flags & VFIO_DEVICE_FLAGS_RESET;
        info_.num_regions = info.num_regions;
        info_.num_irqs = info.num_irqs;
        if (!info_.is_pci) return make_error(ENOTSUP, name_ + ": not a PCI device");
        return {};
    }

    const std::string& name() const override { return name_; }
    const DeviceInfo& device_info() const override { return info_; }

    Result<RegionInfo> region_info(uint32_t index) override {
        auto raw = raw_region(index);
        if (!raw) return raw.error();
        return raw->info;
    }

    Result<IrqInfo> irq_info(uint32_t index) override {
        vfio_irq_info irq{};
        irq.argsz = sizeof(irq);
        irq.index = index;
        if (int rc = ioctl(VFIO_DEVICE_GET_IRQ_INFO, &irq); rc < 0)
            return fail(-rc, fmt::format("VFIO_DEVICE_GET_IRQ_INFO for {}", irq_name(index)));
        IrqInfo out;
        out.index = index;
        out.count = irq.count;
        out.eventfd = irq.flags & VFIO_IRQ_INFO_EVENTFD;
        out.maskable = irq.flags & VFIO_IRQ_INFO_MASKABLE;
        out.automasked = irq.flags & VFIO_IRQ_INFO_AUTOMASKED;
        out.noresize = irq.flags & VFIO_IRQ_INFO_NORESIZE;
        return out;
    }

    Result<void> region_read(uint32_t index, uint64_t offset, std::span<std::byte> data) override {
        auto raw = raw_region(index);
        if (!raw) return raw.error();
        if (offset > raw->info.size || data.size() > raw->info.size - offset)
            return make_error(EINVAL, fmt::format("{}: read of {} bytes at {:#x} is outside {} ({:#x} bytes)", name_,
                                                  data.size(), offset, region_name(index), raw->info.size));
        const ssize_t n = ::pread(fd(), data.data(), data.size(), static_cast<off_t>(raw->offset + offset));
        const int err = n < 0 ? errno : EIO;
        if (n != static_cast<ssize_t>(data.size()))
            return fail(err, fmt::format("reading {} bytes at {:#x} of {}", data.size(), offset, region_name(index)));
        return {};
    }

    Result<void> region_write(uint32_t index, uint64_t offset, std::span<const std::byte> data) override {
        auto raw = raw_region(index);
        if (!raw) return raw.error();
        if (offset > raw->info.size || data.size() > raw->info.size - offset)
            return make_error(EINVAL, fmt::format("{}: write of {} bytes at {:#x} is outside {} ({:#x} bytes)", name_,
                                                  data.size(), offset, region_name(index), raw->info.size));
        const ssize_t n = ::pwrite(fd(), data.data(), data.size(), static_cast<off_t>(raw->offset + offset));
        const int err = n < 0 ? errno : EIO;
        if (n != static_cast<ssize_t>(data.size()))
            return fail(err, fmt::format("writing {} bytes at {:#x} of {}", data.size(), offset, region_name(index)));
        return {};
    }

    Result<RegionMapping> map_region(uint32_t index, const MmapArea& area) override {
        auto raw = raw_region(index);
        if (!raw) return raw.error();
        if (!raw->info.mappable)
            return make_error(ENOTSUP, fmt::format("{}: {} cannot be mapped", name_, region_name(index)));
        void* p = ::mmap(nullptr, area.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd(),
                         static_cast<off_t>(raw->offset + area.offset));
        if (p == MAP_FAILED) {
            const int err = errno;
            return fail(err, fmt::format("mapping {} [{:#x}, +{:#x})", region_name(index), area.offset, area.size));
        }
        return RegionMapping(p, area.size, area.offset);
    }

    Result<void> set_irq_eventfds(uint32_t index, uint32_t start, std::span<const int> eventfds) override {
        std::vector<uint8_t> buf(sizeof(vfio_irq_set) + eventfds.size() * sizeof(int32_t));
        auto* set = reinterpret_cast<vfio_irq_set*>(buf.data());
        set->argsz = static_cast<uint32_t>(buf.size());
        set->flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        set->index = index;
        set->start = start;
        set->count = static_cast<uint32_t>(eventfds.size());
        std::memcpy(set->data, eventfds.data(), eventfds.size() * sizeof(int32_t));
        if (int rc = ioctl(VFIO_DEVICE_SET_IRQS, set); rc < 0)
            return fail(-rc, fmt::format("assigning {} eventfds to {} from vector {}", eventfds.size(), irq_name(index),
                                         start));
        return {};
    }

    Result<void> disable_irqs(uint32_t index) override {
        vfio_irq_set set{};
        set.argsz = sizeof(set);
        set.flags = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER;
        set.index = index;
        if (int rc = ioctl(VFIO_DEVICE_SET_IRQS, &set); rc < 0)
            return fail(-rc, fmt::format("disabling {}", irq_name(index)));
        return {};
    }

    const DmaLimits& dma_limits() const override { return backend_->limits(); }
    Result<void> dma_map(const DmaMapping& m) override { return backend_->map(m); }
    Result<void> dma_unmap(uint64_t iova, uint64_t size) override { return backend_->unmap(iova, size); }

    Result<void> reset() override {
        if (!info_.can_reset) return make_error(ENOTSUP, name_ + ": the device offers no reset");
        if (int rc = ioctl(VFIO_DEVICE_RESET); rc < 0) return fail(-rc, "VFIO_DEVICE_RESET");
        return {};
    }

    // The kernel cannot take a device from its user: an unbind from vfio-pci, or a hot removal, raises the
    // device request IRQ and then waits, asking again every few seconds, until the device is closed. Watching it
    // lets the application hear of it as the device going away, fail what is outstanding and close.
    void on_connection_lost(std::function<void(const Error&)> callback) override {
        stop_watching();
        if (callback) watch_release_requests(std::move(callback));
    }

    [[nodiscard]] const char* backend_kind() const { return backend_->kind(); }

private:
    struct RawRegion {
        RegionInfo info;
        uint64_t offset = 0;  // in the device fd
    };

    int fd() const { return backend_->device_fd(); }

    void watch_release_requests(std::function<void(const Error&)> callback) {
        constexpr auto kReq = static_cast<uint32_t>(PciIrq::kReq);
        auto* logger = &log::logger<log::kKernelVfio>();
        if (kReq >= info_.num_irqs) return;
        auto irq = irq_info(kReq);
        if (!irq || irq->count == 0 || !irq->eventfd) {
            logger->debug("{}: no device request IRQ: an unbind or removal will wait for the device to be closed",
                          name_);
            return;
        }
        UniqueFd request(::eventfd(0, EFD_CLOEXEC)), stop(::eventfd(0, EFD_CLOEXEC));
        if (!request || !stop) {
            logger->warn("{}: no eventfd for the device request IRQ: {}", name_, std::strerror(errno));
            return;
        }
        const int fd = request.get();
        if (auto r = set_irq_eventfds(kReq, 0, {&fd, 1}); !r) {
            logger->warn("{}: {}; an unbind or removal will wait for the device to be closed", name_,
                         r.error().message);
            return;
        }
        request_ = std::move(request);
        stop_ = std::move(stop);
        watcher_ = std::thread([this, cb = std::move(callback)] {
            pollfd fds[2] = {{request_.get(), POLLIN, 0}, {stop_.get(), POLLIN, 0}};
            for (;;) {
                if (::poll(fds, 2, -1) < 0) {
                    if (errno == EINTR) continue;
                    return;
                }
                if (fds[1].revents) return;
                if (fds[0].revents & POLLIN) {
                    cb(make_error(ENODEV, "the kernel asks for the device back (it is being unbound from vfio-pci "
                                          "or removed): close it"));
                    return;
                }
            }
        });
    }

    void stop_watching() {
        if (!watcher_.joinable()) return;
        const uint64_t one = 1;
        (void)!::write(stop_.get(), &one, sizeof(one));
        watcher_.join();
        (void)disable_irqs(static_cast<uint32_t>(PciIrq::kReq));
        request_.reset();
        stop_.reset();
    }

    // The device's ioctls: the result or -errno (vfio_ioctl.hpp).
    template <typename... Arg>
    int ioctl(unsigned long request, Arg... arg) const {
        return kernel::vfio_ioctl(fd(), request, arg...);
    }
    Error fail(int err, const std::string& what) const {
        return make_error(err, fmt::format("{}: {} failed: {}", name_, what, std::strerror(err)));
    }

    // Region info with its capability chain (sparse mmap, MSI-X mappable), cached.
    Result<RawRegion> raw_region(uint32_t index) {
        if (auto it = regions_.find(index); it != regions_.end()) return it->second;
        std::vector<uint8_t> buf(sizeof(vfio_region_info));
        for (int attempt = 0; attempt < 2; ++attempt) {
            auto* r = reinterpret_cast<vfio_region_info*>(buf.data());
            r->argsz = static_cast<uint32_t>(buf.size());
            r->index = index;
            if (int rc = ioctl(VFIO_DEVICE_GET_REGION_INFO, r); rc < 0) {
                // vfio-pci refuses the index of a region the function lacks (VGA on
                // anything but a VGA device): that is a region of size 0, not a failure.
                if (rc == -EINVAL && index < info_.num_regions) {
                    RawRegion none;
                    none.info.index = index;
                    regions_[index] = none;
                    return none;
                }
                return fail(-rc, fmt::format("VFIO_DEVICE_GET_REGION_INFO for {}", region_name(index)));
            }
            if (r->argsz <= buf.size()) break;
            buf.resize(r->argsz);
        }
        const auto* r = reinterpret_cast<const vfio_region_info*>(buf.data());
        RawRegion out;
        out.offset = r->offset;
        out.info.index = index;
        out.info.size = r->size;
        out.info.readable = r->flags & VFIO_REGION_INFO_FLAG_READ;
        out.info.writable = r->flags & VFIO_REGION_INFO_FLAG_WRITE;
        out.info.mappable = r->flags & VFIO_REGION_INFO_FLAG_MMAP;
        bool sparse = false;
        if ((r->flags & VFIO_REGION_INFO_FLAG_CAPS) && r->cap_offset) {
            uint32_t off = r->cap_offset;
            for (int guard = 0; off && off + sizeof(vfio_info_cap_header) <= buf.size() && guard < 64; ++guard) {
                const auto* hdr = reinterpret_cast<const vfio_info_cap_header*>(buf.data() + off);
                if (hdr->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
                    const auto* cap = reinterpret_cast<const vfio_region_info_cap_sparse_mmap*>(hdr);
                    if (off + sizeof(*cap) + cap->nr_areas * sizeof(vfio_region_sparse_mmap_area) <= buf.size()) {
                        sparse = true;
                        for (uint32_t i = 0; i < cap->nr_areas; ++i)
                            if (cap->areas[i].size)
                                out.info.mmap_areas.push_back({cap->areas[i].offset, cap->areas[i].size});
                    }
                }
                off = hdr->next;
            }
        }
        if (out.info.mappable && !sparse && out.info.size) out.info.mmap_areas.push_back({0, out.info.size});
        regions_[index] = out;
        return out;
    }

    std::string name_;
    std::unique_ptr<kernel::IommuBackend> backend_;
    DeviceInfo info_;
    std::map<uint32_t, RawRegion> regions_;
    UniqueFd request_, stop_;  // the device request IRQ, and the watcher's own wake-up
    std::thread watcher_;
};

IommuChoice from_environment(IommuChoice choice) {
    if (choice != IommuChoice::kAuto) return choice;
    const char* env = std::getenv("VFIOQ_IOMMU");
    if (!env) return choice;
    if (std::strcmp(env, "container") == 0) return IommuChoice::kContainer;
    if (std::strcmp(env, "iommufd") == 0) return IommuChoice::kIommufd;
    log::logger<log::kKernelVfio>().warn("VFIOQ_IOMMU={} is neither container nor iommufd; choosing automatically",
                                         env);
    return choice;
}

}  // namespace

Result<std::unique_ptr<Transport>> open_kernel_vfio(const std::string& bdf, const KernelVfioOptions& options) {
    const char* unsafe_env = std::getenv("VFIOQ_UNSAFE_NOIOMMU");
    const bool noiommu = options.unsafe_noiommu || (unsafe_env && std::strcmp(unsafe_env, "1") == 0);
    IommuChoice choice = from_environment(options.iommu);
    if (!sysfs::exists(bdf) || sysfs::driver(bdf) != "vfio-pci")
        return make_error(ENODEV, kernel::binding_problem(bdf));
    if (auto group = sysfs::iommu_group(bdf); group && !noiommu && sysfs::noiommu_group(*group))
        return make_error(EPERM, fmt::format("{}: IOMMU group {} is a no-IOMMU group (VFIO runs with "
                                             "enable_unsafe_noiommu_mode and no IOMMU): DMA would go to physical "
                                             "addresses with nothing to protect the host. Enable the IOMMU "
                                             "(intel_iommu=on or amd_iommu=on), or accept the risk with "
                                             "VFIOQ_UNSAFE_NOIOMMU=1",
                                             bdf, *group));
    Result<std::unique_ptr<kernel::IommuBackend>> backend = make_error(EINVAL, "");
    if (noiommu) {
        log::logger<log::kKernelVfio>().warn("{}: UNSAFE no-IOMMU mode: the device can reach any host memory", bdf);
        backend = kernel::open_container(bdf, true);
    } else {
        if (choice == IommuChoice::kAuto)
            choice = ::access("/dev/iommu", F_OK) == 0 && sysfs::vfio_cdev(bdf) ? IommuChoice::kIommufd
                                                                              : IommuChoice::kContainer;
        backend = choice == IommuChoice::kIommufd ? kernel::open_iommufd(bdf) : kernel::open_container(bdf, false);
    }
    if (!backend) return backend.error();
    auto t = std::make_unique<KernelVfioTransport>(bdf, std::move(*backend));
    if (auto r = t->init(); !r) return r.error();
    log::logger<log::kKernelVfio>().info("{}: opened through {}", bdf, t->backend_kind());
    return std::unique_ptr<Transport>(std::move(t));
}

}  // namespace vfioq
