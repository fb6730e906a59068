// SPDX-License-Identifier: MIT
#include "vfioq/sgq_identity.hpp"

#include <fmt/format.h>

#include "vfioq/device.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq::sgq {

std::optional<std::string> why_not_sgq(Device& device) {
    const uint64_t bar0 = device.bar_size(kRegisterBar);
    if (bar0 == 0) return std::string("it has no BAR0, where an SGQ card has its registers");
    if (bar0 != kBar0Size)
        return fmt::format("its BAR0 is {:#x} bytes; an SGQ card's is {:#x} (16 KiB, device interface section 1)",
                           bar0, kBar0Size);
    auto id = device.read32(kRegisterBar, kRegId);
    if (!id) return fmt::format("its ID register cannot be read: {}", id.error().message);
    if (*id == 0xFFFFFFFFu) return std::string("its ID register reads all-ones: the card is gone or not responding");
    if (*id != kIdValue)
        return fmt::format("its ID register (BAR0 + 0x0) reads {:#010x}, not {:#010x} (\"SGQD\")", *id, kIdValue);
    return std::nullopt;
}

}  // namespace vfioq::sgq
