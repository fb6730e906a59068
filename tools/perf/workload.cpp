// SPDX-License-Identifier: MIT
#include "workload.hpp"

#include "syscall_counter.hpp"

#include <fmt/format.h>
#include <pthread.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#if defined(__x86_64__)
#include <x86intrin.h>
#endif

namespace vfioq::perf {

uint64_t now_ticks() {
#if defined(__x86_64__)
    return __rdtsc();
#else
    return static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
#endif
}

double calibrate_ticks(uint32_t ms) {
    using Clock = std::chrono::steady_clock;
    const auto t0 = Clock::now();
    const uint64_t c0 = now_ticks();
    while (Clock::now() - t0 < std::chrono::milliseconds(ms)) {
    }
    const uint64_t c1 = now_ticks();
    const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count();
    return std::max(1e-3, static_cast<double>(c1 - c0) / ns);
}

namespace {

constexpr uint64_t kGap = 64;  // between a command's segments, so that they never merge

uint64_t xorshift(uint64_t& s) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
}

double thread_cpu(double& kernel) {
    rusage ru{};
    ::getrusage(RUSAGE_THREAD, &ru);
    kernel = static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6;
    return static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6;
}

// A draw in [0, n) from 64 random bits: a multiply, where `%` would be a division per command.
uint64_t below(uint64_t random, uint64_t n) {
    __extension__ using u128 = unsigned __int128;
    return static_cast<uint64_t>((static_cast<u128>(random) * n) >> 64);
}

// The verify pattern: each 8 bytes name the card address, the write's sequence and the offset.
uint64_t pattern_word(uint64_t devaddr, uint64_t seq, uint64_t offset) {
    uint64_t x = devaddr * 0x9E3779B97F4A7C15ull ^ seq * 0xC2B2AE3D27D4EB4Full ^ offset;
    return x ^ (x >> 29);
}

}  // namespace

struct Worker::Slot {
    Worker* owner = nullptr;
    uint32_t index = 0;
    uint64_t submitted = 0;
    bool counted = false;
    bool is_read = false;
    bool verify_read = false;  // verify: this read checks what the last write put there
    uint32_t bytes = 0;
    uint64_t devaddr = 0;
    uint64_t seq = 0;
    bool was_read = false;  // verify: what fill() changed, for a submission that is refused
    uint64_t was_seq = 0;
    std::byte* host = nullptr;
    uint64_t host_iova = 0;
    std::vector<DmaSegment> segs;
    uint32_t segs_bytes = 0;  // the transfer size `segs` describe (0: none yet)
    vfioq::Registration reg;
};

Worker::Worker(Controller& ctrl, Device& device, const Workload& w, uint32_t thread, uint64_t devaddr_base,
               uint64_t devaddr_span, int cpu)
    : ctrl_(ctrl), device_(device), w_(w), base_(devaddr_base), span_(devaddr_span), rng_(w.seed * 2654435761u + thread + 1) {
    result_.thread = thread;
    result_.cpu = cpu;
}

Worker::~Worker() {
    if (qp_) (void)qp_->close();
    slots_.clear();  // registrations before the memory they hold
}

