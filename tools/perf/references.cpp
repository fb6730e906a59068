// SPDX-License-Identifier: MIT
#include "references.hpp"

#include <liburing.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
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

// The first two CPUs the process may use; false (and -1s) when it has one.
bool two_cpus(int (&cpus)[2]) {
    cpu_set_t allowed;
    CPU_ZERO(&allowed);
    ::sched_getaffinity(0, sizeof(allowed), &allowed);
    int found = 0;
    for (int c = 0; c < CPU_SETSIZE && found < 2; ++c)
        if (CPU_ISSET(c, &allowed)) cpus[found++] = c;
    if (found < 2) cpus[0] = cpus[1] = -1;
    return found == 2;
}

// Gives the calling thread all the CPUs it may use, as the process started with.
class AffinityRestorer {
public:
    AffinityRestorer() { ::sched_getaffinity(0, sizeof(allowed_), &allowed_); }
    ~AffinityRestorer() { ::pthread_setaffinity_np(::pthread_self(), sizeof(allowed_), &allowed_); }
    AffinityRestorer(const AffinityRestorer&) = delete;
    AffinityRestorer& operator=(const AffinityRestorer&) = delete;

private:
    cpu_set_t allowed_{};
};

void measure_cache_line(References& r, uint32_t budget_ms) {
    AffinityRestorer restore;
    const int found = two_cpus(r.cache_line_cpus) ? 2 : 1;
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
}

// One queue pair's memory traffic and nothing else: the host writes 64-byte entries into a
// ring of depth + 1 and publishes the tail every `batch`, the other core reads each entry
// whole and posts a 16-byte completion with a phase tag, and the host reaps them. No CIDs,
// trackers, descriptors, checks or callbacks: what a driver and a device add is above this.
void measure_bare_ring(References& r, uint32_t depth, uint32_t batch, uint32_t budget_ms) {
    int cpus[2];
    if (!two_cpus(cpus) || depth == 0) return;
    AffinityRestorer restore;
    batch = std::clamp<uint32_t>(batch, 1, depth);
    r.bare_ring_depth = depth;
    r.bare_ring_batch = batch;
    struct alignas(64) Entry {
        uint64_t words[8];
    };
    struct Completion {
        uint32_t dw0, dw1;
        uint16_t sqhd, sqid, cid, status_phase;
    };
    struct alignas(64) Index {
        std::atomic<uint32_t> v{0};
    };
    const uint32_t n = depth + 1;
    std::vector<Entry> sq(n);
    std::vector<Completion> cq(n + 4);  // whole lines
    Index tail_doorbell;
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> read_sum{0};  // what the device read is used, so that it is read
    std::thread device([&] {
        pin(cpus[1]);
        uint32_t head = 0, cq_tail = 0;
        uint16_t phase = 1;
        uint64_t seen = 0;
        while (!stop.load(std::memory_order_relaxed)) {
            const uint32_t tail = tail_doorbell.v.load(std::memory_order_acquire);
            while (head != tail) {
                Entry e;
                std::memcpy(&e, &sq[head], sizeof(e));
                seen += e.words[7];
                head = head + 1 == n ? 0 : head + 1;
                Completion& c = cq[cq_tail];
                c.dw0 = c.dw1 = 0;
                c.sqhd = static_cast<uint16_t>(head);
                c.sqid = 1;
                c.cid = static_cast<uint16_t>(e.words[0] >> 16);
                std::atomic_ref<uint16_t>(c.status_phase).store(phase, std::memory_order_release);
                cq_tail = cq_tail + 1 == n ? 0 : cq_tail + 1;
                if (cq_tail == 0) phase ^= 1;
            }
        }
        read_sum.store(seen, std::memory_order_relaxed);
    });
    pin(cpus[0]);
    uint32_t tail = 0, cq_head = 0, outstanding = 0;
    uint16_t phase = 1;
    uint64_t done = 0;
    const auto start = Clock::now();
    const auto until = start + std::chrono::milliseconds(budget_ms);
    for (uint64_t pass = 1;; ++pass) {
        uint32_t queued = 0;
        for (; outstanding < depth && queued < batch; ++outstanding, ++queued) {
            Entry& e = sq[tail];
            e.words[0] = uint64_t{tail} << 16 | 1;
            for (uint64_t w = 1; w < 8; ++w) e.words[w] = w;
            tail = tail + 1 == n ? 0 : tail + 1;
        }
        if (queued != 0) tail_doorbell.v.store(tail, std::memory_order_release);
        for (;;) {
            const uint16_t tag = std::atomic_ref<uint16_t>(cq[cq_head].status_phase).load(std::memory_order_acquire);
            if ((tag & 1) != phase) break;
            cq_head = cq_head + 1 == n ? 0 : cq_head + 1;
            if (cq_head == 0) phase ^= 1;
            --outstanding;
            ++done;
        }
        if ((pass & 1023) == 0 && Clock::now() >= until) break;
    }
    const double ns = elapsed_ns(start);
    stop.store(true);
    device.join();
    r.bare_ring_per_s = read_sum.load() != 0 ? static_cast<double>(done) / ns * 1e9 : 0;
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

References measure_references(uint32_t depth, uint32_t batch, uint32_t budget_ms) {
    References r;
    measure_io_uring(r, batch == 0 ? 1 : batch, budget_ms / 4);
    measure_cache_line(r, budget_ms / 4);
    measure_bare_ring(r, depth, batch, budget_ms / 4);
    measure_memcpy(r, budget_ms / 4);
    return r;
}

}  // namespace vfioq::perf
