// SPDX-License-Identifier: MIT
// Fault injection for the reference model: a card that misbehaves the way
// bring-up hardware does, so that the driver's checks and recovery can be
// shown to work. Each completion the model is about to post may be turned
// into a fault, by a seeded rate per kind or by a script that names the
// completion (counted from 1 across all queues). DMA to one IOVA can be made
// to fault. Without any of it configured, nothing changes and nothing is drawn.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

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
    kFatal,        // STATUS.CFS and vector 0; nothing more is done until a reset
    kHang,         // its engine hangs without a word: nothing more is done (a queue disable never finishes) until a reset
    kAllOnes,      // it falls off the bus: every register reads all-ones, nothing more is done
    kDisconnect,   // as kAllOnes, and the vfio-user server closes the connection
};
const char* fault_name(FaultKind kind);
// "drop", "duplicate", "wrong-cid", "stale-phase", "late", "status", "cfs", "hang", "all-ones", "disconnect".
std::optional<FaultKind> parse_fault(std::string_view name);

struct FaultConfig {
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

// Draws the fault of each completion. Used by the one thread that posts completions.
class FaultPlan {
public:
    explicit FaultPlan(const FaultConfig& config);
    FaultKind next();
    [[nodiscard]] uint64_t completions() const { return count_; }

private:
    FaultConfig config_;
    bool active_;
    std::mt19937_64 rng_;
    uint64_t count_ = 0;
};

}  // namespace vfioq::model
