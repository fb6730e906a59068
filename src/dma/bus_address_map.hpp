// SPDX-License-Identifier: MIT
// No-IOMMU mode: the device sees physical addresses, yet vfioq keeps handing
// out IOVAs so that buffers, registrations and segments work as they do behind
// an IOMMU. Those IOVAs are handles into this map, which holds the physical
// page of every 4 KiB page behind them; whatever gives the device an address
// (SGL and PRP builders, ring bases) translates through it and splits where
// physical pages are not contiguous.
//
// The handles live far above any RAM (at 2^47): one that reached the device
// untranslated would hit no memory rather than somebody else's.
//
// Threading: set() and clear() are control-path calls that the caller
// serialises; translate() takes no lock and may run beside them (for other
// pages) on any thread.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>

#include "vfioq/result.hpp"
#include "vfioq/transport.hpp"

namespace vfioq::dma {

class BusAddressMap {
public:
    static constexpr uint64_t kPageSize = 4096;
    static constexpr uint64_t kBase = uint64_t{1} << 47;
    static constexpr uint64_t kChunkBytes = uint64_t{1} << 30;
    static constexpr uint32_t kChunks = 256;  // 256 GiB of handles
    static constexpr uint64_t kSpan = kChunkBytes * kChunks;

    BusAddressMap() = default;
    BusAddressMap(const BusAddressMap&) = delete;
    BusAddressMap& operator=(const BusAddressMap&) = delete;

    // The handle space, for the IOVA allocator.
    static IovaRange range() { return {kBase, kBase + kSpan - 1}; }

    // Records that the page-aligned handle `iova` + 4 KiB * i is backed by the
    // physical page `physical_pages[i]` (page aligned, non-zero).
    Result<void> set(uint64_t iova, std::span<const uint64_t> physical_pages);
    // Forgets [iova, iova + size).
    void clear(uint64_t iova, uint64_t size);

    struct Run {
        uint64_t address = 0;  // physical; 0 if the first page is not mapped
        uint64_t len = 0;      // bytes from it that are physically contiguous, at most the length asked
    };
    // Fast path: the physical address of `iova` and how far it runs contiguously (up to `len`).
    [[nodiscard]] Run translate(uint64_t iova, uint64_t len) const {
        Run r;
        uint64_t phys = entry(iova);
        if (phys == 0) return r;
        const uint64_t offset = iova % kPageSize;
        r.address = phys + offset;
        r.len = std::min(len, kPageSize - offset);
        while (r.len < len) {
            const uint64_t next = entry(iova + r.len);
            if (next != phys + kPageSize) break;
            phys = next;
            r.len += std::min(len - r.len, kPageSize);
        }
        return r;
    }

private:
    static constexpr uint64_t kPagesPerChunk = kChunkBytes / kPageSize;
    using Chunk = std::atomic<uint64_t>[];

    // The physical page behind the handle page of `iova`, or 0.
    [[nodiscard]] uint64_t entry(uint64_t iova) const {
        if (iova < kBase || iova - kBase >= kSpan) return 0;
        const uint64_t off = iova - kBase;
        const std::atomic<uint64_t>* chunk = chunks_[off / kChunkBytes].load(std::memory_order_acquire);
        if (!chunk) return 0;
        return chunk[(off % kChunkBytes) / kPageSize].load(std::memory_order_relaxed);
    }

    std::array<std::atomic<std::atomic<uint64_t>*>, kChunks> chunks_{};
    std::array<std::unique_ptr<Chunk>, kChunks> owned_{};
};

}  // namespace vfioq::dma
