// SPDX-License-Identifier: MIT
// A queue pair over the queue engine, for any device profile: per-CID
// trackers with callbacks, descriptor pages, closing that reports every
// command (engine_queue_pair.cpp); recovery from per-command timeouts,
// controller resets and a device that is gone (queue_recovery.cpp); interrupt
// waits (InterruptWait, the io_uring owner). The profile encodes and decodes
// (CommandCodec) and takes queues up and down on the device (QueueOwner).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "dma/sgl_builder.hpp"
#include "engine/queue_engine.hpp"
#include "interrupt_wait.hpp"
#include "queue_profile.hpp"
#include "vfioq/dma.hpp"
#include "vfioq/queue_pair.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::io {

struct QueuePairResources {
    uint16_t qid = 0;
    std::chrono::nanoseconds command_timeout{0};  // 0: none
    DmaBuffer sq, cq, sgl_pages;
    uint32_t sq_entries = 0, cq_entries = 0, depth = 0, sgl_page_count = 0;
    uint32_t poll_batch = 256;
    engine::Doorbell sq_doorbell, cq_doorbell;
    UniqueFd event_fd;  // interrupt mode
    int vector = -1;
};

class EngineQueuePair final : public QueuePair {
public:
    EngineQueuePair(QueueOwner& owner, std::unique_ptr<CommandCodec> codec, QueuePairResources resources,
                    uint32_t max_segments, DmaContext& dma);
    ~EngineQueuePair() override;

    [[nodiscard]] uint16_t id() const override { return res_.qid; }
    [[nodiscard]] uint32_t capacity() const override { return engine_.capacity(); }
    [[nodiscard]] uint32_t outstanding() const override { return engine_.outstanding(); }

    Result<uint16_t> submit(const IoRequest& request) override;
    Result<uint16_t> submit_host(Opcode op, uint64_t devaddr, std::span<const HostSegment> segments,
                                 CompletionCallback callback, void* context) override;
    Result<uint16_t> submit_raw(std::span<const std::byte> entry, CompletionCallback callback, void* context) override;
    Result<uint32_t> submit_batch(std::span<const IoRequest> requests) override;
    uint32_t poll(uint32_t max) override;
    Result<uint32_t> wait(std::chrono::milliseconds timeout, uint32_t max) override;
    [[nodiscard]] int event_fd() const override { return res_.event_fd.get(); }
    Result<void> close() override;
    [[nodiscard]] bool closed() const override { return state_ == State::kClosed; }
    [[nodiscard]] QueuePairStats stats() const override;
    [[nodiscard]] std::vector<BadCompletionRecord> bad_completions() const override;
    [[nodiscard]] bool device_gone() const override { return state_ == State::kGone; }

    // The owner is going away first.
    void owner_gone() {
        owner_ = nullptr;
        owner_health_ = nullptr;
    }

private:
    static constexpr uint16_t kNil = 0xFFFF;  // no tag: the queue holds at most 65535 commands
    // By tag (QueueEngine::tag_of). prev and next link the outstanding
    // commands in submission order, to find the oldest in O(1).
    struct Tracker {
        CompletionCallback callback;
        void* context;
        int32_t sgl_page;
        uint32_t length;
        int64_t submitted_ns;
        uint16_t prev, next;
        uint16_t cid;
    };
    enum class State : uint8_t {
        kOpen,
        kRecovering,  // submissions wait (EAGAIN) while the queue is taken down and brought back
        kBroken,      // recovery failed; commands are reported, submissions fail with EIO
        kGone,        // the device is gone; submissions fail with ENODEV
        kClosed,
    };

