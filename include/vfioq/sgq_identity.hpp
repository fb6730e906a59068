// SPDX-License-Identifier: MIT
// Whether a device is the SGQ card, asked before anything is written to it:
// tools inspect any vfio-user server or PCI function, and only the card has
// the registers they name.
#pragma once

#include <optional>
#include <string>

#include "vfioq/export.hpp"

namespace vfioq {
class Device;
}

namespace vfioq::sgq {

// Empty when the device is the SGQ card; otherwise why not, in words that
// name what was found: no BAR0, a BAR0 of a size other than the contract's
// 16 KiB (docs/device-interface.md, section 1), or an ID register that reads
// something else than "SGQD" (all-ones: the card is gone or not responding).
VFIOQ_API std::optional<std::string> why_not_sgq(Device& device);

}  // namespace vfioq::sgq
