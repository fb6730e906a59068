// SPDX-License-Identifier: MIT
// Draws the faults a ModelConfig asks for (vfioq/model_config.hpp).
#pragma once

#include <cstdint>
#include <random>

#include "vfioq/model_config.hpp"

namespace vfioq::model {

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
