// SPDX-License-Identifier: MIT
// The registration cache: application memory (any pointer and length) mapped
// for DMA, page-rounded, looked up by virtual address.
//
// - A registration that a live mapping already covers is a hit: no mapping call.
// - A new range that overlaps or touches live mappings is merged with them into
//   one mapping; the old ones leave the index and are unmapped as soon as no
//   registration holds them (the kernel's type1 IOMMU cannot unmap part of a
//   mapping, and allows only about 65535 of them).
// - A mapping nobody holds stays cached, least recently used first in line
//   to be unmapped when the budget (mappings or bytes) would be exceeded.
// - Holds are counted byte by byte apart from the mappings: memory is reachable
//   (find_held) only while a registration names each byte of it, whatever
//   mapping happens to cover it.
// - Memory the process can only read is mapped for the device to read only,
//   and never merged with writable neighbours.
// Not thread-safe: the owner serialises.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "held_ranges.hpp"
#include "host_protection.hpp"
#include "vfioq/result.hpp"

namespace vfioq::dma {

class RegistrationCache {
public:
    // What the cache maps with: the IOMMU through a transport, or a fake in tests.
    class Mapper {
    public:
        virtual ~Mapper() = default;
        // Maps [vaddr, vaddr + size) for the device to read, and to write if `writable`; returns the IOVA.
        virtual Result<uint64_t> map(uintptr_t vaddr, uint64_t size, bool writable) = 0;
        virtual void unmap(uint64_t iova, uint64_t size) = 0;
        // What the process may do with the pages [a, b): asked before they are mapped.
        virtual Result<HostProtection> protection(uintptr_t /*a*/, uintptr_t /*b*/) { return HostProtection{true}; }
    };

    struct Budget {
        uint64_t max_mappings = 60000;
        uint64_t max_bytes = ~0ull;
    };

    struct Entry {
        uintptr_t start = 0, end = 0;  // page-rounded [start, end)
        uint64_t iova = 0;
        uint64_t refs = 0;
        bool writable = true;              // the device may write it (the process can)
        bool live = true;                  // in the index; false once merged into a larger mapping
        bool unmap_when_released = false;  // unregistered while a neighbour's hold kept the mapping
        // In the cached list (refs == 0), linked through the entries themselves so that
        // a hit or a release allocates nothing.
        bool in_lru = false;
        Entry* lru_prev = nullptr;
        Entry* lru_next = nullptr;

        [[nodiscard]] uint64_t size() const { return end - start; }
        [[nodiscard]] uint64_t iova_of(const void* p) const { return iova + (reinterpret_cast<uintptr_t>(p) - start); }
    };

    struct Stats {
        uint64_t hits = 0, misses = 0, merges = 0, evictions = 0;
        uint64_t mappings = 0, bytes = 0;  // mapped now, cached ones included
    };

    // page_size: a power of two.
    RegistrationCache(Mapper& mapper, Budget budget, uint64_t page_size = 4096);
    ~RegistrationCache();
    RegistrationCache(const RegistrationCache&) = delete;
    RegistrationCache& operator=(const RegistrationCache&) = delete;

    // Holds [p, p + len) and takes a reference on a mapping that covers it.
    Result<Entry*> acquire(const void* p, size_t len);
    // Lets go of what acquire(p, len) returned.
    void release(Entry* entry, const void* p, size_t len);
    // Unmaps the cached mapping covering [p, p + len) now; EBUSY while a
    // registration holds any byte of [p, p + len). A mapping that other
    // registrations still hold (it was merged with theirs) is unmapped as soon
    // as they let go, instead of staying cached.
    Result<void> unregister(const void* p, size_t len);
    // Unmaps every mapping nobody holds.
    void flush();

    // A held mapping covering [p, p + len), or null unless registrations hold every byte of it.
    [[nodiscard]] const Entry* find_held(const void* p, size_t len) const;
    // The first byte of [p, p + len) no registration holds (p + len when all are held).
    [[nodiscard]] uintptr_t first_unheld(const void* p, size_t len) const;
    [[nodiscard]] const Stats& stats() const { return stats_; }

private:
    Entry* find_live(uintptr_t start, uintptr_t end) const;
    bool make_room(uint64_t extra_bytes, uint64_t freed_mappings, uint64_t freed_bytes,
                   const std::vector<Entry*>& keep);
    void drop(Entry* e);  // unmaps and deletes an entry nobody holds
    void lru_append(Entry* e);
    void lru_remove(Entry* e);
    void forget(const Entry* e);  // e leaves the index

    Mapper& mapper_;
    Budget budget_;
    uintptr_t page_mask_;                               // page size - 1
    std::map<uintptr_t, std::unique_ptr<Entry>> live_;  // by start; disjoint
    std::vector<std::unique_ptr<Entry>> superseded_;     // merged away, still held
    Entry* lru_head_ = nullptr;                          // live entries with refs == 0, oldest first
    Entry* lru_tail_ = nullptr;
    Entry* last_hit_ = nullptr;                         // live; looked at before the index
    HeldRanges held_;                                   // the bytes registrations name
    Stats stats_;
};

}  // namespace vfioq::dma
