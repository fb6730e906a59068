// SPDX-License-Identifier: MIT
// Which profile drives a device: the one level that knows both.
#include "nvme/nvme_controller.hpp"
#include "sgq/sgq_controller.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"

namespace vfioq {

Result<std::unique_ptr<Controller>> Controller::open(Device& device, const ControllerOptions& options) {
    // An NVMe controller says so in its class code; anything else is taken for the SGQ card,
    // whose bring-up checks its identity and says what it found instead.
    auto class_rev = device.config_read(0x08, 32);
    if (class_rev && (*class_rev >> 8) == nvme::kClassCode) return nvme::NvmeController::open(device, options);
    return sgq::SgqController::open(device, options);
}

}  // namespace vfioq
