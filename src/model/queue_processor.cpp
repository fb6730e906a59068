// SPDX-License-Identifier: MIT
#include "queue_processor.hpp"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "sgq_device.hpp"
#include "vfio_user/device_access.hpp"
#include "vfioq/log.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq::model {

using sgq::Status;

namespace {

// Distance from `from` forward to `to` on a ring of n entries.
uint32_t ahead(uint32_t from, uint32_t to, uint32_t n) { return to >= from ? to - from : to + n - from; }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

}  // namespace

QueueProcessor::QueueProcessor(SgqDevice& device, const ModelConfig& config)
    : device_(device),
      config_(config),
      executor_(device),
      rng_(config.seed),
      faults_(config.faults),
      queues_(config.vector_count()),
      reader_(device.dma()) {}

QueueProcessor::~QueueProcessor() { stop(); }

void QueueProcessor::start() {
    seen_epoch_ = device_.epoch();
    // Named, so that top -H and perf tell the model's threads from the application's.
    for (uint32_t i = 0; i < config_.workers; ++i) {
        workers_.emplace_back([this] { worker(); });
        ::pthread_setname_np(workers_.back().native_handle(), "vfioq-model-job");
    }
    thread_ = std::thread([this] { run(); });
    ::pthread_setname_np(thread_.native_handle(), "vfioq-doorbell");
    if (config_.cpu >= 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(config_.cpu, &set);
        if (int err = ::pthread_setaffinity_np(thread_.native_handle(), sizeof(set), &set); err != 0)
            log::logger<log::kModel>().warn("model: cannot pin the doorbell thread to CPU {}: {}", config_.cpu,
                                            std::strerror(err));
    }
}

void QueueProcessor::stop() {
    stop_.store(true);
    kick();
    {
        std::lock_guard lock(jobs_mutex_);
        jobs_cv_.notify_all();
    }
    if (thread_.joinable()) thread_.join();
    for (auto& w : workers_)
        if (w.joinable()) w.join();
    workers_.clear();
}

void QueueProcessor::kick() {
    std::lock_guard lock(wake_mutex_);
    kicked_ = true;
    wake_cv_.notify_one();
}

uint32_t QueueProcessor::cq_free(const Queue& q) {
    return q.cq_entries - 1 - ahead(q.cq_head, q.cq_tail, q.cq_entries);
}

void QueueProcessor::run() {
    auto last_work = Clock::now();
    auto idle_seen = last_work;  // when the last pass that found nothing looked at the clock
    bool working = false;
    QueueThreadTime* time = config_.thread_time.get();
    if (time) time->start(last_work);
    while (!stop_.load(std::memory_order_relaxed)) {
        refresh_queues();
        if (device_.frozen()) {
            // Fatal status or removed: nothing is fetched or posted until a reset (if ever).
            idle_seen = idle(last_work);
            continue;
        }
        collect_finished();
        PassClock clock;
        bool work = false;
        {
            const DmaSpace::Section section(reader_);
            // A reset after refresh_queues() looked, before the section: its wait did not see this
            // pass, so the pass must see the reset (the next one starts on the queues afresh).
            if (device_.epoch() != seen_epoch_) continue;
            for (uint16_t qid = 0; qid < queues_.size(); ++qid) work |= service(qid, clock);
        }
        if (device_.shutdown_pending() &&
            std::all_of(queues_.begin(), queues_.end(), [](const Queue& q) { return q.unposted == 0; }))
            device_.finish_shutdown();
        if (work) {
            // An idle spell ended where the last pass that found nothing read the clock.
            if (!working && time) time->end_idle(idle_seen);
            working = true;
            continue;
        }
        // The first pass that finds nothing stands for the last one that did, a pass apart.
        if (working) {
            last_work = Clock::now();
            if (time) time->begin_idle(last_work);
        }
        working = false;
        idle_seen = idle(last_work);
    }
}

