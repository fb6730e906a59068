// SPDX-License-Identifier: MIT
// How the kernel's VFIO is reached: the legacy container and group (type1v2
// IOMMU, or no IOMMU), or iommufd with the VFIO device cdev. Each back-end
// opens the device fd and maps DMA; the transport above never branches on which.
#pragma once

#include <memory>
#include <string>

#include "vfioq/result.hpp"
#include "vfioq/transport.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::kernel {

class IommuBackend {
public:
    virtual ~IommuBackend() = default;
    // "container/group (type1v2)", "iommufd + cdev", "container/group (no IOMMU, unsafe)".
    [[nodiscard]] virtual const char* kind() const = 0;
    [[nodiscard]] virtual const DmaLimits& limits() const = 0;
    // Maps m.vaddr (the kernel pins by address) at m.iova.
    virtual Result<void> map(const DmaMapping& m) = 0;
    virtual Result<void> unmap(uint64_t iova, uint64_t size) = 0;
    [[nodiscard]] virtual int device_fd() const = 0;
};

// Open the function `bdf` (canonical "0000:03:00.0"). Errors name the device,
// the cause and the remedy.
Result<std::unique_ptr<IommuBackend>> open_container(const std::string& bdf, bool noiommu);
Result<std::unique_ptr<IommuBackend>> open_iommufd(const std::string& bdf);

// Why the device cannot be opened, from sysfs, when it is not bound to vfio-pci or has no IOMMU group.
std::string binding_problem(const std::string& bdf);

}  // namespace vfioq::kernel
