// SPDX-License-Identifier: MIT
// A transport with no device behind it, for tests of what sits on a transport
// without touching registers: DMA maps are kept in a table (overlaps and
// unmaps of what was never mapped refused), interrupts are accepted.
#pragma once

#include <map>
#include <string>

#include "vfioq/transport.hpp"

namespace vfioq::test {

class FakeTransport : public Transport {
public:
    explicit FakeTransport(bool pins, bool physical = false) {
        limits_.pins_memory = pins;
        limits_.physical_addresses = physical;
    }
    const std::string& name() const override { return name_; }
    const DeviceInfo& device_info() const override { return info_; }
    Result<RegionInfo> region_info(uint32_t) override { return make_error(ENOTSUP, "none"); }
    Result<IrqInfo> irq_info(uint32_t) override { return make_error(ENOTSUP, "none"); }
    Result<void> region_read(uint32_t, uint64_t, std::span<std::byte>) override { return make_error(ENOTSUP, "none"); }
    Result<void> region_write(uint32_t, uint64_t, std::span<const std::byte>) override {
        return make_error(ENOTSUP, "none");
    }
    Result<RegionMapping> map_region(uint32_t, const MmapArea&) override { return make_error(ENOTSUP, "none"); }
    Result<void> set_irq_eventfds(uint32_t, uint32_t, std::span<const int>) override { return {}; }
    Result<void> disable_irqs(uint32_t) override { return {}; }
    const DmaLimits& dma_limits() const override { return limits_; }
    Result<void> dma_map(const DmaMapping& m) override {
        if (mapped.count(m.iova)) return make_error(EEXIST, "overlap");
        mapped[m.iova] = m;
        return {};
    }
    Result<void> dma_unmap(uint64_t iova, uint64_t size) override {
        auto it = mapped.find(iova);
        if (it == mapped.end() || it->second.size != size) return make_error(ENOENT, "not mapped");
        mapped.erase(it);
        ++unmaps;
        return {};
    }
    Result<void> reset() override { return {}; }

    std::map<uint64_t, DmaMapping> mapped;
    int unmaps = 0;

private:
    std::string name_ = "fake-card";
    DeviceInfo info_;
    DmaLimits limits_;
};

}  // namespace vfioq::test
