// SPDX-License-Identifier: MIT
// The queue engine: one submission ring and one completion ring in host
// memory, NVMe style (64-byte SQ entries; 16-byte CQ entries with SQ head,
// SQ id, CID and a phase-tagged status in the last dword). It hands out
// CIDs, fills the SQ in ring order, rings the SQ doorbell once per batch,
// reaps completions by phase tag, validates each one, and rings the CQ
// doorbell once per poll. It knows no device registers, sockets or ioctls:
// doorbells are a mapped word or a callback.
// One thread per engine; no locks, no allocation, no system call of its own.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>

#include "cid_pool.hpp"

namespace vfioq::engine {

struct CqEntry {
    uint32_t dw0;
    uint32_t dw1;
    uint16_t sqhd;
    uint16_t sqid;
    uint16_t cid;
    uint16_t status_phase;  // bit 0 phase, bits 15:1 status

    [[nodiscard]] uint16_t status() const { return status_phase >> 1; }
};
static_assert(sizeof(CqEntry) == 16);

inline constexpr uint32_t kSqEntrySize = 64;

// Where a doorbell write goes when the doorbell is not mapped.
class DoorbellWriter {
public:
    virtual ~DoorbellWriter() = default;
    virtual void write_doorbell(uint64_t offset, uint32_t value) = 0;
};

// A doorbell is a device register, mapped or written through a callback. It may
// also have a shadow in host memory (NVMe's Doorbell Buffer Config) that the
// device reads, with an event index the device writes: the register is then
// written only when the new value passes the event index, so a device that is
// still working through the ring is not interrupted to be told what it will read.
struct Doorbell {
    volatile uint32_t* mapped = nullptr;
    DoorbellWriter* fallback = nullptr;
    uint64_t offset = 0;
    volatile uint32_t* shadow = nullptr;
    // Null with a shadow: the shadow mirrors the register, which is always written.
    const volatile uint32_t* event_idx = nullptr;
    uint32_t entries = 0;  // of the ring the doorbell indexes: the event check wraps there
    uint32_t last = 0;     // the value rung before

    // Rings `value`; false when only the shadow took it.
    bool ring(uint32_t value) {
        if (shadow) {
            const uint32_t old = last;
            last = value;
            store_shadow(value);
            // A full fence, so the event index is read after the shadow is visible; the
            // device orders its side the same way (event index written, then the shadow read again).
            std::atomic_thread_fence(std::memory_order_seq_cst);
            if (event_idx &&
                !passes(std::atomic_ref<uint32_t>(*const_cast<uint32_t*>(event_idx)).load(std::memory_order_relaxed),
                        value, old))
                return false;
        }
        if (mapped) {
            // Release: the entries written before the doorbell are visible to the
            // device before the new index is.
            std::atomic_ref<uint32_t>(*const_cast<uint32_t*>(mapped)).store(value, std::memory_order_release);
        } else {
            std::atomic_thread_fence(std::memory_order_release);
            fallback->write_doorbell(offset, value);
        }
        return true;
    }

    // Release: the entries written before the shadow value are visible to the device first.
    // The device reads the shadow apart from the register, so every store to it is this one.
    void store_shadow(uint32_t value) {
        std::atomic_ref<uint32_t>(*const_cast<uint32_t*>(shadow)).store(value, std::memory_order_release);
    }

    // Moving from `old` to `value` steps onto the slot after `event`: the device asked
    // to be told once the index went past `event` (NVMe's and virtio's rule, taken
    // modulo the ring size rather than 2^16 so that a wrap is judged right). An event
    // index outside the ring is the device's error and gets the register written.
    [[nodiscard]] bool passes(uint32_t event, uint32_t value, uint32_t old) const {
        if (event >= entries) return true;
        auto dist = [&](uint32_t from, uint32_t to) { return to >= from ? to - from : to + entries - from; };
        return dist(old, value) > dist(old, event);
    }
};

struct RingConfig {
    uint16_t qid = 0;
    void* sq = nullptr;
    uint32_t sq_entries = 0;
    void* cq = nullptr;
    uint32_t cq_entries = 0;
    uint32_t max_outstanding = 0;  // at most sq_entries - 1
    Doorbell sq_tail;
    Doorbell cq_head;
};

enum class BadCompletionReason : uint8_t { kCidOutOfRange, kCidNotOutstanding, kWrongSqid, kSqHeadInvalid };
const char* bad_completion_reason(BadCompletionReason reason);

struct BadCompletion {
    CqEntry entry;
    BadCompletionReason reason;
};

struct EngineCounters {
    uint64_t submitted = 0;
    uint64_t completed = 0;
    uint64_t sq_doorbells = 0;
    uint64_t cq_doorbells = 0;
    uint64_t doorbell_writes_skipped = 0;  // rung into the shadow only
    // Device errors: completions that were counted and dropped (SQ head ones are used but their SQ head is not).
    uint64_t cid_out_of_range = 0;
    uint64_t cid_not_outstanding = 0;
    uint64_t wrong_sqid = 0;
    uint64_t sq_head_invalid = 0;

