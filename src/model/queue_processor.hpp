// SPDX-License-Identifier: MIT
// The model's queue engine (spec sections 3, 4 and 6): a thread watches the
// doorbell page, fetches submission entries in ring order, has them executed
// (inline or by worker threads), posts completions with the phase tag, never
// overwrites an entry the host has not released, coalesces MSI-X interrupts
// and drains a queue that is being disabled.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include "command_executor.hpp"
#include "dma_space.hpp"
#include "fault_plan.hpp"
#include "ready_ring.hpp"
#include "vfioq/model_config.hpp"
#include "vfioq/sgq_commands.hpp"

namespace vfioq::model {

class SgqDevice;

class QueueProcessor {
public:
    QueueProcessor(SgqDevice& device, const ModelConfig& config);
    ~QueueProcessor();
    QueueProcessor(const QueueProcessor&) = delete;
    QueueProcessor& operator=(const QueueProcessor&) = delete;

    void start();
    void stop();
    // Something changed (a register written by message): look now rather than after an idle sleep.
    void kick();
    // Submission entries fetched since the processor started, every queue together: what a test
    // waits for where a card's own registers cannot tell.
    [[nodiscard]] uint64_t fetched() const { return fetched_.load(std::memory_order_acquire); }

private:
    using Clock = std::chrono::steady_clock;
    // The time of one pass over the queues, read when first asked for: with no latency,
    // no timed coalescing and no late faults a busy pass needs none, and a clock reading
    // costs tens of nanoseconds in a virtual machine.
    class PassClock {
    public:
        Clock::time_point now() {
            if (!read_) {
                at_ = Clock::now();
                read_ = true;
            }
            return at_;
        }

    private:
        Clock::time_point at_{};
        bool read_ = false;
    };
    // A command fetched with no latency configured is due at once, whatever the time.
    static constexpr Clock::time_point kDueAtOnce = Clock::time_point::min();
    static bool later(Clock::time_point due, PassClock& clock) { return due != kDueAtOnce && due > clock.now(); }

    struct Finished {
        uint16_t qid;
        uint64_t generation;
        uint16_t cid;
        CommandOutcome outcome;
        Clock::time_point due;
        // Without workers a command runs when it is due, so that one still
        // waiting when its queue is disabled is ABORTED having moved nothing.
        bool executed;
        uint64_t epoch;
        sgq::SubmissionEntry sqe;
        bool faulted = false;  // its fault (if any) was drawn already
    };
    struct Job {
        uint16_t qid;
        uint64_t generation;
        uint64_t epoch;
        sgq::SubmissionEntry sqe;
        Clock::time_point due;
    };
    struct Queue {
        bool active = false;
        bool halted = false;
        uint64_t generation = ~0ull;
        uint64_t sq_base = 0, cq_base = 0;
        uint32_t sq_entries = 0, cq_entries = 0;
        uint32_t ctrl = 0, coal = 0;
        uint32_t sq_head = 0, sq_tail = 0, cq_head = 0, cq_tail = 0;
        bool phase = true;
        uint32_t unposted = 0;   // fetched and not yet posted
        uint32_t executing = 0;  // handed to a worker and not back
        ReadyRing<Finished> ready;  // sized when the queue is enabled
        uint32_t irq_pending = 0;
        Clock::time_point irq_first{};
    };

    void run();
    void worker();
    void refresh_queues();
    void collect_finished();
    bool service(uint16_t qid, PassClock& clock);
    bool fetch(uint16_t qid, Queue& q, PassClock& clock);
    bool post(uint16_t qid, Queue& q, PassClock& clock, bool all);
    // Writes one completion entry at the CQ tail and moves the tail on; false (the queue halted) if it cannot.
    // `ring` is the CQ in this process's memory for the pass, or null.
    bool write_completion(uint16_t qid, Queue& q, std::byte* ring, uint16_t cid, const CommandOutcome& outcome,
                          bool phase);
    void interrupt(Queue& q, PassClock& clock, bool quiet, bool force);
    void halt(uint16_t qid, Queue& q, uint32_t err_bit, uint16_t cid, const char* why);
    [[nodiscard]] static uint32_t cq_free(const Queue& q);
    // Spins or sleeps a little; returns the clock it read last.
    Clock::time_point idle(Clock::time_point last_work);

    SgqDevice& device_;
    const ModelConfig config_;
    CommandExecutor executor_;
    std::mt19937_64 rng_;
    FaultPlan faults_;
    std::vector<Queue> queues_;
    uint64_t seen_changes_ = ~0ull;
    uint64_t seen_epoch_ = 0;

    DmaSpace::Reader reader_;  // the doorbell thread's; inside it for each pass over the queues
    uint64_t fetched_total_ = 0;

    std::atomic<bool> stop_{false};
    std::thread thread_;
    std::mutex wake_mutex_;
    std::condition_variable wake_cv_;
    bool kicked_ = false;

    // Worker threads (config.workers > 0).
    std::vector<std::thread> workers_;
    std::mutex jobs_mutex_;
    std::condition_variable jobs_cv_;
    std::deque<Job> jobs_;
    std::mutex finished_mutex_;
    std::vector<Finished> finished_;
    std::atomic<uint64_t> fetched_{0};
};

}  // namespace vfioq::model
