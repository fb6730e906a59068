// SPDX-License-Identifier: MIT
#include "syscall_counter.hpp"

#include <fmt/format.h>
#include <linux/perf_event.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

namespace vfioq::perf {

namespace {

// Where tracefs is mounted, from /proc/mounts; empty if nowhere.
std::string tracefs_mount() {
    std::ifstream mounts("/proc/mounts");
    std::string dev, dir, type, rest;
    while (mounts >> dev >> dir >> type && std::getline(mounts, rest))
        if (type == "tracefs") return dir;
    return {};
}

}  // namespace

SyscallCounter SyscallCounter::for_this_thread() {
    SyscallCounter c;
    const std::string root = tracefs_mount();
    if (root.empty()) {
        c.why_ = "tracefs is not mounted (as root: mount -t tracefs nodev /sys/kernel/tracing)";
        return c;
    }
    std::ifstream id_file(root + "/events/raw_syscalls/sys_enter/id");
    uint64_t id = 0;
    if (!(id_file >> id)) {
        c.why_ = fmt::format("{}/events/raw_syscalls/sys_enter/id cannot be read (needs root)", root);
        return c;
    }
    perf_event_attr attr{};
    attr.size = sizeof(attr);
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.config = id;
    attr.sample_period = 1;
    const auto fd = static_cast<int>(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC));
    if (fd < 0) {
        c.why_ = fmt::format("perf_event_open of raw_syscalls:sys_enter: {} (needs root or "
                             "kernel.perf_event_paranoid = -1)",
                             std::strerror(errno));
        return c;
    }
    c.fd_.reset(fd);
    return c;
}

uint64_t SyscallCounter::read() const {
    uint64_t n = 0;
    if (!fd_ || ::read(fd_.get(), &n, sizeof(n)) != sizeof(n)) return 0;
    return n;
}

}  // namespace vfioq::perf