Result<void> Worker::prepare() {
    const auto& info = ctrl_.info();
    const uint32_t max_block = *std::max_element(w_.block_sizes.begin(), w_.block_sizes.end());
    const uint32_t align = std::max<uint32_t>(info.segment_alignment, 1);
    if (info.block_size == 0)
        return make_error(EINVAL, fmt::format("{}: the device reports a block size of 0", device_.name()));
    const uint64_t seg_len = w_.segments == 0 ? 0 : max_block / w_.segments;
    if (seg_len == 0)
        return make_error(EINVAL, fmt::format("{} segments do not fit a {}-byte block", w_.segments, max_block));
    if (align > 1)
        for (uint32_t b : w_.block_sizes)
            if ((b / w_.segments) % align || b % w_.segments)
                return make_error(EINVAL, fmt::format("{}: {}-byte blocks in {} segments are not whole {}-byte units, "
                                                      "as the device needs",
                                                      device_.name(), b, w_.segments, align));
    for (uint32_t b : w_.block_sizes) {
        if (b == 0 || b % info.block_size)
            return make_error(EINVAL, fmt::format("{}: the block size {} is not a multiple of the device's {} bytes",
                                                  device_.name(), b, info.block_size));
        if (b > info.max_transfer)
            return make_error(EINVAL, fmt::format("{}: the block size {} is beyond the {} bytes a command may move",
                                                  device_.name(), b, info.max_transfer));
    }
    if (w_.segments > info.max_segments)
        return make_error(EINVAL, fmt::format("{}: {} segments per command, more than the device's {}",
                                              device_.name(), w_.segments, info.max_segments));
    if (span_ < max_block) return make_error(EINVAL, "no card memory left for this thread");
    if (w_.verify && uint64_t{w_.depth} * max_block > span_)
        return make_error(EINVAL, fmt::format("--verify gives every command its own card memory: depth {} x {} "
                                              "bytes is more than this thread's {} bytes",
                                              w_.depth, max_block, span_));
    QueuePairOptions o;
    o.depth = w_.depth;
    o.interrupts = w_.interrupts;
    o.poll_batch = std::max<uint32_t>(256, std::min<uint32_t>(w_.depth, 4096));
    auto qp = ctrl_.create_queue_pair(o);
    if (!qp) return qp.error();
    qp_ = std::move(*qp);
    result_.qid = qp_->id();

    // Slots share host memory beyond the budget unless verifying (each then needs its own).
    const uint64_t region = (uint64_t{max_block} + w_.segments * std::max<uint64_t>(kGap, align) + 4095) / 4096 * 4096;
    uint64_t regions = w_.depth;
    if (!w_.verify) regions = std::clamp<uint64_t>(w_.host_budget / region, 1, w_.depth);
    const uint64_t host_bytes = regions * region;
    if (w_.registration == BufferMode::kPreRegistered) {
        auto m = device_.dma().allocate(host_bytes);
        if (!m) return m.error().with_context("host memory for the commands");
        memory_ = std::move(*m);
        host_ = memory_.data();
    } else {
        plain_.resize(host_bytes + 4096);
        host_ = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(plain_.data()) + 4095) & ~uintptr_t{4095});
    }
    std::memset(host_, 0, host_bytes);
    slots_.resize(w_.depth);
    for (uint32_t i = 0; i < w_.depth; ++i) {
        Slot& s = slots_[i];
        s.owner = this;
        s.index = i;
        s.host = host_ + (i % regions) * region;
        s.host_iova = memory_ ? memory_.iova() + (i % regions) * region : 0;
        s.segs.resize(w_.segments);
        s.devaddr = base_ + uint64_t{i} * max_block;
    }
    free_.reserve(w_.depth);
    for (uint32_t i = w_.depth; i > 0; --i) free_.push_back(i - 1);
    batch_.resize(w_.batch ? std::min(w_.batch, w_.depth) : w_.depth);
    result_.interval_ios.assign(w_.max_intervals, 0);
    // What fill() and complete() would otherwise work out per command.
    block_align_ = *std::min_element(w_.block_sizes.begin(), w_.block_sizes.end());
    for (uint32_t b : w_.block_sizes) block_slots_.push_back((span_ - b) / block_align_ + 1);
    ns_per_tick_q32_ = static_cast<uint64_t>(std::llround(4294967296.0 / w_.ticks_per_ns));
    interval_ticks_ =
        std::max<uint64_t>(1, static_cast<uint64_t>(static_cast<double>(w_.interval_ns) * w_.ticks_per_ns));
    return {};
}

// Byte `off` of the transfer in the slot's host memory: segments lie kGap apart.
static std::byte* host_byte(std::byte* host, uint64_t off, uint64_t bytes, uint32_t segments) {
    const uint64_t seg = std::min<uint64_t>(off / (bytes / segments), segments - 1);
    return host + off + seg * kGap;
}

void Worker::fill_pattern(Slot& s) {
    for (uint64_t off = 0; off < s.bytes; ++off)
        *host_byte(s.host, off, s.bytes, w_.segments) =
            static_cast<std::byte>(pattern_word(s.devaddr, s.seq, off / 8) >> (off % 8 * 8));
}

uint64_t Worker::check_pattern(const Slot& s) const {
    for (uint64_t off = 0; off < s.bytes; ++off)
        if (*host_byte(s.host, off, s.bytes, w_.segments) !=
            static_cast<std::byte>(pattern_word(s.devaddr, s.seq, off / 8) >> (off % 8 * 8)))
            return 1;
    return 0;
}

