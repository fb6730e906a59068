// SPDX-License-Identifier: MIT
// The span of a run that every thread's figures come from: from the first thread
// opening its measured window to the last one closing it. A figure of the whole run
// (the built-in model's busy share) is read at those two moments, by the threads
// themselves: the main thread may not run for milliseconds on a loaded machine, and a
// short run is over before it looks.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

namespace vfioq::perf {

class SharedWindow {
public:
    // `at_open` runs in the first thread to open its window, `at_close` in the last of
    // `threads` to be done with its own, each once.
    SharedWindow(uint32_t threads, std::function<void()> at_open, std::function<void()> at_close)
        : threads_(threads), at_open_(std::move(at_open)), at_close_(std::move(at_close)) {}
    SharedWindow(const SharedWindow&) = delete;
    SharedWindow& operator=(const SharedWindow&) = delete;

    void open() {
        if (opened_.fetch_add(1, std::memory_order_acq_rel) == 0 && at_open_) at_open_();
    }
    // Every thread calls this once at the end of its run, whether it measured or not, so
    // that one that never got to measure does not keep the window open.
    void done() {
        if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == threads_ && opened() && at_close_) at_close_();
    }
    [[nodiscard]] bool opened() const { return opened_.load(std::memory_order_acquire) > 0; }

private:
    const uint32_t threads_;
    std::function<void()> at_open_, at_close_;
    std::atomic<uint32_t> opened_{0}, done_{0};
};

}  // namespace vfioq::perf
