// SPDX-License-Identifier: MIT
#include "fault_plan.hpp"

#include <charconv>
#include <string>

namespace vfioq::model {

namespace {

struct Named {
    FaultKind kind;
    const char* name;
};
constexpr Named kNames[] = {{FaultKind::kErrorStatus, "status"},     {FaultKind::kDrop, "drop"},
                            {FaultKind::kDuplicate, "duplicate"},    {FaultKind::kWrongCid, "wrong-cid"},
                            {FaultKind::kStalePhase, "stale-phase"}, {FaultKind::kLate, "late"},
                            {FaultKind::kFatal, "cfs"},              {FaultKind::kHang, "hang"},
                            {FaultKind::kAllOnes, "all-ones"},
                            {FaultKind::kDisconnect, "disconnect"}};

double* rate_of(FaultConfig& c, FaultKind k) {
    switch (k) {
        case FaultKind::kErrorStatus: return &c.error_status;
        case FaultKind::kDrop: return &c.drop;
        case FaultKind::kDuplicate: return &c.duplicate;
        case FaultKind::kWrongCid: return &c.wrong_cid;
        case FaultKind::kStalePhase: return &c.stale_phase;
        case FaultKind::kLate: return &c.late;
        case FaultKind::kFatal: return &c.fatal;
        case FaultKind::kHang: return &c.hang;
        case FaultKind::kAllOnes: return &c.all_ones;
        case FaultKind::kDisconnect: return &c.disconnect;
        case FaultKind::kNone: break;
    }
    return nullptr;
}

}  // namespace

const char* fault_name(FaultKind kind) {
    for (const auto& n : kNames)
        if (n.kind == kind) return n.name;
    return "none";
}

std::optional<FaultKind> parse_fault(std::string_view name) {
    for (const auto& n : kNames)
        if (name == n.name) return n.kind;
    return std::nullopt;
}

Result<void> FaultConfig::add(std::string_view spec) {
    const auto usage = [&] {
        return make_error(EINVAL, "fault '" + std::string(spec) +
                                      "': give KIND=RATE (a chance from 0 to 1 per completion) or N:KIND (the Nth "
                                      "completion); KIND is status, drop, duplicate, wrong-cid, stale-phase, late, cfs, hang, "
                                      "all-ones or disconnect");
    };
    if (const auto eq = spec.find('='); eq != std::string_view::npos) {
        const auto kind = parse_fault(spec.substr(0, eq));
        if (!kind) return usage();
        const std::string value(spec.substr(eq + 1));
        char* end = nullptr;
        const double rate = std::strtod(value.c_str(), &end);
        if (value.empty() || *end || !(rate >= 0 && rate <= 1)) return usage();
        *rate_of(*this, *kind) = rate;
        return {};
    }
    if (const auto colon = spec.find(':'); colon != std::string_view::npos) {
        uint64_t n = 0;
        const auto digits = spec.substr(0, colon);
        auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
        const auto kind = parse_fault(spec.substr(colon + 1));
        if (ec != std::errc() || p != digits.data() + digits.size() || n == 0 || !kind) return usage();
        script.emplace_back(n, *kind);
        return {};
    }
    return usage();
}

Result<void> FaultConfig::validate() const {
    const double sum = error_status + drop + duplicate + wrong_cid + stale_phase + late + fatal + hang + all_ones + disconnect;
    if (sum > 1) return make_error(EINVAL, "the fault rates add up to more than 1 per completion");
    if (status == 0 || status > 0x7FFF) return make_error(EINVAL, "an injected status must be 1 .. 0x7fff");
    return {};
}

FaultPlan::FaultPlan(const FaultConfig& config) : config_(config), active_(config.any()), rng_(config.seed) {}

FaultKind FaultPlan::next() {
    if (!active_) return FaultKind::kNone;
    ++count_;
    for (const auto& [n, kind] : config_.script)
        if (n == count_) return kind;
    // One draw decides among the kinds by their rates; the rest of [0, 1) is no fault.
    double x = std::uniform_real_distribution<double>(0, 1)(rng_);
    for (const auto& named : kNames) {
        const double rate = *rate_of(config_, named.kind);
        if (x < rate) return named.kind;
        x -= rate;
    }
    return FaultKind::kNone;
}

}  // namespace vfioq::model