    // Submission and completion (engine_queue_pair.cpp). Builds and queues one command without ringing.
    Result<uint16_t> enqueue(const IoRequest& request);
    // enqueue() once open_and_healthy() or may_submit() said yes.
    Result<uint16_t> enqueue_unchecked(const IoRequest& request);
    // The fast check before a submission; may_submit() says why not, after recovery if due.
    [[nodiscard]] bool open_and_healthy() const { return state_ == State::kOpen && !health_changed(); }
    Result<void> may_submit();
    void track(uint16_t cid, CompletionCallback callback, void* context, int32_t sgl_page, uint32_t length);
    void untrack(uint16_t tag);
    // One clock reading for the commands this call queued, kept in the first of them.
    void stamp_submissions();
    // Every tracker's own stamp, for a pass that reads them in tag order.
    void resolve_stamps();
    void complete(uint16_t tag, const engine::CqEntry& entry);
    // Reports a command the device did not answer, with the driver's verdict.
    void report(uint16_t tag, IoStatus status);
    // Reaps completions from the ring (no timeout or health checks).
    uint32_t reap(uint32_t max);
    // Reaps until the ring holds nothing more; returns how many.
    uint32_t reap_all();
    // Acquire, not relaxed: the thread that marks the device gone swaps its register pages
    // first, and the doorbell writes that follow this check must see the swap (on x86 an
    // acquire load is the same instruction).
    [[nodiscard]] bool device_gone_now() const {
        return owner_health_ && owner_health_->device_gone &&
               owner_health_->device_gone->load(std::memory_order_acquire);
    }
    [[nodiscard]] bool health_changed() const {
        return owner_health_ &&
               (owner_health_->resets.load(std::memory_order_acquire) != seen_resets_ || device_gone_now());
    }

    // Recovery (queue_recovery.cpp). A reset or removal seen; returns commands reported.
    uint32_t on_health_change();
    // The oldest command is overdue: recover; returns commands reported.
    uint32_t check_timeouts();
    uint32_t recover();
    // Reports every outstanding command: TIMEOUT if overdue, else `otherwise`.
    uint32_t report_outstanding(IoStatus otherwise);
    uint32_t fail_gone();
    // The rings back at their start and the queue enabled again on the device.
    void restart_queue(const char* after);
    [[nodiscard]] int64_t now_ns() const;
    Error refused(int code, const std::string& why) const;

    QueueOwner* owner_;
    std::unique_ptr<CommandCodec> codec_;
    std::string name_;  // the device's
    QueuePairResources res_;
    DmaContext& dma_;
    engine::QueueEngine engine_;
    dma::SglPagePool pool_;
    std::vector<Tracker> trackers_;
    std::vector<DmaSegment> scratch_;  // submit_host's translated segments
    State state_ = State::kOpen;
    std::string broken_why_;
    uint64_t queue_full_ = 0;
    uint64_t error_statuses_ = 0, timeouts_ = 0, queue_recoveries_ = 0, controller_resets_ = 0;

    const bool bytes_in_dw0_;  // the codec's, asked once

    // Timeouts: a submission call (submit, submit_raw, a whole submit_batch)
    // reads the clock once and stamps what it queued; poll() reads it once every
    // kClockEvery polls, empty or not (and each wait() slice that times out
    // does), to see what is overdue. A command is reported no earlier than its
    // timeout and at most kClockEvery polls after it expired.
    static constexpr uint32_t kClockEvery = 64;
    // A command's stamp is its own, or kAsBefore: that of the command queued before it
    // (its prev), which untrack() hands on. The oldest command's is always its own, so
    // the timeout check reads one tracker.
    static constexpr int64_t kUnstamped = INT64_MAX;
    static constexpr int64_t kAsBefore = INT64_MAX - 1;
    int64_t timeout_ns_ = 0;
    int64_t clock_ns_ = 0;
    uint32_t polls_since_clock_ = 0;
    uint16_t oldest_ = kNil, newest_ = kNil;
    uint16_t unstamped_ = kNil;  // the first command of the call under way

    const ControllerHealth* owner_health_ = nullptr;
    uint32_t seen_resets_ = 0;

    InterruptWait interrupt_;  // after res_: it waits on res_.event_fd
};

}  // namespace vfioq::io
