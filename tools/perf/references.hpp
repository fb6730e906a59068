// SPDX-License-Identifier: MIT
// What the driver's figures are laid beside, measured on this machine in the
// same run: the cost of an io_uring NOP (the kernel's cheapest I/O path), the
// round trip of a cache line between two cores (the floor of any polled
// handshake between driver and device), the bare ring (the same queue depth and
// doorbell batch as the run, with nothing but the entries' cache lines moving
// between two cores: the floor of one queue pair's rate) and one thread's
// memcpy bandwidth.
#pragma once

#include <cstdint>
#include <string>

namespace vfioq::perf {

struct References {
    double io_uring_nop_ns = 0;   // per operation, submitted and reaped in batches
    uint32_t io_uring_batch = 0;
    std::string io_uring_error;   // why it could not be measured, if it could not
    double cache_line_rtt_ns = 0; // one round trip
    int cache_line_cpus[2] = {-1, -1};
    double bare_ring_per_s = 0;  // commands; 0 when there are not two CPUs to run it on
    uint32_t bare_ring_depth = 0, bare_ring_batch = 0;
    double memcpy_gib_s = 0;      // one thread, buffers far larger than the caches
    uint64_t memcpy_bytes = 0;
};

// Takes about `budget_ms` in all. The cache-line and bare-ring threads run on
// the first two CPUs the process may use (the cache line floats on one CPU; the
// bare ring is not run there).
References measure_references(uint32_t depth, uint32_t batch, uint32_t budget_ms = 800);

}  // namespace vfioq::perf