QueueProcessor::Clock::time_point QueueProcessor::idle(Clock::time_point last_work) {
    const auto now = Clock::now();
    const auto idle_for = now - last_work;
    if (idle_for < config_.idle_spin) {
        cpu_relax();
        return now;
    }
    // Sleep longer the longer the card has been idle: a doorbell written into the
    // shared page cannot wake us, so this is the latency of the first command after a pause.
    auto sleep = std::chrono::duration_cast<std::chrono::microseconds>(idle_for - config_.idle_spin) / 4;
    sleep = std::clamp<std::chrono::microseconds>(sleep, std::chrono::microseconds(10), config_.max_idle_sleep);
    std::unique_lock lock(wake_mutex_);
    wake_cv_.wait_for(lock, sleep, [this] { return kicked_ || stop_.load(); });
    kicked_ = false;
    return Clock::now();  // the sleep was idle too
}

void QueueProcessor::refresh_queues() {
    const uint64_t epoch = device_.epoch();
    if (epoch != seen_epoch_) {
        // A controller reset: every queue stops at once and nothing fetched is completed.
        seen_epoch_ = epoch;
        for (auto& q : queues_) q = Queue{};
    }
    const uint64_t changes = device_.change_count();
    if (changes == seen_changes_) return;
    seen_changes_ = changes;
    for (uint16_t qid = 0; qid < queues_.size(); ++qid) {
        Queue& q = queues_[qid];
        const auto cfg = device_.queue_config(qid);
        const bool enabled = cfg.status & sgq::kQStatusEnabled;
        if (!enabled) {
            q = Queue{};
            continue;
        }
        if (!q.active || cfg.generation != q.generation) {
            q = Queue{};
            q.active = true;
            q.generation = cfg.generation;
            q.sq_base = cfg.sq_base;
            q.cq_base = cfg.cq_base;
            q.sq_entries = cfg.sq_size + 1;
            q.cq_entries = cfg.cq_size + 1;
            // Never more in flight than the completion ring can take (fetch() sees to it).
            q.ready = ReadyRing<Finished>(q.cq_entries);
        }
        q.ctrl = cfg.ctrl;
        q.coal = cfg.coal;
    }
}

void QueueProcessor::collect_finished() {
    if (workers_.empty()) return;
    std::vector<Finished> done;
    {
        std::lock_guard lock(finished_mutex_);
        done.swap(finished_);
    }
    for (auto& f : done) {
        Queue& q = queues_[f.qid];
        if (!q.active || q.generation != f.generation) continue;  // the queue was reset meanwhile
        --q.executing;
        q.ready.push_back(f);
    }
}

void QueueProcessor::worker() {
    CommandExecutor executor(device_);
    DmaSpace::Reader reader(device_.dma());
    for (;;) {
        Job job;
        {
            std::unique_lock lock(jobs_mutex_);
            jobs_cv_.wait(lock, [this] { return !jobs_.empty() || stop_.load(); });
            if (stop_.load()) return;
            job = jobs_.front();
            jobs_.pop_front();
        }
        CommandOutcome out{Status::kAborted, 0};
        if (device_.epoch() == job.epoch) {
            const DmaSpace::Section section(reader);
            out = executor.execute(reader, job.qid, job.sqe, job.epoch);
        }
        {
            std::lock_guard lock(finished_mutex_);
            finished_.push_back({job.qid, job.generation, job.sqe.cid, out, job.due, true, job.epoch, {}});
        }
    }
}

void QueueProcessor::halt(uint16_t qid, Queue& q, uint32_t err_bit, uint16_t cid, const char* why) {
    q.halted = true;
    device_.halt_queue(qid, q.generation, err_bit, cid, why);
}

