// SPDX-License-Identifier: MIT
// The wait for a queue pair's MSI-X eventfd through an io_uring this object
// owns: set up with the queue pair in interrupt mode, torn down with it. One
// read of the eventfd stays armed from one wait to the next, so an interrupt
// that lands between a poll and the wait after it completes that read at once
// instead of being lost.
#pragma once

#include <liburing.h>

#include <chrono>
#include <cstdint>

#include "vfioq/result.hpp"

namespace vfioq::io {

class InterruptWait {
public:
    // Nothing to wait on: a polled queue pair.
    InterruptWait() = default;
    explicit InterruptWait(int event_fd);
    ~InterruptWait();
    InterruptWait(const InterruptWait&) = delete;
    InterruptWait& operator=(const InterruptWait&) = delete;

    // Whether there is an eventfd, and an io_uring to wait on it with.
    [[nodiscard]] bool has_eventfd() const { return event_fd_ >= 0; }
    [[nodiscard]] bool available() const { return ready_; }

    enum class Outcome : uint8_t { kInterrupt, kSliceOver };
    // Waits at most `slice` for the eventfd. kInterrupt once it was read (the
    // count is taken; the next wait arms a new read), kSliceOver when the slice
    // ended first. Errors carry -errno's code and say which step failed.
    Result<Outcome> wait(std::chrono::nanoseconds slice);
    // Reads that found the counter above zero.
    [[nodiscard]] uint64_t interrupts() const { return interrupts_; }

private:
    int event_fd_ = -1;
    io_uring ring_{};
    bool ready_ = false;
    bool read_armed_ = false;
    uint64_t event_count_ = 0;  // where the armed read lands
    uint64_t interrupts_ = 0;
};

}  // namespace vfioq::io
