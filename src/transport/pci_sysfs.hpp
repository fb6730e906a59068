// SPDX-License-Identifier: MIT
// What sysfs says about a PCI function, for opening it through VFIO and for
// errors that say what is wrong and how to fix it.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace vfioq::sysfs {

// The driver bound to the function ("vfio-pci", "nvme"), or empty.
std::string driver(const std::string& bdf);
// The IOMMU group number, or nullopt when the function has none (IOMMU off).
std::optional<unsigned> iommu_group(const std::string& bdf);
// The functions in an IOMMU group.
std::vector<std::string> group_devices(unsigned group);
// "vfio3" for /dev/vfio/devices/vfio3, when the kernel offers the VFIO cdev.
std::optional<std::string> vfio_cdev(const std::string& bdf);
// True when the function exists.
bool exists(const std::string& bdf);
// Whether the group is one VFIO made up for no-IOMMU mode (named "vfio-noiommu"), with no IOMMU behind it.
bool noiommu_group(unsigned group);
// Whether the host boots with an IOMMU at all (a group in /sys/kernel/iommu_groups that is not no-IOMMU).
bool host_has_iommu();

}  // namespace vfioq::sysfs