bool QueueProcessor::service(uint16_t qid, PassClock& clock) {
    Queue& q = queues_[qid];
    if (!q.active) return false;
    const bool disabling = !(q.ctrl & sgq::kQCtrlEnable);
    if (q.halted) {
        // A halted queue moves nothing more; disabling it clears the halt.
        if (disabling) {
            device_.finish_disable(qid, q.generation);
            q = Queue{};
        }
        return false;
    }
    bool work = false;
    const uint32_t head = device_.doorbell_value(sgq::cq_head_doorbell(qid, config_.dstrd));
    if (head != q.cq_head) {
        if (head >= q.cq_entries) {
            halt(qid, q, sgq::kErrDoorbell, 0, "CQ head doorbell is beyond the end of the ring");
            return true;
        }
        if (ahead(q.cq_head, head, q.cq_entries) > ahead(q.cq_head, q.cq_tail, q.cq_entries)) {
            halt(qid, q, sgq::kErrDoorbell, 0, "CQ head doorbell releases entries the device has not posted");
            return true;
        }
        q.cq_head = head;
        work = true;
    }
    if (!disabling) {
        const uint32_t tail = device_.doorbell_value(sgq::sq_tail_doorbell(qid, config_.dstrd));
        if (tail != q.sq_tail) {
            if (tail >= q.sq_entries) {
                halt(qid, q, sgq::kErrDoorbell, 0, "SQ tail doorbell is beyond the end of the ring");
                return true;
            }
            if (ahead(q.sq_head, tail, q.sq_entries) < ahead(q.sq_head, q.sq_tail, q.sq_entries)) {
                halt(qid, q, sgq::kErrDoorbell, 0, "SQ tail doorbell overruns entries not yet consumed");
                return true;
            }
            q.sq_tail = tail;
        }
        // A shutdown finishes what was fetched and fetches nothing more.
        if (!device_.shutdown_pending()) work |= fetch(qid, q, clock);
        if (q.halted) return true;
    }
    work |= post(qid, q, clock, disabling);
    if (q.halted) return true;
    const bool idle = q.sq_head == q.sq_tail && q.unposted == 0;
    interrupt(q, clock, idle || cq_free(q) == 0, disabling);
    if (disabling && q.executing == 0 && q.unposted == 0) {
        device_.finish_disable(qid, q.generation);
        q = Queue{};
        return true;
    }
    return work;
}

namespace {
// The CQ slots past the tail were reaped a lap ago unless the ring is nearly full, so the
// line two ahead (8 entries of 16 bytes) is in the host's cache only: ask for it, for writing,
// so that the entries written there do not wait for the host's core.
constexpr uint32_t kOwnAhead = 8;
void own_ahead(std::byte* ring, uint32_t tail, uint32_t entries) {
#if defined(__x86_64__)
    if (entries < 4 * kOwnAhead) return;  // a small ring: the line ahead is the one the host reads now
    uint32_t ahead = tail + kOwnAhead;
    if (ahead >= entries) ahead -= entries;
    asm volatile("prefetchw %0" ::"m"(*(ring + uint64_t{ahead} * sgq::kCqEntrySize)));
#endif
}
}  // namespace

