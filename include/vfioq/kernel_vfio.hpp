// SPDX-License-Identifier: MIT
// The kernel's VFIO as a transport: a PCI function bound to vfio-pci, reached
// through iommufd and the VFIO device cdev when the kernel offers them, else
// through the legacy container and group.
#pragma once

#include <memory>
#include <string>

#include "vfioq/export.hpp"
#include "vfioq/result.hpp"
#include "vfioq/transport.hpp"

namespace vfioq {

enum class IommuChoice {
    kAuto,       // iommufd + cdev when offered, else container/group; VFIOQ_IOMMU=container|iommufd forces one
    kContainer,  // legacy container/group with the type1v2 IOMMU
    kIommufd,    // iommufd + VFIO device cdev
};

struct KernelVfioOptions {
    IommuChoice iommu = IommuChoice::kAuto;
    // No IOMMU at all (vfio.enable_unsafe_noiommu_mode=1): the device reaches
    // any host memory by physical address. Only for hosts without an IOMMU, on
    // a card you trust: nothing protects the host from a stray DMA. Also set by
    // VFIOQ_UNSAFE_NOIOMMU=1.
    bool unsafe_noiommu = false;
};

// Opens a PCI function ("0000:03:00.0"). Errors say the cause and the remedy:
// not bound to vfio-pci, IOMMU off, group not viable (with its members), no
// permission on the device node.
VFIOQ_API Result<std::unique_ptr<Transport>> open_kernel_vfio(const std::string& bdf,
                                                              const KernelVfioOptions& options = {});

}  // namespace vfioq
