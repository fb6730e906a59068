// SPDX-License-Identifier: MIT
// What the reference model presents: identity, CAP fields, memory size,
// timing, and the faults it injects. Defaults follow docs/device-interface.md.
//
// Fault injection: a card that misbehaves the way bring-up hardware does, so
// that the driver's checks and recovery can be shown to work. Each completion
// the model is about to post may be turned into a fault, by a seeded rate per
// kind or by a script that names the completion (counted from 1 across all
// queues). DMA to one IOVA can be made to fault. Without any of it configured,
// nothing changes and nothing is drawn.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vfioq/export.hpp"
#include "vfioq/result.hpp"

namespace vfioq::model {

enum class FaultKind : uint8_t {
    kNone,
    kErrorStatus,  // completes with FaultConfig::status
    kDrop,         // never posted
    kDuplicate,    // posted twice
    kWrongCid,     // posted with a CID the host never issued
    kStalePhase,   // posted with the previous lap's phase: the host cannot see it, nor what follows
    kLate,         // posted FaultConfig::late_by after it was due
    // The card fails as a whole instead of posting this completion:
    kFatal,    // STATUS.CFS and vector 0; nothing more is done until a reset
    kHang,     // its engine hangs without a word: nothing more is done (a queue disable never finishes) until a reset
    kAllOnes,  // it falls off the bus: every register reads all-ones, nothing more is done
    kDisconnect,  // as kAllOnes, and the vfio-user server closes the connection
};
VFIOQ_MODEL_API const char* fault_name(FaultKind kind);
// "drop", "duplicate", "wrong-cid", "stale-phase", "late", "status", "cfs", "hang", "all-ones", "disconnect".
VFIOQ_MODEL_API std::optional<FaultKind> parse_fault(std::string_view name);

struct VFIOQ_MODEL_API FaultConfig {
    uint64_t seed = 1;
    // The chance of each kind, per completion (0 .. 1).
    double error_status = 0, drop = 0, duplicate = 0, wrong_cid = 0, stale_phase = 0, late = 0;
    double fatal = 0, hang = 0, all_ones = 0, disconnect = 0;
    uint16_t status = 9;  // INTERNAL
    uint32_t late_by_us = 100000;
    // Completion number (from 1) and the fault it gets, whatever the rates say.
    std::vector<std::pair<uint64_t, FaultKind>> script;
    // Any DMA that touches this IOVA fails as the IOMMU would refuse it.
    std::optional<uint64_t> dma_fault_iova;

    [[nodiscard]] bool any() const {
        return error_status > 0 || drop > 0 || duplicate > 0 || wrong_cid > 0 || stale_phase > 0 || late > 0 ||
               fatal > 0 || hang > 0 || all_ones > 0 || disconnect > 0 || !script.empty();
    }
    // "drop=0.01" (a rate) or "5:drop" (a script entry) into this config.
    Result<void> add(std::string_view spec);
    [[nodiscard]] Result<void> validate() const;
};

// What the model's doorbell thread says of its own time, for a benchmark to lay beside
// the driver's: it is idle in passes over the queues that find nothing to do (spinning
// or asleep), busy in the others. Written at each change between the two, so that the
// thread pays two clock readings per idle spell and none per command.
struct VFIOQ_MODEL_API QueueThreadTime {
    std::atomic<uint64_t> idle_ns{0};        // idle spells that have ended
    std::atomic<int64_t> idle_since_ns{-1};  // steady clock, when the spell going on began; -1: busy
    std::atomic<int64_t> started_ns{-1};     // steady clock, when the thread started; -1: not yet

    // A steady-clock time as these fields hold it.
    [[nodiscard]] static int64_t ns(std::chrono::steady_clock::time_point t) {
        return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
    }
    // Idle time up to `now_ns` (steady clock), the spell going on included. A spell that
    // ends while this reads may be missed once: an error of one spell, never a crash. The
    // sum is read before the spell going on, so that a spell that ends in between is never
    // counted twice: once in the sum and once as going on, which made an idle thread's
    // spell outweigh a whole short window.
    [[nodiscard]] uint64_t idle_until(int64_t now_ns) const {
        const uint64_t ended = idle_ns.load(std::memory_order_acquire);
        const int64_t since = idle_since_ns.load(std::memory_order_acquire);
        return ended + (since >= 0 && now_ns > since ? static_cast<uint64_t>(now_ns - since) : 0);
    }