Result<void> Worker::fill(Slot& s) {
    const size_t pick = w_.block_sizes.size() == 1 ? 0 : below(xorshift(rng_), w_.block_sizes.size());
    const uint32_t bs = w_.block_sizes[pick];
    if (w_.verify) {
        // Each slot writes its own card block, then reads it back, then writes it anew.
        s.was_read = s.is_read;
        s.was_seq = s.seq;
        s.is_read = !s.is_read && s.bytes != 0;
        s.verify_read = s.is_read;
        if (!s.is_read) {
            s.bytes = bs;
            ++s.seq;
            fill_pattern(s);
        } else {
            std::memset(s.host, 0, s.bytes + w_.segments * kGap);
        }
    } else {
        s.bytes = bs;
        // All reads or all writes need no draw from the generator.
        s.is_read = w_.read_percent >= 100 || (w_.read_percent > 0 && below(xorshift(rng_), 100) < w_.read_percent);
        if (w_.random) {
            s.devaddr = base_ + below(xorshift(rng_), block_slots_[pick]) * block_align_;
        } else {
            if (cursor_ + bs > span_) cursor_ = 0;
            s.devaddr = base_ + cursor_;
            cursor_ += bs;
        }
    }
    if (w_.registration == BufferMode::kPerIo) {
        auto reg = device_.dma().register_memory(s.host, s.bytes + w_.segments * kGap);
        if (!reg) return reg.error();
        s.reg = std::move(*reg);
    } else if (s.segs_bytes == s.bytes) {
        return {};  // pre-registered memory: the segments of a transfer this size are the ones built before
    }
    s.segs_bytes = s.reg ? 0 : s.bytes;
    const uint64_t seg_len = s.bytes / w_.segments;
    for (uint32_t i = 0; i < w_.segments; ++i) {
        const uint64_t off = i * (seg_len + kGap);
        const uint64_t len = i + 1 == w_.segments ? s.bytes - seg_len * i : seg_len;
        s.segs[i] = s.reg ? s.reg.segment(s.host + off, len) : DmaSegment{s.host_iova + off, len};
    }
    return {};
}

bool Worker::submit_some() {
    uint32_t n = 0;
    const auto cap = static_cast<uint32_t>(batch_.size());
    while (n < cap && !free_.empty()) {
        Slot& s = slots_[free_.back()];
        if (auto r = fill(s); !r) {
            ++result_.errors;
            if (result_.first_error.empty()) result_.first_error = r.error().message;
            return false;
        }
        free_.pop_back();
        s.counted = measuring_;
        batch_[n++] = IoRequest{s.is_read ? Opcode::kRead : Opcode::kWrite, s.devaddr, s.segs, on_complete, &s};
    }
    if (n == 0) return true;
    // One time stamp for the batch, taken as it goes to the queue pair.
    const uint64_t submitted = now_ticks();
    for (uint32_t i = 0; i < n; ++i) static_cast<Slot*>(batch_[i].context)->submitted = submitted;
    auto done = qp_->submit_batch({batch_.data(), n});
    const uint32_t k = done ? *done : 0;
    // What was not taken goes back (back-pressure); the slots stay as they were filled.
    for (uint32_t i = n; i > k; --i) {
        Slot& s = *static_cast<Slot*>(batch_[i - 1].context);
        if (s.reg) s.reg = vfioq::Registration{};
        if (w_.verify) {
            s.is_read = s.was_read;
            s.seq = s.was_seq;
        }
        free_.push_back(s.index);
    }
    if (!done) {
        ++result_.errors;
        if (result_.first_error.empty()) result_.first_error = done.error().message;
        return false;
    }
    return true;
}

void Worker::on_complete(const Completion& c) {
    auto* s = static_cast<Slot*>(c.context);
    s->owner->complete(*s, c);
}

void Worker::complete(Slot& s, const Completion& c) {
    if (++clock_uses_ > kClockUses) {
        clock_ = now_ticks();
        clock_uses_ = 1;
    }
    const uint64_t now = clock_;
    if (c.status != IoStatus::kSuccess) {
        ++result_.errors;
        if (result_.first_error.empty())
            result_.first_error = fmt::format("queue {} CID {}: {} {} bytes at card address {:#x}: {}", c.qid, c.cid,
                                              s.is_read ? "read" : "write", s.bytes, s.devaddr,
                                              io_status_name(c.status));
    } else if (s.verify_read && check_pattern(s)) {
        if (result_.mismatches++ == 0 && result_.first_error.empty())
            result_.first_error = fmt::format("queue {} CID {}: the {} bytes read back at card address {:#x} are not "
                                              "what was written there",
                                              c.qid, c.cid, s.bytes, s.devaddr);
    }
    if (s.counted && measuring_) {
        const int op = s.is_read ? 0 : 1;
        result_.latency[op].record(ticks_to_ns(now - s.submitted));
        ++result_.ios[op];
        result_.bytes[op] += s.bytes;
        // The thread's own TSC only moves forward: the interval moves on when its end is passed.
        while (now >= interval_end_) {
            ++interval_;
            interval_end_ += interval_ticks_;
        }
        if (interval_ < result_.interval_ios.size()) ++result_.interval_ios[interval_];
        progress_.store(++counted_, std::memory_order_relaxed);
    }
    if (s.reg) s.reg = vfioq::Registration{};
    free_.push_back(s.index);
}

