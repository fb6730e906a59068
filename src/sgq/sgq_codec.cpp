// SPDX-License-Identifier: MIT
#include "sgq_codec.hpp"

#include <fmt/format.h>

#include <cstddef>
#include <cstring>

#include "engine/queue_engine.hpp"
#include "vfioq/sgq_commands.hpp"

namespace vfioq::sgq {

Result<int32_t> SgqCodec::encode(const IoRequest& req, std::byte* out, dma::SglPagePool& pool) {
    // Fields written where they go (the caller zeroed the entry): building a copy and then
    // copying it whole would read back the descriptors' small stores as one wide load,
    // which the CPU cannot forward and stalls on.
    static_assert(sizeof(SubmissionEntry) == engine::kSqEntrySize && alignof(SubmissionEntry) <= 8);
    auto& sqe = *reinterpret_cast<SubmissionEntry*>(out);
    sqe.devaddr = req.devaddr;
    int32_t page = -1;
    switch (req.op) {
        case Opcode::kNop:
            if (!req.segments.empty()) return make_error(EINVAL, "a NOP carries no segments");
            sqe.opcode = kOpNop;
            break;
        case Opcode::kWrite:
        case Opcode::kRead: {
            sqe.opcode = req.op == Opcode::kWrite ? kOpWrite : kOpRead;
            if (req.segments.size() == 1 && dma::one_inline_segment(req.segments[0], limits_, bus_) &&
                in_devmem(req.devaddr, req.segments[0].len)) [[likely]] {
                // The common command, written here: DPTR2 stays as the caller zeroed it.
                const DmaSegment& seg = req.segments[0];
                sqe.dptr1 = SglDescriptor::make(kSglData, seg.iova, static_cast<uint32_t>(seg.len));
                sqe.length = static_cast<uint32_t>(seg.len);
                break;
            }
            const auto sgl = dma::build_sgl(req.segments, limits_, pool, sqe.dptr1, sqe.dptr2, bus_);
            if (sgl.error == dma::SglError::kNoPages) return static_error(EAGAIN, dma::kNoPagesReason);
            if (sgl.error != dma::SglError::kNone)
                return make_error(EINVAL, fmt::format("{} at card address {:#x}: {}",
                                                      req.op == Opcode::kWrite ? "write" : "read", req.devaddr,
                                                      dma::describe(sgl, req.segments, limits_)));
            if (!in_devmem(req.devaddr, sgl.total)) {
                pool.give_chain(sgl.first_page);
                return make_error(EINVAL, fmt::format("card address range [{:#x}, {:#x}) is beyond the card's {:#x} "
                                                      "bytes of memory",
                                                      req.devaddr, req.devaddr + sgl.total, devmem_size_));
            }
            sqe.length = static_cast<uint32_t>(sgl.total);
            page = sgl.first_page;
            break;
        }
        default: return make_error(EINVAL, "unknown opcode");
    }
    return page;
}

IoStatus SgqCodec::decode(uint16_t raw) const {
    return raw <= static_cast<uint16_t>(Status::kInternal) ? static_cast<IoStatus>(raw)
                                                           : IoStatus::kUnknownDeviceStatus;
}

uint32_t SgqCodec::length(const std::byte* sqe) const {
    uint32_t len;
    std::memcpy(&len, sqe + offsetof(SubmissionEntry, length), sizeof(len));
    return len;
}

uint32_t SgqCodec::bytes(uint32_t dw0, IoStatus, uint32_t) const { return dw0; }

}  // namespace vfioq::sgq
