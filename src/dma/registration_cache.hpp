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
// Not thread-safe: the owner serialises.
#pragma once

#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <vector>

#include "vfioq/result.hpp"

namespace vfioq::dma {

class RegistrationCache {
public:
    // What the cache maps with: the IOMMU through a transport, or a fake in tests.
    class Mapper {
    public:
        virtual ~Mapper() = default;
        virtual Result<uint64_t> map(uintptr_t vaddr, uint64_t size) = 0;  // returns the IOVA
        virtual void unmap(uint64_t iova, uint64_t size) = 0;
    };

    struct Budget {
        uint64_t max_mappings = 60000;
        uint64_t max_bytes = ~0ull;
    };

    struct Entry {
        uintptr_t start = 0, end = 0;  // page-rounded [start, end)
        uint64_t iova = 0;
        uint64_t refs = 0;
        bool live = true;  // in the index; false once merged into a larger mapping
        std::list<Entry*>::iterator lru;

        [[nodiscard]] uint64_t size() const { return end - start; }
        [[nodiscard]] uint64_t iova_of(const void* p) const { return iova + (reinterpret_cast<uintptr_t>(p) - start); }
    };

    struct Stats {
        uint64_t hits = 0, misses = 0, merges = 0, evictions = 0;
        uint64_t mappings = 0, bytes = 0;  // mapped now, cached ones included
    };

    RegistrationCache(Mapper& mapper, Budget budget, uint64_t page_size = 4096);
    ~RegistrationCache();
    RegistrationCache(const RegistrationCache&) = delete;
    RegistrationCache& operator=(const RegistrationCache&) = delete;

    // Takes a reference on a mapping that covers [p, p + len).
    Result<Entry*> acquire(const void* p, size_t len);
    void release(Entry* entry);
    // Unmaps the cached mapping covering [p, p + len) now; EBUSY while a registration holds it.
    Result<void> unregister(const void* p, size_t len);
    // Unmaps every mapping nobody holds.
    void flush();

    // The live mapping covering [p, p + len) that somebody holds, or null.
    [[nodiscard]] const Entry* find_held(const void* p, size_t len) const;
    [[nodiscard]] const Stats& stats() const { return stats_; }

private:
    Entry* find_live(uintptr_t start, uintptr_t end) const;
    bool make_room(uint64_t extra_bytes, uint64_t freed_mappings, uint64_t freed_bytes,
                   const std::vector<Entry*>& keep);
    void drop(Entry* e);  // unmaps and deletes an entry nobody holds

    Mapper& mapper_;
    Budget budget_;
    uint64_t page_;
    std::map<uintptr_t, std::unique_ptr<Entry>> live_;  // by start; disjoint
    std::vector<std::unique_ptr<Entry>> superseded_;     // merged away, still held
    std::list<Entry*> lru_;                             // live entries with refs == 0, oldest first
    Stats stats_;
};

}  // namespace vfioq::dma
