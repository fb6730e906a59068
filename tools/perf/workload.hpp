// SPDX-License-Identifier: MIT
// One vfioq-perf thread: a queue pair kept at its depth with the commands the
// workload asks for, latencies and per-interval completions recorded, CPU
// time taken over the measured window.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "latency_histogram.hpp"
#include "shared_window.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"

namespace vfioq::perf {

enum class BufferMode { kPreRegistered, kPerIo };

struct Workload {
    uint32_t read_percent = 100;  // the rest are writes
    bool random = true;
    std::vector<uint32_t> block_sizes = {4096};  // one, or a distribution drawn uniformly
    uint32_t depth = 256;
    uint32_t batch = 0;           // submissions per doorbell; 0: up to the depth
    uint32_t segments = 1;        // per command
    bool interrupts = false;
    BufferMode registration = BufferMode::kPreRegistered;
    bool verify = false;
    uint64_t ios = 0;             // per thread; 0: run for the duration
    uint64_t interval_ns = 1'000'000'000;  // IOPS are sampled over intervals of this
    uint32_t max_intervals = 4096;
    uint64_t host_budget = 256u << 20;     // host bytes per thread; slots share memory beyond it
    double ticks_per_ns = 1;               // calibrate_ticks()
    double drain_s = 10;                   // after the run, how long to wait for what is in flight
    uint64_t seed = 1;
};

// Where the measured window starts and ends: the main thread moves it on.
enum class Phase : int { kWarmUp, kMeasure, kStop };

struct ThreadResult {
    uint32_t thread = 0;
    uint16_t qid = 0;
    int cpu = -1;
    uint64_t ios[2] = {0, 0};    // read, write
    uint64_t bytes[2] = {0, 0};
    LatencyHistogram latency[2];  // read, write
    std::vector<uint64_t> interval_ios;  // completions per interval
    double seconds = 0;           // the measured window
    double user_s = 0, kernel_s = 0;
    // Time inside submissions and inside polls that reaped something: the
    // driver's own cost, without the spinning of a thread that waits for the device.
    double busy_ns = 0;
    uint64_t empty_polls = 0;
    uint64_t errors = 0;          // commands that did not succeed
    uint64_t mismatches = 0;      // verify: blocks that did not read back as written
    std::string first_error;
    QueuePairStats qp_before, qp_after;
    int64_t syscalls = -1;        // in the measured window; -1: not counted (syscalls_why says why)
    std::string syscalls_why;
};

class Worker {
public:
    Worker(Controller& ctrl, Device& device, const Workload& w, uint32_t thread, uint64_t devaddr_base,
           uint64_t devaddr_span, int cpu);
    ~Worker();
    Worker(const Worker&) = delete;
    Worker& operator=(const Worker&) = delete;

    // Queue pair and memory; errors say what could not be had.
    Result<void> prepare();
    // The thread's body: runs until the phase is kStop (or the I/O count is met), then drains.
    // Its measured window opens and closes inside `window`.
    void run(const std::atomic<Phase>& phase, SharedWindow& window);

    [[nodiscard]] const ThreadResult& result() const { return result_; }
    // Completions counted so far in the measured window (read by the progress line).
    [[nodiscard]] uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }
    [[nodiscard]] bool finished() const { return finished_.load(std::memory_order_acquire); }
    // The thread has seen kMeasure and opened its window (or has already finished).
    [[nodiscard]] bool measuring() const { return window_open_.load(std::memory_order_acquire) || finished(); }

private:
    struct Slot;
    static void on_complete(const Completion& c);
    void complete(Slot& s, const Completion& c);
    Result<void> fill(Slot& s);
    bool submit_some();
    void fill_pattern(Slot& s);
    uint64_t check_pattern(const Slot& s) const;

    Controller& ctrl_;
    Device& device_;
    Workload w_;
    uint64_t base_, span_;
    std::unique_ptr<QueuePair> qp_;
    DmaBuffer memory_;                  // pre-registered: every slot's segments
    std::vector<std::byte> plain_;      // per-I/O registration: application memory
    std::byte* host_ = nullptr;
    std::vector<Slot> slots_;
    std::vector<uint32_t> free_;        // slots not in flight
    std::vector<IoRequest> batch_;
    uint64_t rng_;
    uint64_t cursor_ = 0;               // sequential: the next card address
    bool measuring_ = false;
    uint64_t window_start_ = 0;         // tsc
    uint64_t interval_ = 0, interval_end_ = 0, interval_ticks_ = 1;  // the IOPS interval a completion counts in
    // Nanoseconds per tick in 32.32 fixed point: the conversion per completion is a multiply and a
    // shift, not a round trip through floating point.
    uint64_t ns_per_tick_q32_ = uint64_t{1} << 32;
    [[nodiscard]] uint64_t ticks_to_ns(uint64_t ticks) const {
        __extension__ using U128 = unsigned __int128;
        return static_cast<uint64_t>((static_cast<U128>(ticks) * ns_per_tick_q32_) >> 32);
    }
    // Completions of one poll share a clock reading, kClockUses at most: a latency is then at most
    // the time the poll took for kClockUses - 1 callbacks short, a few hundred nanoseconds, and a
    // poll's first completion always reads the clock, so at depth 1 every one does.
    static constexpr uint32_t kClockUses = 8;
    uint32_t clock_uses_ = kClockUses;
    uint64_t clock_ = 0;
    uint64_t block_align_ = 1;
    std::vector<uint64_t> block_slots_;  // per block size: the card addresses a random command may start at
    uint64_t counted_ = 0;
    std::atomic<uint64_t> progress_{0};
    std::atomic<bool> finished_{false};
    std::atomic<bool> window_open_{false};
    ThreadResult result_;
};

// Time stamps for latencies: the TSC where there is one (a few cycles), else the steady clock.
uint64_t now_ticks();
// Ticks per nanosecond, measured over `ms`.
double calibrate_ticks(uint32_t ms = 50);

}  // namespace vfioq::perf
