// SPDX-License-Identifier: MIT
#include "iova_allocator.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace vfioq::dma {

IovaAllocator::IovaAllocator(std::span<const IovaRange> usable, uint64_t floor) {
    for (const auto& r : usable) {
        const uint64_t start = std::max(r.start, floor);
        // Ranges are inclusive; the very last byte of the 64-bit space is given up
        // so that every free range has a representable exclusive end.
        const uint64_t end = r.end == ~0ull ? ~0ull : r.end + 1;
        if (start < end) free(start, end - start);
    }
}

Result<uint64_t> IovaAllocator::allocate(uint64_t size, uint64_t align) {
    if (size == 0 || align == 0 || (align & (align - 1)) != 0)
        return make_error(EINVAL, fmt::format("IOVA allocation of {:#x} bytes aligned to {:#x} is invalid", size,
                                              align));
    for (auto it = free_.begin(); it != free_.end(); ++it) {
        const uint64_t start = it->first, end = it->second;
        const uint64_t base = (start + align - 1) & ~(align - 1);
        if (base < start || base >= end || end - base < size) continue;
        // Carve [base, base + size) out of [start, end).
        free_.erase(it);
        if (start < base) free_.emplace(start, base);
        if (base + size < end) free_.emplace(base + size, end);
        return base;
    }
    return make_error(ENOSPC, fmt::format("no free IOVA range of {:#x} bytes aligned to {:#x} ({:#x} bytes free in "
                                          "{} ranges)",
                                          size, align, free_bytes(), free_.size()));
}

void IovaAllocator::free(uint64_t iova, uint64_t size) {
    if (size == 0) return;
    uint64_t start = iova, end = iova + size;
    auto next = free_.lower_bound(start);
    if (next != free_.begin()) {
        auto prev = std::prev(next);
        if (prev->second == start) {
            start = prev->first;
            free_.erase(prev);
        }
    }
    if (next != free_.end() && next->first == end) {
        end = next->second;
        free_.erase(next);
    }
    free_.emplace(start, end);
}

uint64_t IovaAllocator::free_bytes() const {
    uint64_t total = 0;
    for (const auto& [s, e] : free_) total += e - s;
    return total;
}

}  // namespace vfioq::dma
