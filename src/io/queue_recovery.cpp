// SPDX-License-Identifier: MIT
// The queue pair's recovery: a command past its timeout, a controller reset
// (its own or another queue pair's), and a device that is gone. Each ends with
// every outstanding command reported exactly once and the queue either back
// in service, broken with the reason, or gone.
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "engine_queue_pair.hpp"
#include "vfioq/log.hpp"

namespace vfioq::io {

uint32_t EngineQueuePair::check_timeouts() {
    polls_since_clock_ = 0;
    clock_ns_ = now_ns();
    if (state_ != State::kOpen || clock_ns_ - trackers_[oldest_].submitted_ns < timeout_ns_) return 0;
    return recover();
}

uint32_t EngineQueuePair::report_outstanding(IoStatus otherwise) {
    uint32_t n = 0;
    const int64_t overdue_before = clock_ns_ - timeout_ns_;
    resolve_stamps();  // reclaim_all() goes by tag, not in the order the stamps are handed on
    engine_.reclaim_all([&](uint16_t tag) {
        const bool overdue = timeout_ns_ != 0 && trackers_[tag].submitted_ns <= overdue_before;
        report(tag, overdue ? IoStatus::kTimeout : otherwise);
        ++n;
    });
    return n;
}

uint32_t EngineQueuePair::recover() {
    const uint16_t cid = trackers_[oldest_].cid;
    const auto waited_ms = (clock_ns_ - trackers_[oldest_].submitted_ns) / 1000000;
    log::logger<log::kQueue>().warn(
        "{}: queue pair {}: command {} is not completed after {} ms (timeout {} ms); "
        "disabling the queue to recover",
        name_, res_.qid, cid, waited_ms, timeout_ns_ / 1000000);
    state_ = State::kRecovering;
    ++queue_recoveries_;
    uint32_t reported = 0;
    // The card completes (or aborts) what it holds while it takes the queue down.
    auto down = owner_->disable_queue(res_.qid, [&] { reported += reap(0); });
    reported += reap_all();
    if (device_gone_now()) return reported + fail_gone();
    if (down) {
        // Whatever the card did not answer it no longer holds.
        reported += report_outstanding(IoStatus::kAborted);
        restart_queue("a timeout");
        return reported;
    }
    if (down.error().code == ENODEV) return reported + fail_gone();
    auto reset = owner_->reset_controller(
        fmt::format("queue {} did not go down after command {} timed out: {}", res_.qid, cid, down.error().message));
    seen_resets_ = owner_health_->resets.load();
    ++controller_resets_;
    reported += report_outstanding(IoStatus::kReset);
    if (!reset) {
        if (device_gone_now()) return reported + fail_gone();
        state_ = State::kBroken;
        broken_why_ = reset.error().message;
        log::logger<log::kQueue>().error("{}", broken_why_);
        return reported;
    }
    restart_queue("a controller reset");
    return reported;
}

uint32_t EngineQueuePair::on_health_change() {
    if (!owner_health_ || state_ == State::kClosed || state_ == State::kGone) return 0;
    if (device_gone_now()) return fail_gone();
    seen_resets_ = owner_health_->resets.load();
    ++controller_resets_;
    const State was = state_;
    state_ = State::kRecovering;
    clock_ns_ = now_ns();
    const uint32_t n = report_outstanding(IoStatus::kReset);
    if (was == State::kBroken) {
        state_ = State::kBroken;
        return n;
    }
    restart_queue("a controller reset");
    return n;
}

uint32_t EngineQueuePair::fail_gone() {
    state_ = State::kGone;
    // What the card posted before it went is in host memory and is its answer.
    const uint32_t posted = reap_all();
    uint32_t n = posted;
    engine_.reclaim_all([&](uint16_t tag) {
        report(tag, IoStatus::kDeviceGone);
        ++n;
    });
    if (n != posted)
        log::logger<log::kQueue>().warn("{}: queue pair {}: the device is gone; {} commands reported DEVICE_GONE",
                                        name_, res_.qid, n - posted);
    return n;
}

void EngineQueuePair::restart_queue(const char* after) {
    engine_.restart();
    if (auto r = owner_->enable_queue(res_.qid); !r) {
        if (device_gone_now()) {
            fail_gone();
            return;
        }
        state_ = State::kBroken;
        broken_why_ = r.error().message;
        log::logger<log::kQueue>().error("{}: queue pair {}: could not bring the queue back after {}: {}", name_,
                                         res_.qid, after, broken_why_);
        return;
    }
    state_ = State::kOpen;
    log::logger<log::kQueue>().info("{}: queue pair {}: back in service after {}", name_, res_.qid, after);
}

}  // namespace vfioq::io
