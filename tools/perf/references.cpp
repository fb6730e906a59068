// SPDX-License-Identifier: MIT
#include "references.hpp"

#include <liburing.h>
#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

namespace vfioq::perf {

namespace {

using Clock = std::chrono::steady_clock;

double elapsed_ns(Clock::time_point since) {
    return std::chrono::duration<double, std::nano>(Clock::now() - since).count();
}

void pin(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set);
}

void measure_io_uring(References& r, uint32_t batch, uint32_t budget_ms) {
    r.io_uring_batch = batch;
    io_uring ring{};
    if (int err = ::io_uring_queue_init(batch, &ring, 0); err < 0) {
        r.io_uring_error = std::string("io_uring_queue_init: ") + std::strerror(-err);
        return;
    }
    uint64_t ops = 0;
    const auto start = Clock::now();
    const auto until = start + std::chrono::milliseconds(budget_ms);
    while (Clock::now() < until) {
        for (int rep = 0; rep < 16; ++rep) {
            for (uint32_t i = 0; i < batch; ++i) ::io_uring_prep_nop(::io_uring_get_sqe(&ring));
            if (int n = ::io_uring_submit_and_wait(&ring, batch); n < 0) {
                r.io_uring_error = std::string("io_uring_submit_and_wait: ") + std::strerror(-n);
                ::io_uring_queue_exit(&ring);
                return;
            }
            unsigned head, seen = 0;
            io_uring_cqe* cqe;
            io_uring_for_each_cqe(&ring, head, cqe) ++seen;
            ::io_uring_cq_advance(&ring, seen);
            ops += seen;
        }
    }
    r.io_uring_nop_ns = elapsed_ns(start) / static_cast<double>(ops);
    ::io_uring_queue_exit(&ring);
}

void measure_cache_line(References& r, uint32_t budget_ms) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    ::sched_getaffinity(0, sizeof(allowed), &allowed);
    int found = 0;
    for (int c = 0; c < CPU_SETSIZE && found < 2; ++c)
        if (CPU_ISSET(c, &allowed)) r.cache_line_cpus[found++] = c;
    if (found < 2) r.cache_line_cpus[0] = r.cache_line_cpus[1] = -1;
    struct alignas(64) Line {
        std::atomic<uint64_t> v{0};
    };
    Line ping, pong;
    std::atomic<bool> stop{false};
    std::thread echo([&] {
        pin(r.cache_line_cpus[1]);
        uint64_t expect = 1;
        while (!stop.load(std::memory_order_relaxed)) {
            if (ping.v.load(std::memory_order_acquire) == expect) {
                pong.v.store(expect, std::memory_order_release);
                ++expect;
            }
        }
    });
    pin(r.cache_line_cpus[0]);
    uint64_t trips = 0;
    const auto start = Clock::now();
    const auto until = start + std::chrono::milliseconds(budget_ms);
    for (uint64_t n = 1;; ++n) {
        ping.v.store(n, std::memory_order_release);
        // On one CPU the echo thread needs the core to answer.
        while (pong.v.load(std::memory_order_acquire) != n)
            if (found < 2) std::this_thread::yield();
        trips = n;
        if ((n & 1023) == 0 && Clock::now() >= until) break;
    }
    r.cache_line_rtt_ns = elapsed_ns(start) / static_cast<double>(trips);
    stop.store(true);
    echo.join();
    // Give the caller its CPUs back.
    ::pthread_setaffinity_np(::pthread_self(), sizeof(allowed), &allowed);
}

void measure_memcpy(References& r, uint32_t budget_ms) {
    constexpr size_t kBytes = 64u << 20;
    std::vector<char> src(kBytes, 1), dst(kBytes, 0);
    uint64_t copied = 0;
    const auto start = Clock::now();
    const auto until = start + std::chrono::milliseconds(budget_ms);
    do {
        std::memcpy(dst.data(), src.data(), kBytes);
        copied += kBytes;
        src[copied % kBytes] = static_cast<char>(copied);  // keep the copy from being elided
    } while (Clock::now() < until);
    const double s = elapsed_ns(start) / 1e9;
    r.memcpy_bytes = copied;
    r.memcpy_gib_s = static_cast<double>(copied) / s / (1u << 30);
    if (dst[copied % kBytes] == 2) r.memcpy_bytes += 0;  // dst is used
}

}  // namespace

References measure_references(uint32_t io_uring_batch, uint32_t budget_ms) {
    References r;
    measure_io_uring(r, io_uring_batch == 0 ? 1 : io_uring_batch, budget_ms / 3);
    measure_cache_line(r, budget_ms / 3);
    measure_memcpy(r, budget_ms / 3);
    return r;
}

}  // namespace vfioq::perf