    // The thread's side; it is the only writer.
    void start(std::chrono::steady_clock::time_point t) {
        idle_since_ns.store(ns(t), std::memory_order_release);
        started_ns.store(ns(t), std::memory_order_release);
    }
    void begin_idle(std::chrono::steady_clock::time_point t) { idle_since_ns.store(ns(t), std::memory_order_release); }
    void end_idle(std::chrono::steady_clock::time_point t) {
        const int64_t since = idle_since_ns.load(std::memory_order_relaxed);
        idle_ns.store(
            idle_ns.load(std::memory_order_relaxed) + static_cast<uint64_t>(std::max<int64_t>(0, ns(t) - since)),
            std::memory_order_release);
        idle_since_ns.store(-1, std::memory_order_release);
    }
};

struct VFIOQ_MODEL_API ModelConfig {
    uint16_t vendor_id = 0x1234;
    uint16_t device_id = 0x5147;
    uint16_t subsystem_vendor_id = 0x1234;
    uint16_t subsystem_id = 0x0001;
    uint8_t revision = 0x01;

    uint64_t devmem_size = 64ull << 20;

    // CAP fields (spec 2.2), stored as the register encodes them.
    uint16_t mqes = 0xFFFF;  // entries per queue minus 1
    uint8_t nqp = 15;        // queue pairs minus 1
    uint8_t timeout = 5;     // TO, in 100 ms units
    uint8_t dstrd = 0;       // doorbell stride: 4 << DSTRD bytes
    uint8_t sge_align = 0;   // log2 bytes
    uint8_t max_xfer = 24;   // log2 bytes
    uint16_t max_sge = 1024;

    // PCI Express link the model reports: speed code (1 = 2.5 GT/s .. 5 = 32 GT/s) and width.
    uint8_t link_speed = 4;
    uint8_t link_width = 8;

    // How long CTRL.EN = 1 takes to show STATUS.RDY = 1 (must stay below TO * 100 ms).
    std::chrono::milliseconds ready_delay{0};

    // Most DMA windows a client may have mapped at once.
    uint64_t max_dma_maps = 65535;

    // Command processing (spec section 3). With workers = 0 the thread that
    // watches the doorbells executes commands itself, in ring order; with more,
    // commands run on that many threads at once (reads and writes overlap).
    uint32_t workers = 0;
    // Each command completes no sooner than this after it was fetched.
    std::chrono::microseconds latency{0};
    // Completions of the commands ready together are posted in a random order.
    bool out_of_order = false;
    uint64_t seed = 1;
    // With nothing to do, the doorbell watcher spins this long, then sleeps in
    // growing steps up to max_idle_sleep between looks at the doorbells.
    std::chrono::microseconds idle_spin{200};
    std::chrono::microseconds max_idle_sleep{1000};

    // For measuring the driver rather than the model: a READ or WRITE that
    // passes every check completes as if its data moved, and none does.
    bool null_data = false;
    // The CPU the doorbell thread runs on (-1: wherever the scheduler puts it),
    // so that a benchmark can keep the model off the driver's core.
    int cpu = -1;
    // Where the doorbell thread reports its busy and idle time (null: nowhere).
    std::shared_ptr<QueueThreadTime> thread_time;

    // A deliberately broken card, to prove the checks that should catch it:
    // every Nth READ flips one bit of the data it delivers (0: never).
    uint64_t corrupt_reads_every = 0;
    // Completions that go wrong, and DMA that faults (above).
    FaultConfig faults;

    [[nodiscard]] uint32_t vector_count() const { return uint32_t{nqp} + 1; }
    [[nodiscard]] uint64_t cap_register() const;

    // Checks the combination (doorbells fit their page, MAX_XFER sensible, ...).
    [[nodiscard]] Result<void> validate() const;
};

}  // namespace vfioq::model