    [[nodiscard]] uint64_t device_errors() const {
        return cid_out_of_range + cid_not_outstanding + wrong_sqid + sq_head_invalid;
    }
};

class QueueEngine {
public:
    static constexpr size_t kBadHistory = 8;

    QueueEngine() = default;
    explicit QueueEngine(const RingConfig& config);

    [[nodiscard]] uint16_t qid() const { return cfg_.qid; }
    [[nodiscard]] uint32_t capacity() const { return cids_.capacity(); }
    [[nodiscard]] uint32_t outstanding() const { return cids_.in_use(); }
    // A command can be submitted now (a free CID and a free SQ slot).
    [[nodiscard]] bool can_submit() const { return cids_.available() != 0 && !sq_full(); }
    [[nodiscard]] bool sq_full() const { return next(sq_tail_, cfg_.sq_entries) == sq_head_; }

    // Submission: acquire a CID, fill the slot at the tail, push; ring once per batch.
    int32_t acquire_cid() { return cids_.acquire(); }
    void abandon_cid(uint16_t cid) { cids_.release(cid); }
    // A CID's tag (0 .. capacity - 1: an index for per-command state) and back (CidPool).
    [[nodiscard]] uint32_t tag_of(uint16_t cid) const { return cids_.tag_of(cid); }
    [[nodiscard]] uint16_t cid_of(uint32_t tag) const { return cids_.cid_of(tag); }
    [[nodiscard]] void* sq_slot() const { return static_cast<std::byte*>(cfg_.sq) + uint64_t{sq_tail_} * kSqEntrySize; }
    void push() {
        sq_tail_ = next(sq_tail_, cfg_.sq_entries);
        ++counters_.submitted;
        own_ahead();
    }
    void ring_sq() {
        if (sq_tail_ == rung_tail_) return;
        if (!cfg_.sq_tail.ring(sq_tail_)) ++counters_.doorbell_writes_skipped;
        rung_tail_ = sq_tail_;
        ++counters_.sq_doorbells;
    }

    // Reaps up to `max` entries; calls on_complete(tag, entry) for each valid one
    // (entry.cid is the CID), after its CID is free again (the callback may
    // submit). Returns completions delivered.
    template <typename F>
    uint32_t poll(uint32_t max, F&& on_complete);

    // Forgets every outstanding command (after a controller reset or a disable
    // whose completions never came); calls on_lost(tag) for each.
    template <typename F>
    void reclaim_all(F&& on_lost);
    // Back to a freshly enabled queue: heads and tails at 0, phase 1, the CQ
    // zeroed. Only with nothing outstanding and the queue off on the device.
    void restart() {
        sq_tail_ = rung_tail_ = sq_head_ = cq_head_ = 0;
        phase_ = true;
        std::memset(cfg_.cq, 0, uint64_t{cfg_.cq_entries} * sizeof(CqEntry));
        for (Doorbell* d : {&cfg_.sq_tail, &cfg_.cq_head}) {
            d->last = 0;
            if (d->shadow) d->store_shadow(0);
        }
    }
    // Moves the doorbells (a shadow added once the device took one), with nothing
    // in flight between the last ring and the next.
    void set_doorbells(const Doorbell& sq_tail, const Doorbell& cq_head) {
        cfg_.sq_tail = sq_tail;
        cfg_.sq_tail.last = sq_tail_;
        cfg_.cq_head = cq_head;
        cfg_.cq_head.last = cq_head_;
    }
    [[nodiscard]] const Doorbell& sq_doorbell() const { return cfg_.sq_tail; }
    [[nodiscard]] const Doorbell& cq_doorbell() const { return cfg_.cq_head; }

    [[nodiscard]] const EngineCounters& counters() const { return counters_; }
    // The most recent bad completions, oldest first; `count` says how many are valid.
    [[nodiscard]] const std::array<BadCompletion, kBadHistory>& bad_history() const { return bad_; }
    [[nodiscard]] size_t bad_count() const { return bad_total_ < kBadHistory ? bad_total_ : kBadHistory; }