bool QueueProcessor::fetch(uint16_t qid, Queue& q, PassClock& clock) {
    const uint64_t epoch = seen_epoch_;
    const uint64_t before = fetched_total_;
    if (q.sq_head == q.sq_tail) return false;
    // The ring found once for the pass; without it (a ring the client serves, a fault in it)
    // each entry is read through the DMA space, which reports what is wrong.
    const std::byte* ring = device_.local_ring(reader_, q.sq_base, uint64_t{q.sq_entries} * sgq::kSqEntrySize, false);
    auto read_entry = [&](uint64_t at, sgq::SubmissionEntry& sqe) {
        if (ring) {
            [[maybe_unused]] const DeviceAccessScope device_access;  // as DmaSpace's own copies
            std::memcpy(&sqe, ring + (at - q.sq_base), sizeof(sqe));
            return true;
        }
        return static_cast<bool>(device_.dma_read(reader_, qid, 0, at, std::as_writable_bytes(std::span(&sqe, 1))));
    };
    const auto due = config_.latency.count() == 0 ? kDueAtOnce : clock.now() + config_.latency;
    // Never fetch more than the CQ can take: the device must not drop a completion.
    while (q.sq_head != q.sq_tail && q.unposted < cq_free(q) && !q.ready.full()) {
        const uint64_t at = q.sq_base + uint64_t{q.sq_head} * sgq::kSqEntrySize;
        if (!workers_.empty()) {
            sgq::SubmissionEntry sqe;
            if (!read_entry(at, sqe)) {
                halt(qid, q, sgq::kErrQueueFetch, 0, "the submission ring could not be read");
                break;
            }
            ++q.executing;
            std::lock_guard lock(jobs_mutex_);
            jobs_.push_back({qid, q.generation, epoch, sqe, due});
            jobs_cv_.notify_one();
        } else {
            // Straight into the ready ring: no copy and no allocation per command.
            Finished& f = q.ready.emplace_back();
            if (!read_entry(at, f.sqe)) {
                q.ready.drop_back();
                halt(qid, q, sgq::kErrQueueFetch, 0, "the submission ring could not be read");
                break;
            }
            f.qid = qid;
            f.generation = q.generation;
            f.cid = f.sqe.cid;
            f.outcome = {};
            f.due = due;
            f.executed = false;
            f.epoch = epoch;
            f.faulted = false;
        }
        if (++q.sq_head == q.sq_entries) q.sq_head = 0;
        ++q.unposted;
        ++fetched_total_;
    }
    // One store per pass: the doorbell thread is the only writer.
    if (fetched_total_ != before) fetched_.store(fetched_total_, std::memory_order_release);
    return fetched_total_ != before || q.halted;
}

bool QueueProcessor::post(uint16_t qid, Queue& q, PassClock& clock, bool all) {
    bool work = false;
    if (q.ready.empty()) return false;
    // A CQ base that is not dword-aligned has its phase dwords written the general way.
    std::byte* ring = q.cq_base % 4 != 0
                          ? nullptr
                          : device_.local_ring(reader_, q.cq_base, uint64_t{q.cq_entries} * sgq::kCqEntrySize, true);
    while (!q.ready.empty()) {
        size_t pick = 0;
        if (config_.out_of_order && q.ready.size() > 1) pick = rng_() % q.ready.size();
        if (!all && later(q.ready[pick].due, clock)) {
            // Completions become due in fetch order; the front is the earliest.
            if (!config_.out_of_order || later(q.ready.front().due, clock)) break;
            pick = 0;
        }
        Finished f = q.ready[pick];
        q.ready.erase(pick);
        if (!f.executed) {
            f.outcome = later(f.due, clock) ? CommandOutcome{Status::kAborted, 0}
                                            : executor_.execute(reader_, qid, f.sqe, f.epoch);
            f.executed = true;
        }
        // A reset while the command ran (its DMA went through the client, outside the section, or
        // it ran on a worker): nothing fetched before it is completed, this or the rest.
        if (device_.epoch() != f.epoch) [[unlikely]]
            return true;
        const FaultKind fault = f.faulted ? FaultKind::kNone : faults_.next();
        f.faulted = true;
        if (fault == FaultKind::kLate && !all) {
            f.due = clock.now() + std::chrono::microseconds(config_.faults.late_by_us);
            q.ready.push_back(f);
            work = true;
            continue;
        }
        if (fault == FaultKind::kFatal || fault == FaultKind::kHang || fault == FaultKind::kAllOnes ||
            fault == FaultKind::kDisconnect) {
            // The card fails instead of posting this completion; a reset (if any) clears the queue.
            if (fault == FaultKind::kFatal) device_.inject_fatal_error();
            else if (fault == FaultKind::kHang) device_.hang();
            else device_.remove(fault == FaultKind::kDisconnect);
            q.ready.push_front(f);
            return true;
        }
        if (fault == FaultKind::kDrop) {
            --q.unposted;
            work = true;
            continue;
        }
        if (fault == FaultKind::kErrorStatus) f.outcome = {static_cast<Status>(config_.faults.status), 0};
        // 0xFFFF is no CID a host can issue (at most 65535 commands outstanding: 0 .. 65534).
        const uint16_t cid = fault == FaultKind::kWrongCid ? uint16_t{0xFFFF} : f.cid;
        const bool phase = fault == FaultKind::kStalePhase ? !q.phase : q.phase;
        if (!write_completion(qid, q, ring, cid, f.outcome, phase)) return true;
        if (fault == FaultKind::kDuplicate && cq_free(q) > q.unposted - 1)
            if (!write_completion(qid, q, ring, cid, f.outcome, q.phase)) return true;
        --q.unposted;
        device_.count_completion(f.outcome.status == Status::kSuccess ? f.outcome.bytes : 0);
        // The first pending completion's time matters only to timed coalescing.
        if (q.irq_pending++ == 0 && (q.coal >> 16) != 0) q.irq_first = clock.now();
        work = true;
    }
    return work;
}

