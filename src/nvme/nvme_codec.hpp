// SPDX-License-Identifier: MIT
// NVM read, write and flush commands from I/O requests: the card address is a
// byte offset in namespace 1 and must fall on blocks; data goes by SGL when
// the controller supports it, else by PRPs. NVMe status as named statuses.
#pragma once

#include "io/queue_profile.hpp"

namespace vfioq::nvme {

struct NamespaceGeometry {
    uint32_t nsid = 1;
    uint32_t block_size = 512;
    uint64_t blocks = 0;
    uint64_t max_transfer = 0;  // bytes (MDTS)
    bool sgl = false;           // data by SGL rather than PRP
    uint32_t max_segments = 1024;
};

class NvmeCodec final : public io::CommandCodec {
public:
    // `bus`: physical addresses in no-IOMMU mode (DmaContext::bus_map()); null behind an IOMMU.
    explicit NvmeCodec(const NamespaceGeometry& ns, const dma::BusAddressMap* bus = nullptr) : ns_(ns), bus_(bus) {}
    Result<int32_t> encode(const IoRequest& request, std::byte* sqe, dma::SglPagePool& pool) override;
    [[nodiscard]] IoStatus decode(uint16_t status) const override;
    [[nodiscard]] uint32_t length(const std::byte* sqe) const override;
    [[nodiscard]] uint32_t bytes(uint32_t dw0, IoStatus status, uint32_t requested) const override;

private:
    NamespaceGeometry ns_;
    const dma::BusAddressMap* bus_;
};

// SCT and SC of a completion's status field as a named status.
IoStatus decode_status(uint16_t status);

}  // namespace vfioq::nvme