void Worker::run(const std::atomic<Phase>& phase, SharedWindow& window) {
    if (result_.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(result_.cpu, &set);
        ::pthread_setaffinity_np(::pthread_self(), sizeof(set), &set);
    }
    using Clock = std::chrono::steady_clock;
    Clock::time_point wall_start;
    double user0 = 0, kernel0 = 0;
    SyscallCounter syscalls;
    uint64_t busy_ticks = 0;
    uint64_t reaped_at = 0;  // when the last poll that reaped returned; 0: it did not
    bool ok = true;
    for (;;) {
        const Phase p = phase.load(std::memory_order_relaxed);
        if (p == Phase::kStop || (w_.ios && counted_ >= w_.ios) || !ok) break;
        if (p == Phase::kMeasure && !measuring_) {
            measuring_ = true;
            window_start_ = now_ticks();
            interval_ = 0;
            interval_end_ = window_start_ + interval_ticks_;
            reaped_at = 0;  // the window's first submission is timed from inside it
            wall_start = Clock::now();
            user0 = thread_cpu(kernel0);
            result_.qp_before = qp_->stats();
            syscalls = SyscallCounter::for_this_thread();
            window.open();
            window_open_.store(true, std::memory_order_release);
        }
        // The clock costs tens of nanoseconds in some virtual machines, so each reading serves
        // twice where it can: the end of a poll that reaped is the start of the next submission.
        uint64_t t0 = 0, t1 = 0;
        if (!free_.empty()) {
            t0 = reaped_at != 0 ? reaped_at : now_ticks();
            ok = submit_some();
            t1 = now_ticks();
        }
        reaped_at = 0;
        uint32_t reaped = 0;
        clock_uses_ = kClockUses;  // the first completion of a poll reads the clock
        if (w_.interrupts) {
            auto r = qp_->wait(std::chrono::milliseconds(10));
            if (!r) {
                ++result_.errors;
                if (result_.first_error.empty()) result_.first_error = r.error().message;
                ok = false;
            }
            reaped = r ? *r : 0;
        } else {
            if (t1 == 0) t0 = t1 = now_ticks();
            reaped = qp_->poll();
            if (reaped) reaped_at = now_ticks();
        }
        if (measuring_) {
            // A wait that sleeps is not the driver's work: in interrupt mode only submissions count.
            busy_ticks += (t1 - t0) + (reaped_at != 0 ? reaped_at - t1 : 0);
            if (!reaped) ++result_.empty_polls;
        }
    }
    if (measuring_) {
        if (syscalls.counting())
            result_.syscalls = static_cast<int64_t>(syscalls.read());
        else
            result_.syscalls_why = syscalls.why();
        result_.seconds = std::chrono::duration<double>(Clock::now() - wall_start).count();
        result_.busy_ns = static_cast<double>(busy_ticks) / w_.ticks_per_ns;
        double kernel1 = 0;
        result_.user_s = thread_cpu(kernel1) - user0;
        result_.kernel_s = kernel1 - kernel0;
        result_.qp_after = qp_->stats();
        measuring_ = false;
    }
    window.done();
    // What is still in flight completes outside the window.
    const auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(w_.drain_s));
    while (qp_->outstanding() > 0 && Clock::now() < until) {
        if (w_.interrupts)
            (void)qp_->wait(std::chrono::milliseconds(10));
        else
            qp_->poll();
    }
    if (qp_->outstanding() > 0 && result_.first_error.empty())
        result_.first_error = fmt::format("queue {}: {} commands still outstanding {} s after the run", result_.qid,
                                          qp_->outstanding(), w_.drain_s);
    finished_.store(true, std::memory_order_release);
}

}  // namespace vfioq::perf