bool QueueProcessor::write_completion(uint16_t qid, Queue& q, std::byte* ring, uint16_t cid,
                                      const CommandOutcome& outcome, bool phase) {
    // The entry's last dword carries the phase and is written last, with release
    // semantics, so the host never sees the tag before the rest of the entry.
    const uint64_t at = q.cq_base + uint64_t{q.cq_tail} * sgq::kCqEntrySize;
    const uint32_t last = uint32_t{cid} | uint32_t(static_cast<uint16_t>(outcome.status) << 1 | (phase ? 1u : 0u)) << 16;
    if (ring) {
        // The first 12 bytes as two words from registers: an entry built on the stack and
        // copied would be read back with a load wider than its stores, which cannot be
        // forwarded (a third of this function's time, before).
        [[maybe_unused]] const DeviceAccessScope device_access;
        std::byte* entry = ring + (at - q.cq_base);
        own_ahead(ring, q.cq_tail, q.cq_entries);
        const uint64_t result_reserved = outcome.bytes;
        const uint32_t sqhd_sqid = q.sq_head | uint32_t{qid} << 16;
        std::memcpy(entry, &result_reserved, sizeof(result_reserved));
        std::memcpy(entry + 8, &sqhd_sqid, sizeof(sqhd_sqid));
        std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(entry + 12)).store(last, std::memory_order_release);
    } else {
        sgq::CompletionEntry cqe{};
        cqe.result = outcome.bytes;
        cqe.sqhd = static_cast<uint16_t>(q.sq_head);
        cqe.sqid = qid;
        const bool ok = device_.dma_write(reader_, qid, cid, at, std::as_bytes(std::span(&cqe, 1)).first(12)) &&
                        device_.publish32(reader_, qid, cid, at + 12, last);
        if (!ok) {
            halt(qid, q, sgq::kErrQueueFetch, cid, "the completion ring could not be written");
            return false;
        }
    }
    if (++q.cq_tail == q.cq_entries) {
        q.cq_tail = 0;
        q.phase = !q.phase;
    }
    return true;
}

void QueueProcessor::interrupt(Queue& q, PassClock& clock, bool quiet, bool force) {
    if (q.irq_pending == 0) return;
    // Q_COAL: raise once `threshold` entries are pending, or `time` after the first
    // of them, or (time 0) when the queue goes quiet: no completion is left unsignalled.
    const uint32_t threshold = q.coal & 0xFFFF;
    const auto time = std::chrono::microseconds(q.coal >> 16);
    bool fire = force || threshold == 0 || q.irq_pending >= threshold;
    if (!fire) fire = time.count() > 0 ? clock.now() - q.irq_first >= time : quiet;
    if (!fire) return;
    q.irq_pending = 0;
    if (q.ctrl & sgq::kQCtrlIen) device_.msix().raise(q.ctrl >> sgq::kQCtrlVectorShift);
}

}  // namespace vfioq::model
