// SPDX-License-Identifier: MIT
#include "queue_engine.hpp"

#include <spdlog/spdlog.h>

#include "vfioq/log.hpp"

namespace vfioq::engine {

const char* bad_completion_reason(BadCompletionReason reason) {
    switch (reason) {
        case BadCompletionReason::kCidOutOfRange: return "CID out of range";
        case BadCompletionReason::kCidNotOutstanding: return "CID not outstanding (duplicate or never submitted)";
        case BadCompletionReason::kWrongSqid: return "SQ id of another queue";
        case BadCompletionReason::kSqHeadInvalid: return "SQ head outside the submitted entries";
    }
    return "unknown";
}

QueueEngine::QueueEngine(const RingConfig& config) : cfg_(config), cids_(config.max_outstanding) {}

void QueueEngine::record_bad(const CqEntry& e, BadCompletionReason reason) {
    switch (reason) {
        case BadCompletionReason::kCidOutOfRange: ++counters_.cid_out_of_range; break;
        case BadCompletionReason::kCidNotOutstanding: ++counters_.cid_not_outstanding; break;
        case BadCompletionReason::kWrongSqid: ++counters_.wrong_sqid; break;
        case BadCompletionReason::kSqHeadInvalid: ++counters_.sq_head_invalid; break;
    }
    // Keep the last few; the oldest is overwritten first.
    if (bad_total_ >= kBadHistory)
        for (size_t i = 1; i < kBadHistory; ++i) bad_[i - 1] = bad_[i];
    bad_[bad_total_ < kBadHistory ? bad_total_ : kBadHistory - 1] = {e, reason};
    ++bad_total_;
    // A device that goes wrong may do it on every entry: the first ones and then every 1000th are logged.
    if (bad_total_ <= 16 || bad_total_ % 1000 == 0) {
        uint32_t w[4];
        std::memcpy(w, &e, sizeof(w));
        log::logger<log::kQueue>().warn(
            "queue {}: device error in completion entry {:08x} {:08x} {:08x} {:08x} "
            "(CID {}, SQ id {}, SQ head {}, status {:#x}): {} ({} so far)",
            cfg_.qid, w[0], w[1], w[2], w[3], e.cid, e.sqid, e.sqhd, e.status(), bad_completion_reason(reason),
            bad_total_);
    }
}

}  // namespace vfioq::engine
