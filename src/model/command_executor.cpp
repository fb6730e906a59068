// SPDX-License-Identifier: MIT
#include "command_executor.hpp"

#include <cstring>

#include "sgq_device.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq::model {

using sgq::SglDescriptor;
using sgq::Status;

namespace {

bool reserved_clear(const SglDescriptor& d) {
    return d.reserved[0] == 0 && d.reserved[1] == 0 && d.reserved[2] == 0 && (d.type & 0x0F) == 0;
}

bool is_segment(const SglDescriptor& d) {
    return d.kind() == sgq::kSglSegment || d.kind() == sgq::kSglLastSegment;
}

}  // namespace

CommandExecutor::CommandExecutor(SgqDevice& device) : device_(device) {
    data_.reserve(device.config().max_sge);
}

CommandOutcome CommandExecutor::execute(DmaSpace::Reader& reader, uint16_t qid, const sgq::SubmissionEntry& sqe,
                                        uint64_t epoch) {
    const ModelConfig& cfg = device_.config();
    if (sqe.opcode != sgq::kOpNop && sqe.opcode != sgq::kOpWrite && sqe.opcode != sgq::kOpRead)
        return {Status::kInvalidOpcode, 0};
    if (sqe.flags != 0 || sqe.reserved1 != 0 || sqe.reserved2 != 0 || !reserved_clear(sqe.dptr1) ||
        !reserved_clear(sqe.dptr2))
        return {Status::kInvalidField, 0};
    if (sqe.opcode == sgq::kOpNop) return {sqe.length == 0 ? Status::kSuccess : Status::kInvalidField, 0};
    if (sqe.length == 0 || uint64_t{sqe.length} > (1ull << cfg.max_xfer)) return {Status::kLengthInvalid, 0};
    if (sqe.devaddr > cfg.devmem_size || sqe.length > cfg.devmem_size - sqe.devaddr)
        return {Status::kDevaddrRange, 0};
    if (Status s = collect_sgl(reader, qid, sqe); s != Status::kSuccess) return {s, 0};
    uint64_t total = 0;
    for (const auto& d : data_) total += d.len;
    if (total != sqe.length) {
        device_.record_error(sgq::kErrSgl, qid, sqe.cid);
        return {Status::kSglLengthMismatch, 0};
    }
    if (const int32_t forced = device_.take_forced_status(); forced >= 0) return {static_cast<Status>(forced), 0};
    if (cfg.null_data) return {Status::kSuccess, sqe.length};
    uint32_t moved = 0;
    const Status s = move_data(reader, qid, sqe, epoch, moved);
    return {s, moved};
}

Status CommandExecutor::add_data(const SglDescriptor& d) {
    const uint64_t align_mask = (1ull << device_.config().sge_align) - 1;
    if (d.len == 0 || (d.addr & align_mask) || (d.len & align_mask)) return Status::kSglInvalid;
    if (data_.size() >= device_.config().max_sge) return Status::kSglInvalid;
    data_.push_back(d);
    return Status::kSuccess;
}

Status CommandExecutor::collect_sgl(DmaSpace::Reader& reader, uint16_t qid, const sgq::SubmissionEntry& sqe) {
    data_.clear();
    Status s = Status::kSuccess;
    const SglDescriptor& d1 = sqe.dptr1;
    const SglDescriptor& d2 = sqe.dptr2;
    if (d1.kind() == sgq::kSglData) {
        s = add_data(d1);
        if (s == Status::kSuccess && !d2.unused()) {
            if (d2.kind() == sgq::kSglData)
                s = add_data(d2);
            else if (is_segment(d2))
                s = walk_segments(reader, qid, sqe.cid, d2);
            else
                s = Status::kSglInvalid;
        }
    } else if (is_segment(d1)) {
        s = d2.unused() ? walk_segments(reader, qid, sqe.cid, d1) : Status::kSglInvalid;
    } else {
        s = Status::kSglInvalid;
    }
    if (s == Status::kSglInvalid) device_.record_error(sgq::kErrSgl, qid, sqe.cid);
    return s;
}

Status CommandExecutor::walk_segments(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, SglDescriptor pointer) {
    const uint32_t max_sge = device_.config().max_sge;
    // Each array holds at least one descriptor, so a chain cannot be longer than
    // MAX_SGE arrays plus the one that would overflow: that bounds a loop in it.
    for (uint32_t arrays = 0; arrays <= max_sge; ++arrays) {
        if (pointer.addr % 16 != 0 || pointer.len == 0 || pointer.len % 16 != 0) return Status::kSglInvalid;
        const uint64_t count = pointer.len / 16;
        // More descriptors than could ever be valid: refuse before fetching them.
        if (count > uint64_t{max_sge} + 1 - data_.size()) return Status::kSglInvalid;
        segment_.resize(count);
        auto bytes = std::as_writable_bytes(std::span(segment_));
        if (!device_.dma_read(reader, qid, cid, pointer.addr, bytes)) return Status::kDmaFault;
        const bool last_array = pointer.kind() == sgq::kSglLastSegment;
        std::optional<SglDescriptor> next;
        for (uint64_t i = 0; i < count; ++i) {
            const SglDescriptor& d = segment_[i];
            if (!reserved_clear(d)) return Status::kInvalidField;
            if (d.kind() == sgq::kSglData) {
                if (Status s = add_data(d); s != Status::kSuccess) return s;
            } else if (is_segment(d) && !last_array && i + 1 == count) {
                next = d;
            } else {
                return Status::kSglInvalid;
            }
        }
        if (!next) return Status::kSuccess;
        pointer = *next;
    }
    return Status::kSglInvalid;
}

Status CommandExecutor::move_data(DmaSpace::Reader& reader, uint16_t qid, const sgq::SubmissionEntry& sqe,
                                  uint64_t epoch, uint32_t& moved) {
    auto devmem = device_.devmem().subspan(sqe.devaddr, sqe.length);
    // A broken card (by request): one bit of this read arrives flipped; card memory keeps the truth.
    int64_t corrupt_at = -1;
    if (sqe.opcode == sgq::kOpRead && device_.corrupt_this_read()) corrupt_at = sqe.length / 2;
    uint64_t at = 0;
    for (const auto& d : data_) {
        // A controller reset stops the card's DMA at once.
        if (device_.epoch() != epoch) return Status::kAborted;
        auto card = devmem.subspan(at, d.len);
        bool ok;
        if (sqe.opcode == sgq::kOpWrite) {
            ok = device_.dma_read(reader, qid, sqe.cid, d.addr, card).has_value();
        } else if (corrupt_at >= 0 && uint64_t(corrupt_at) >= at && uint64_t(corrupt_at) < at + d.len) {
            corrupted_.assign(card.begin(), card.end());
            corrupted_[uint64_t(corrupt_at) - at] ^= std::byte{0x10};
            ok = device_.dma_write(reader, qid, sqe.cid, d.addr, corrupted_).has_value();
        } else {
            ok = device_.dma_write(reader, qid, sqe.cid, d.addr, card).has_value();
        }
        if (!ok) return Status::kDmaFault;
        at += d.len;
        moved = static_cast<uint32_t>(at);
    }
    return Status::kSuccess;
}

}  // namespace vfioq::model
