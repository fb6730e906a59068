// SPDX-License-Identifier: MIT
// Counts the system calls one thread makes, through the raw_syscalls:sys_enter
// tracepoint and perf_event_open: how a benchmark shows that the polled fast
// path makes none per command. Needs tracefs mounted and the right to trace
// (root, or perf_event_paranoid -1); why() says what is missing otherwise.
#pragma once

#include <cstdint>
#include <string>

#include "vfioq/unique_fd.hpp"

namespace vfioq::perf {

class SyscallCounter {
public:
    // Starts counting the calling thread's system calls.
    static SyscallCounter for_this_thread();

    [[nodiscard]] bool counting() const { return static_cast<bool>(fd_); }
    [[nodiscard]] const std::string& why() const { return why_; }
    // System calls since the start (the read that asks is not among them).
    [[nodiscard]] uint64_t read() const;

private:
    UniqueFd fd_;
    std::string why_;
};

}  // namespace vfioq::perf
