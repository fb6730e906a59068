// SPDX-License-Identifier: MIT
// SGQ submission entries from I/O requests (docs/device-interface.md 3.1),
// and the card's status codes (3.4) as named statuses.
#pragma once

#include "io/queue_profile.hpp"

namespace vfioq::sgq {

class SgqCodec final : public io::CommandCodec {
public:
    // `bus`: physical addresses in no-IOMMU mode (DmaContext::bus_map()); null behind an IOMMU.
    SgqCodec(const dma::SglLimits& limits, uint64_t devmem_size, const dma::BusAddressMap* bus = nullptr)
        : limits_(limits), devmem_size_(devmem_size), bus_(bus) {}
    Result<int32_t> encode(const IoRequest& request, std::byte* sqe, dma::SglPagePool& pool) override;
    [[nodiscard]] IoStatus decode(uint16_t status) const override;
    [[nodiscard]] uint32_t length(const std::byte* sqe) const override;
    [[nodiscard]] uint32_t bytes(uint32_t dw0, IoStatus status, uint32_t requested) const override;
    [[nodiscard]] bool bytes_in_dw0() const override { return true; }

private:
    // [devaddr, devaddr + bytes) lies in the card's memory.
    [[nodiscard]] bool in_devmem(uint64_t devaddr, uint64_t bytes) const {
        return devaddr <= devmem_size_ && bytes <= devmem_size_ - devaddr;
    }

    dma::SglLimits limits_;
    uint64_t devmem_size_;
    const dma::BusAddressMap* bus_;
};

}  // namespace vfioq::sgq