    [[nodiscard]] uint32_t sq_head() const { return sq_head_; }
    [[nodiscard]] uint32_t sq_tail() const { return sq_tail_; }
    [[nodiscard]] uint32_t cq_head() const { return cq_head_; }
    [[nodiscard]] bool phase() const { return phase_; }

private:
    static constexpr uint32_t kOwnAhead = 8;
    // The device read the slot a few ahead of the tail one lap ago, so its line is shared
    // with (or owned by) the device's core: ask for it to be ours, for writing, before the
    // entry is written there, so that the write does not wait for the other core.
    void own_ahead() const {
#if defined(__x86_64__)
        const uint32_t slot = slot_ahead(sq_tail_, kOwnAhead, cfg_.sq_entries);
        if (slot == cfg_.sq_entries) return;
        asm volatile("prefetchw %0" ::"m"(*(static_cast<const std::byte*>(cfg_.sq) + uint64_t{slot} * kSqEntrySize)));
#endif
    }

public:
    // The slot `k` after `at` in a ring of `n`, or n when the ring is too small for that to
    // be a slot nobody is using: with a few entries the one ahead is the device's now.
    static constexpr uint32_t slot_ahead(uint32_t at, uint32_t k, uint32_t n) {
        if (n < 4 * k) return n;
        const uint32_t slot = at + k;
        return slot >= n ? slot - n : slot;
    }

private:
    static uint32_t next(uint32_t i, uint32_t n) { return i + 1 == n ? 0 : i + 1; }
    static uint32_t ahead(uint32_t from, uint32_t to, uint32_t n) { return to >= from ? to - from : to + n - from; }
    void record_bad(const CqEntry& e, BadCompletionReason reason);

    RingConfig cfg_;
    CidPool cids_;
    uint32_t sq_tail_ = 0, rung_tail_ = 0, sq_head_ = 0;
    uint32_t cq_head_ = 0;
    bool phase_ = true;
    EngineCounters counters_;
    std::array<BadCompletion, kBadHistory> bad_{};
    uint64_t bad_total_ = 0;
};

template <typename F>
uint32_t QueueEngine::poll(uint32_t max, F&& on_complete) {
    auto* ring = static_cast<CqEntry*>(cfg_.cq);
    uint32_t delivered = 0, reaped = 0;
    while (reaped < max) {
        CqEntry* slot = &ring[cq_head_];
        // Acquire: the rest of the entry is read only after its phase tag says it is new.
        const uint16_t tag = std::atomic_ref<uint16_t>(slot->status_phase).load(std::memory_order_acquire);
        if (static_cast<bool>(tag & 1) != phase_) break;
        CqEntry e;
        std::memcpy(&e, slot, sizeof(e));
        e.status_phase = tag;
        cq_head_ = next(cq_head_, cfg_.cq_entries);
        if (cq_head_ == 0) phase_ = !phase_;
        ++reaped;
        if (e.sqid != cfg_.qid) {
            record_bad(e, BadCompletionReason::kWrongSqid);
            continue;
        }
        if (!cids_.in_range(e.cid)) {
            record_bad(e, BadCompletionReason::kCidOutOfRange);
            continue;
        }
        if (!cids_.outstanding(e.cid)) {
            record_bad(e, BadCompletionReason::kCidNotOutstanding);
            continue;
        }
        // SQ head: inside the ring and between our head and tail, never backwards.
        if (e.sqhd < cfg_.sq_entries &&
            ahead(sq_head_, e.sqhd, cfg_.sq_entries) <= ahead(sq_head_, sq_tail_, cfg_.sq_entries))
            sq_head_ = e.sqhd;
        else
            record_bad(e, BadCompletionReason::kSqHeadInvalid);
        const auto cid_tag = static_cast<uint16_t>(cids_.tag_of(e.cid));
        cids_.release_outstanding(e.cid);
        ++counters_.completed;
        ++delivered;
        on_complete(cid_tag, e);
    }
    if (reaped != 0) {
        if (!cfg_.cq_head.ring(cq_head_)) ++counters_.doorbell_writes_skipped;
        ++counters_.cq_doorbells;
    }
    return delivered;
}

template <typename F>
void QueueEngine::reclaim_all(F&& on_lost) {
    for (uint32_t tag = 0; tag < cids_.capacity(); ++tag)
        if (cids_.release(cids_.cid_of(tag))) on_lost(static_cast<uint16_t>(tag));
}

}  // namespace vfioq::engine
