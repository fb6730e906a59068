// SPDX-License-Identifier: MIT
// The model's PCI configuration space: a 4 KiB image with a write mask, so
// that read-only fields stay put and BAR sizing works as on real hardware.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "vfioq/model_config.hpp"

namespace vfioq::model {

// Where the model places its capabilities.
inline constexpr uint32_t kPmCapOffset = 0x40;
inline constexpr uint32_t kMsixCapOffset = 0x50;
inline constexpr uint32_t kPcieCapOffset = 0x60;
inline constexpr uint32_t kConfigSize = 4096;

class ConfigSpace {
public:
    explicit ConfigSpace(const ModelConfig& config);

    // Byte-granular access; the caller has checked the range.
    void read(uint32_t offset, std::span<std::byte> out) const;
    // Returns true when the write asked for a function-level reset
    // (PCIe Device Control bit 15), which the device then performs.
    bool write(uint32_t offset, std::span<const std::byte> in);

    [[nodiscard]] uint16_t read16(uint32_t offset) const;
    void set16(uint32_t offset, uint16_t value);  // ignores the write mask: for the device itself

    [[nodiscard]] bool msix_enabled() const;
    [[nodiscard]] bool msix_function_masked() const;
    void set_msix_enabled(bool enabled);

private:
    std::array<uint8_t, kConfigSize> bytes_{};
    std::array<uint8_t, kConfigSize> writable_{};
};

}  // namespace vfioq::model
