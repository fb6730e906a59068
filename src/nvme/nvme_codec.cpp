// SPDX-License-Identifier: MIT
#include "nvme_codec.hpp"

#include <fmt/format.h>

#include <cstring>

#include "dma/prp_builder.hpp"
#include "nvme_registers.hpp"

namespace vfioq::nvme {

Result<int32_t> NvmeCodec::encode(const IoRequest& req, std::byte* out, dma::SglPagePool& pool) {
    Command c{};
    c.dw[1] = ns_.nsid;
    int32_t page = -1;
    if (req.op == Opcode::kNop) {
        // NVMe has no NOP: a flush moves no data and completes at once on QEMU's controller.
        if (!req.segments.empty()) return make_error(EINVAL, "a NOP carries no segments");
        c.dw[0] = kIoFlush;
        std::memcpy(out, &c, sizeof(c));
        return page;
    }
    if (req.op != Opcode::kWrite && req.op != Opcode::kRead) return make_error(EINVAL, "unknown opcode");
    const char* verb = req.op == Opcode::kWrite ? "write" : "read";
    uint64_t total = 0;
    uint8_t psdt = 0;
    if (ns_.sgl) {
        const dma::SglLimits limits{ns_.max_segments, 0, 31, 1};
        sgq::SglDescriptor d1{}, d2{};
        const auto sgl = dma::build_sgl(req.segments, limits, pool, d1, d2, bus_);
        if (sgl.error == dma::SglError::kNoPages) return static_error(EAGAIN, dma::kNoPagesReason);
        if (sgl.error != dma::SglError::kNone)
            return make_error(EINVAL, fmt::format("{} at byte {:#x}: {}", verb, req.devaddr,
                                                  dma::describe(sgl, req.segments, limits)));
        std::memcpy(&c.dw[6], &d1, sizeof(d1));
        total = sgl.total;
        page = sgl.first_page;
        psdt = kPsdtSgl;
    } else {
        const auto prp = dma::build_prp(req.segments, ns_.max_transfer, pool, bus_);
        if (prp.error == dma::SglError::kNoPages) return static_error(EAGAIN, dma::kNoPagesReason);
        if (prp.error != dma::SglError::kNone) {
            const dma::SglLimits limits{ns_.max_segments, 2, 31, 1};
            dma::SglResult as_sgl{prp.error, prp.segment, 0, prp.total, -1};
            return make_error(EINVAL, fmt::format("{} at byte {:#x}: {}", verb, req.devaddr,
                                                  dma::describe(as_sgl, req.segments, limits)));
        }
        std::memcpy(&c.dw[6], &prp.prp1, 8);
        std::memcpy(&c.dw[8], &prp.prp2, 8);
        total = prp.total;
        page = prp.first_page;
    }
    auto refuse = [&](std::string why) {
        pool.give_chain(page);
        return make_error(EINVAL, fmt::format("{} at byte {:#x} of {} bytes: {}", verb, req.devaddr, total, why));
    };
    if (req.devaddr % ns_.block_size || total % ns_.block_size)
        return refuse(fmt::format("NVMe moves whole blocks of {} bytes: the address and length must be multiples",
                                  ns_.block_size));
    if (ns_.max_transfer && total > ns_.max_transfer)
        return refuse(fmt::format("beyond the {} bytes the controller takes per command (MDTS)", ns_.max_transfer));
    const uint64_t slba = req.devaddr / ns_.block_size, nlb = total / ns_.block_size;
    if (slba > ns_.blocks || nlb > ns_.blocks - slba)
        return refuse(fmt::format("beyond the namespace's {} blocks", ns_.blocks));
    if (nlb > 65536) return refuse("more than 65536 blocks in one command");
    c.dw[0] = (req.op == Opcode::kWrite ? kIoWrite : kIoRead) | uint32_t{psdt} << 8;
    c.dw[10] = static_cast<uint32_t>(slba);
    c.dw[11] = static_cast<uint32_t>(slba >> 32);
    c.dw[12] = static_cast<uint32_t>(nlb - 1);
    std::memcpy(out, &c, sizeof(c));
    return page;
}

IoStatus NvmeCodec::decode(uint16_t status) const { return decode_status(status); }

uint32_t NvmeCodec::length(const std::byte* sqe) const {
    Command c;
    std::memcpy(&c, sqe, sizeof(c));
    const uint8_t opc = c.dw[0] & 0xFF;
    if (opc != kIoRead && opc != kIoWrite) return 0;
    return ((c.dw[12] & 0xFFFF) + 1) * ns_.block_size;
}

uint32_t NvmeCodec::bytes(uint32_t, IoStatus status, uint32_t requested) const {
    return status == IoStatus::kSuccess ? requested : 0;
}

IoStatus decode_status(uint16_t status) {
    const uint32_t sc = status & 0xFF, sct = (status >> 8) & 0x7;
    if (sct != 0) return IoStatus::kUnknownDeviceStatus;
    switch (sc) {
        case 0x00: return IoStatus::kSuccess;
        case 0x01: return IoStatus::kInvalidOpcode;
        case 0x02: return IoStatus::kInvalidField;
        case 0x04: return IoStatus::kDmaFault;  // data transfer error
        case 0x06: return IoStatus::kInternal;
        case 0x07:                              // abort requested
        case 0x08: return IoStatus::kAborted;   // aborted: SQ deletion
        case 0x0D:                              // invalid SGL segment descriptor
        case 0x0E:                              // invalid number of SGL descriptors
        case 0x11:                              // SGL descriptor type invalid
        case 0x13: return IoStatus::kSglInvalid;  // invalid PRP offset
        case 0x0F: return IoStatus::kSglLengthMismatch;  // data SGL length invalid
        case 0x80:                                       // LBA out of range
        case 0x81: return IoStatus::kDevaddrRange;       // capacity exceeded
        default: return IoStatus::kUnknownDeviceStatus;
    }
}

}  // namespace vfioq::nvme
