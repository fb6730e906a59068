// SPDX-License-Identifier: MIT
#include "pci_sysfs.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace vfioq::sysfs {

namespace fs = std::filesystem;

namespace {
fs::path device_dir(const std::string& bdf) { return fs::path("/sys/bus/pci/devices") / bdf; }
}  // namespace

bool exists(const std::string& bdf) {
    std::error_code ec;
    return fs::exists(device_dir(bdf), ec);
}

std::string driver(const std::string& bdf) {
    std::error_code ec;
    auto target = fs::read_symlink(device_dir(bdf) / "driver", ec);
    return ec ? std::string() : target.filename().string();
}

std::optional<unsigned> iommu_group(const std::string& bdf) {
    std::error_code ec;
    auto target = fs::read_symlink(device_dir(bdf) / "iommu_group", ec);
    if (ec) return std::nullopt;
    try {
        return static_cast<unsigned>(std::stoul(target.filename().string()));
    } catch (...) {
        return std::nullopt;
    }
}

std::vector<std::string> group_devices(unsigned group) {
    std::vector<std::string> out;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path("/sys/kernel/iommu_groups") / std::to_string(group) /
                                                    "devices",
                                                ec))
        out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
}

std::optional<std::string> vfio_cdev(const std::string& bdf) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(device_dir(bdf) / "vfio-dev", ec)) {
        const auto name = e.path().filename().string();
        if (name.rfind("vfio", 0) == 0) return name;
    }
    return std::nullopt;
}

bool noiommu_group(unsigned group) {
    std::ifstream name(fs::path("/sys/kernel/iommu_groups") / std::to_string(group) / "name");
    std::string line;
    return std::getline(name, line) && line == "vfio-noiommu";
}

bool host_has_iommu() {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path("/sys/kernel/iommu_groups"), ec)) {
        try {
            if (!noiommu_group(static_cast<unsigned>(std::stoul(e.path().filename().string())))) return true;
        } catch (...) {
        }
    }
    return false;
}

}  // namespace vfioq::sysfs
