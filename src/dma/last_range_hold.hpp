// SPDX-License-Identifier: MIT
// The last range registered, held by the DMA context itself, so that registering
// exactly that range again, and letting go of it, changes one word and takes no
// lock: an application that registers the same buffer for every I/O pays for
// the registration cache once.
//
// One 64-bit word: a generation, odd while the context's lock holder changes
// the range (a hit then takes the slow path), the holds the application has on
// the range now, the hits not yet counted in the statistics, and whether the
// context is gone (the last release then frees it). The range, its IOVA and the
// cache entry the context holds it with are written only by the lock holder
// while the generation is odd; a hit reads them and takes its hold with one
// compare-and-swap of the word it read them under, so a hit never holds a range
// that changed under it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace vfioq::dma {

class LastRangeHold {
public:
    // A hold on exactly [p, p + len), with the IOVA of p; false (and nothing held) when the
    // range is not the one kept, or is being changed, or a count is full.
    bool try_hold(const void* p, size_t len, uint64_t& iova) {
        uint64_t w = word_.load(std::memory_order_acquire);
        if ((w & kChanging) != 0 || holds(w) == kMaxHolds || hits(w) == kMaxHits) return false;
        if (addr_.load(std::memory_order_relaxed) != p || len_.load(std::memory_order_relaxed) != len || !p)
            return false;
        const uint64_t at = iova_.load(std::memory_order_relaxed);
        // Acquire-release: the range was read under the word it now changes; a lock holder that
        // changes the range after this reads the hold first.
        if (!word_.compare_exchange_strong(w, w + kOneHold + kOneHit, std::memory_order_acq_rel,
                                           std::memory_order_relaxed))
            return false;
        iova = at;
        return true;
    }

    // Lets go of one try_hold(); true when that was the last hold of a context already gone,
    // which the caller then frees.
    bool release() {
        const uint64_t w = word_.fetch_sub(kOneHold, std::memory_order_acq_rel) - kOneHold;
        return (w & kOrphaned) != 0 && holds(w) == 0;
    }

    // The lock holder's side. Starts a change of the range when nothing holds it; false
    // when something does (the range then stays as it is).
    bool begin_change() {
        uint64_t w = word_.load(std::memory_order_relaxed);
        do {
            if (holds(w) != 0) return false;
        } while (!word_.compare_exchange_weak(w, w | kChanging, std::memory_order_acquire, std::memory_order_relaxed));
        return true;
    }
    // Ends a change: the new range (null for none) goes out under the next even generation.
    void end_change(const void* p, size_t len, uint64_t iova, void* entry) {
        addr_.store(p, std::memory_order_relaxed);
        len_.store(len, std::memory_order_relaxed);
        iova_.store(iova, std::memory_order_relaxed);
        entry_ = entry;
        // Nothing holds the range and no hit can take it while the generation is odd: the
        // word is the lock holder's alone until this store.
        const uint64_t w = word_.load(std::memory_order_relaxed);
        word_.store((w & ~kChanging) + kGeneration, std::memory_order_release);
    }
    // No more hits, held or not (the device is closed); releases still count down.
    void close() { word_.fetch_or(kChanging, std::memory_order_acq_rel); }
    // The range kept, for the lock holder (null: none).
    [[nodiscard]] const void* addr() const { return addr_.load(std::memory_order_relaxed); }
    [[nodiscard]] size_t len() const { return len_.load(std::memory_order_relaxed); }
    [[nodiscard]] void* entry() const { return entry_; }
    [[nodiscard]] uint64_t holds_now() const { return holds(word_.load(std::memory_order_acquire)); }

    // Hits since the last call, taken out of the word.
    uint64_t take_hits() {
        uint64_t w = word_.load(std::memory_order_relaxed);
        while (!word_.compare_exchange_weak(w, w - hits(w), std::memory_order_relaxed)) {
        }
        return hits(w);
    }

    // The context is gone: true when nothing holds the range, so the caller frees now;
    // otherwise the last release() says so.
    bool orphan() {
        uint64_t w = word_.load(std::memory_order_acquire);
        do {
            if (holds(w) == 0) return true;
        } while (!word_.compare_exchange_weak(w, w | kOrphaned | kChanging, std::memory_order_acq_rel,
                                              std::memory_order_acquire));
        return false;
    }

private:
    // Bits 0-19: hits not yet counted; 20-39: holds; 40: orphaned; 41: changing; 42-63: generation.
    static constexpr uint64_t kOneHit = 1;
    static constexpr uint64_t kMaxHits = (uint64_t{1} << 20) - 1;
    static constexpr uint64_t kOneHold = uint64_t{1} << 20;
    static constexpr uint64_t kMaxHolds = (uint64_t{1} << 20) - 1;
    static constexpr uint64_t kOrphaned = uint64_t{1} << 40;
    static constexpr uint64_t kChanging = uint64_t{1} << 41;
    static constexpr uint64_t kGeneration = uint64_t{1} << 42;
    static uint64_t hits(uint64_t w) { return w & kMaxHits; }
    static uint64_t holds(uint64_t w) { return (w >> 20) & kMaxHolds; }

    std::atomic<uint64_t> word_{0};
    std::atomic<const void*> addr_{nullptr};
    std::atomic<size_t> len_{0};
    std::atomic<uint64_t> iova_{0};
    void* entry_ = nullptr;  // the cache entry the context holds the range with; the lock holder's
};

}  // namespace vfioq::dma
