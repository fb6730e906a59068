// SPDX-License-Identifier: MIT
#include "sgl_builder.hpp"

#include <fmt/format.h>

namespace vfioq::dma {

using sgq::SglDescriptor;

SglPagePool::SglPagePool(std::byte* base, uint64_t iova, uint32_t pages, const BusAddressMap* bus)
    : base_(base), address_(pages), next_(pages, -1), free_(pages), free_count_(pages) {
    for (uint32_t i = 0; i < pages; ++i) {
        free_[i] = pages - 1 - i;  // page 0 on top
        const uint64_t page_iova = iova + uint64_t{i} * kSglPageSize;
        address_[i] = bus ? bus->translate(page_iova, kSglPageSize).address : page_iova;
    }
}

int32_t SglPagePool::take() {
    if (free_count_ == 0) return -1;
    const uint32_t p = free_[--free_count_];
    next_[p] = -1;
    return static_cast<int32_t>(p);
}

void SglPagePool::give_chain(int32_t first) {
    while (first >= 0) {
        const int32_t next = next_[static_cast<uint32_t>(first)];
        free_[free_count_++] = static_cast<uint32_t>(first);
        first = next;
    }
}

int32_t SglPagePool::page_of(uint64_t address) const {
    for (uint32_t p = 0; p < pages(); ++p)
        if (address - address_[p] < kSglPageSize) return static_cast<int32_t>(p);
    return -1;
}

namespace {

// What CAP asks of one segment whose transfer has reached `total` bytes with it.
SglError check_segment(const DmaSegment& s, uint64_t total, const SglLimits& limits) {
    const uint64_t mask = (uint64_t{1} << limits.sge_align_log2) - 1;
    const uint64_t max_total = uint64_t{1} << limits.max_xfer_log2;
    if (s.len == 0) return SglError::kZeroLength;
    if ((s.iova & mask) || (s.len & mask)) return SglError::kMisaligned;
    if (s.len > max_total || total > max_total) return SglError::kTooLong;
    return SglError::kNone;
}

// Walks the merged descriptors of `segments`, calling emit(desc) for each; stops at the first error.
template <typename Emit>
SglResult merge(std::span<const DmaSegment> segments, const SglLimits& limits, const BusAddressMap* bus,
                Emit&& emit) {
    SglResult r;
    if (segments.empty()) {
        r.error = SglError::kEmpty;
        return r;
    }
    uint64_t cur_iova = 0, cur_len = 0;
    for (uint32_t i = 0; i < segments.size(); ++i) {
        const DmaSegment& s = segments[i];
        r.segment = i;
        const SglError error = check_segment(s, r.total + s.len, limits);
        // The total names where a transfer grew too long; a segment refused before that does not count.
        if (error == SglError::kNone || error == SglError::kTooLong) r.total += s.len;
        if (error != SglError::kNone) {
            r.error = error;
            return r;
        }
        // Behind an IOMMU a segment is one run; without one, each physically contiguous piece is.
        for (uint64_t done = 0; done < s.len;) {
            uint64_t addr = s.iova + done, len = s.len - done;
            if (bus) {
                const auto run = bus->translate(addr, len);
                if (run.address == 0) {
                    r.error = SglError::kNotMapped;
                    return r;
                }
                addr = run.address;
                len = run.len;
            }
            done += len;
            if (cur_len != 0 && cur_iova + cur_len == addr && cur_len + len <= UINT32_MAX) {
                cur_len += len;
                continue;
            }
            if (cur_len != 0) {
                emit(SglDescriptor::make(sgq::kSglData, cur_iova, static_cast<uint32_t>(cur_len)));
                ++r.descriptors;
            }
            cur_iova = addr;
            cur_len = len;
        }
    }
    emit(SglDescriptor::make(sgq::kSglData, cur_iova, static_cast<uint32_t>(cur_len)));
    ++r.descriptors;
    if (r.descriptors > limits.max_sge) r.error = SglError::kTooManyDescriptors;
    return r;
}

}  // namespace

SglResult build_sgl(std::span<const DmaSegment> segments, const SglLimits& limits, SglPagePool& pool,
                    SglDescriptor& dptr1, SglDescriptor& dptr2, const BusAddressMap* bus) {
    if (segments.size() == 1 && !bus) {
        // The common command: one segment behind an IOMMU, checked as merge() would and written at once.
        const DmaSegment& seg = segments[0];
        SglResult r;
        r.total = seg.len;
        r.error = check_segment(seg, seg.len, limits);
        if (r.error == SglError::kNone && limits.max_sge == 0) r.error = SglError::kTooManyDescriptors;
        if (r.error != SglError::kNone) return r;
        r.descriptors = 1;
        dptr1 = SglDescriptor::make(sgq::kSglData, seg.iova, static_cast<uint32_t>(seg.len));
        dptr2 = SglDescriptor{};
        return r;
    }
    // One pass keeps the first two descriptors: a list that fits inline is done then.
    SglDescriptor head[2]{};
    uint32_t seen = 0;
    SglResult r = merge(segments, limits, bus, [&](const SglDescriptor& d) {
        if (seen < 2) head[seen] = d;
        ++seen;
    });
    if (r.error != SglError::kNone) return r;
    const uint32_t n = r.descriptors;
    const bool two_inline = limits.inline_descriptors >= 2;
    dptr2 = SglDescriptor{};
    if (n <= limits.inline_descriptors) {
        dptr1 = head[0];
        if (n == 2) dptr2 = head[1];
        return r;
    }
    // With two inline, DPTR1 holds the first descriptor and DPTR2 points at the rest;
    // with one, DPTR1 points at them all. They go into pages of kSglPerPage, each full
    // page but the last giving its final slot to the link to the next.
    const uint32_t rest = two_inline ? n - 1 : n;
    const uint32_t pages = rest <= kSglPerPage ? 1 : (rest - 1 + kSglPerPage - 2) / (kSglPerPage - 1);
    if (pool.free_pages() < pages) {
        r.error = SglError::kNoPages;
        return r;
    }
    int32_t page = pool.take();
    r.first_page = page;
    uint32_t left = rest;  // descriptors not yet placed in a page
    auto array_kind = [](uint32_t remaining) {
        return remaining <= kSglPerPage ? sgq::kSglLastSegment : sgq::kSglSegment;
    };
    auto array_len = [](uint32_t remaining) {
        return (remaining <= kSglPerPage ? remaining : kSglPerPage) * uint32_t{sizeof(SglDescriptor)};
    };
    (two_inline ? dptr2 : dptr1) =
        SglDescriptor::make(array_kind(left), pool.page_address(static_cast<uint32_t>(page)), array_len(left));
    SglDescriptor* slot = pool.page(static_cast<uint32_t>(page));
    uint32_t used = 0;  // slots used in the current page
    bool first = two_inline;
    merge(segments, limits, bus, [&](const SglDescriptor& d) {
        if (first) {
            dptr1 = d;
            first = false;
            return;
        }
        if (used == kSglPerPage - 1 && left > 1) {
            // This page is full but for its link: chain to a fresh one.
            const int32_t next = pool.take();
            pool.link(static_cast<uint32_t>(page), next);
            slot[used] = SglDescriptor::make(array_kind(left), pool.page_address(static_cast<uint32_t>(next)),
                                             array_len(left));
            page = next;
            slot = pool.page(static_cast<uint32_t>(page));
            used = 0;
        }
        slot[used++] = d;
        --left;
    });
    return r;
}

std::string describe(const SglResult& r, std::span<const DmaSegment> segments, const SglLimits& limits) {
    auto seg = [&] {
        const DmaSegment& s = segments[r.segment];
        return fmt::format("segment {} (IOVA {:#x}, {} bytes)", r.segment, s.iova, s.len);
    };
    switch (r.error) {
        case SglError::kNone: return "no error";
        case SglError::kEmpty: return "no segments were given";
        case SglError::kZeroLength: return seg() + " is empty";
        case SglError::kMisaligned:
            return fmt::format("{} is not aligned to {} bytes in address and length (CAP.SGE_ALIGN)", seg(),
                               uint64_t{1} << limits.sge_align_log2);
        case SglError::kTooLong:
            return fmt::format("the transfer reaches {} bytes at {}, beyond the {} bytes a command may move "
                               "(CAP.MAX_XFER)",
                               r.total, seg(), uint64_t{1} << limits.max_xfer_log2);
        case SglError::kTooManyDescriptors:
            return fmt::format("{} segments remain after merging neighbours, more than the {} a command may carry "
                               "(CAP.MAX_SGE)",
                               r.descriptors, limits.max_sge);
        case SglError::kNotPageAligned:
            return fmt::format("{}: with PRPs every segment but the first must start on a 4 KiB page and every "
                               "segment but the last must end on one (the controller has no SGL support)",
                               seg());
        case SglError::kNotMapped:
            return seg() + " is not in DMA memory of this device (a buffer or a held registration)";
        case SglError::kNoPages:
            return fmt::format("the {} descriptors need segment-array pages and the queue pair's pool has too few "
                               "free now",
                               r.descriptors);
    }
    return "unknown SGL error";
}

}  // namespace vfioq::dma
