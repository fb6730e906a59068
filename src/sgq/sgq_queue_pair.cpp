// SPDX-License-Identifier: MIT
#include "sgq_queue_pair.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "sgq_controller.hpp"
#include "vfioq/log.hpp"
#include "vfioq/sgq_commands.hpp"

namespace vfioq::sgq {

SgqQueuePair::SgqQueuePair(SgqController& controller, QueuePairResources resources, const dma::SglLimits& limits,
                           uint64_t devmem_size, DmaContext& dma)
    : controller_(&controller),
      name_(controller.name()),
      res_(std::move(resources)),
      limits_(limits),
      devmem_size_(devmem_size),
      dma_(dma),
      engine_(engine::RingConfig{res_.qid, res_.sq.data(), res_.sq_entries, res_.cq.data(), res_.cq_entries,
                                 res_.depth, res_.sq_doorbell, res_.cq_doorbell}),
      pool_(res_.sgl_pages.data(), res_.sgl_pages.iova(), res_.sgl_page_count),
      trackers_(res_.depth, Tracker{nullptr, nullptr, -1}),
      scratch_(limits.max_sge) {
    if (res_.event_fd && ::io_uring_queue_init(4, &ring_, 0) == 0) ring_ready_ = true;
}

SgqQueuePair::~SgqQueuePair() {
    if (auto r = close(); !r) log::get(log::kDevice)->error("{}", r.error().message);
    if (ring_ready_) ::io_uring_queue_exit(&ring_);
}

Error SgqQueuePair::refused(int code, const std::string& why) const {
    return make_error(code, fmt::format("{}: queue pair {}: {}", name_, res_.qid, why));
}

Result<uint16_t> SgqQueuePair::enqueue(const IoRequest& req) {
    if (closed_) return refused(EPIPE, "submission after close");
    if (!engine_.can_submit()) {
        ++queue_full_;
        return refused(EAGAIN, fmt::format("full ({} commands outstanding); poll and submit again",
                                           engine_.outstanding()));
    }
    SubmissionEntry sqe{};
    sqe.devaddr = req.devaddr;
    dma::SglResult sgl;
    switch (req.op) {
        case Opcode::kNop:
            if (!req.segments.empty()) return refused(EINVAL, "a NOP carries no segments");
            sqe.opcode = kOpNop;
            break;
        case Opcode::kWrite:
        case Opcode::kRead: {
            sqe.opcode = req.op == Opcode::kWrite ? kOpWrite : kOpRead;
            sgl = dma::build_sgl(req.segments, limits_, pool_, sqe.dptr1, sqe.dptr2);
            if (sgl.error == dma::SglError::kNoPages) {
                ++queue_full_;
                return refused(EAGAIN, dma::describe(sgl, req.segments, limits_));
            }
            if (sgl.error != dma::SglError::kNone)
                return refused(EINVAL, fmt::format("{} at card address {:#x}: {}",
                                                   req.op == Opcode::kWrite ? "write" : "read", req.devaddr,
                                                   dma::describe(sgl, req.segments, limits_)));
            if (req.devaddr > devmem_size_ || sgl.total > devmem_size_ - req.devaddr) {
                pool_.give_chain(sgl.first_page);
                return refused(EINVAL, fmt::format("card address range [{:#x}, {:#x}) is beyond the card's {:#x} "
                                                   "bytes of memory",
                                                   req.devaddr, req.devaddr + sgl.total, devmem_size_));
            }
            sqe.length = static_cast<uint32_t>(sgl.total);
            break;
        }
        default: return refused(EINVAL, "unknown opcode");
    }
    const int32_t cid = engine_.acquire_cid();  // can_submit() said one is free
    sqe.cid = static_cast<uint16_t>(cid);
    trackers_[static_cast<uint32_t>(cid)] = Tracker{req.callback, req.context, sgl.first_page};
    std::memcpy(engine_.sq_slot(), &sqe, sizeof(sqe));
    engine_.push();
    return sqe.cid;
}

Result<uint16_t> SgqQueuePair::submit(const IoRequest& request) {
    auto r = enqueue(request);
    engine_.ring_sq();
    return r;
}

Result<uint16_t> SgqQueuePair::submit_host(Opcode op, uint64_t devaddr, std::span<const HostSegment> segments,
                                           CompletionCallback callback, void* context) {
    if (segments.size() > scratch_.size())
        return refused(EINVAL, fmt::format("{} segments given; a command carries at most {} (CAP.MAX_SGE)",
                                           segments.size(), scratch_.size()));
    for (size_t i = 0; i < segments.size(); ++i) {
        auto iova = dma_.translate(segments[i].addr, segments[i].len);
        if (!iova) return refused(iova.error().code, fmt::format("segment {}: {}", i, iova.error().message));
        scratch_[i] = DmaSegment{*iova, segments[i].len};
    }
    return submit(IoRequest{op, devaddr, std::span(scratch_).first(segments.size()), callback, context});
}

Result<uint16_t> SgqQueuePair::submit_raw(std::span<const std::byte> entry, CompletionCallback callback,
                                          void* context) {
    if (closed_) return refused(EPIPE, "submission after close");
    if (entry.size() != sizeof(SubmissionEntry))
        return refused(EINVAL, fmt::format("a raw submission entry is {} bytes, not {}", sizeof(SubmissionEntry),
                                           entry.size()));
    if (!engine_.can_submit()) {
        ++queue_full_;
        return refused(EAGAIN, "full; poll and submit again");
    }
    SubmissionEntry sqe;
    std::memcpy(&sqe, entry.data(), sizeof(sqe));
    const int32_t cid = engine_.acquire_cid();
    sqe.cid = static_cast<uint16_t>(cid);
    trackers_[static_cast<uint32_t>(cid)] = Tracker{callback, context, -1};
    std::memcpy(engine_.sq_slot(), &sqe, sizeof(sqe));
    engine_.push();
    engine_.ring_sq();
    return sqe.cid;
}

Result<uint32_t> SgqQueuePair::submit_batch(std::span<const IoRequest> requests) {
    uint32_t n = 0;
    for (const auto& req : requests) {
        auto r = enqueue(req);
        if (!r) {
            engine_.ring_sq();
            if (n == 0 && r.error().code != EAGAIN) return r.error();
            return n;
        }
        ++n;
    }
    engine_.ring_sq();
    return n;
}

void SgqQueuePair::complete(uint16_t cid, const engine::CqEntry& e) {
    const Tracker t = trackers_[cid];
    pool_.give_chain(t.sgl_page);
    const uint16_t raw = e.status();
    const IoStatus status = raw <= static_cast<uint16_t>(Status::kInternal) ? static_cast<IoStatus>(raw)
                                                                             : IoStatus::kUnknownDeviceStatus;
    if (t.callback) t.callback(Completion{status, raw, res_.qid, cid, e.dw0, t.context});
}

void SgqQueuePair::cancel(uint16_t cid) {
    const Tracker t = trackers_[cid];
    pool_.give_chain(t.sgl_page);
    if (t.callback) t.callback(Completion{IoStatus::kCancelled, 0, res_.qid, cid, 0, t.context});
}

uint32_t SgqQueuePair::poll(uint32_t max) {
    if (closed_ && engine_.outstanding() == 0) return 0;
    return engine_.poll(max ? max : res_.poll_batch,
                        [this](uint16_t cid, const engine::CqEntry& e) { complete(cid, e); });
}

Result<uint32_t> SgqQueuePair::wait(std::chrono::milliseconds timeout, uint32_t max) {
    if (!res_.event_fd) return refused(ENOTSUP, "wait() needs interrupt mode (QueuePairOptions::interrupts)");
    if (!ring_ready_) return refused(ENOSYS, "io_uring is not available to wait on the interrupt eventfd");
    if (uint32_t n = poll(max)) return n;
    if (!read_armed_) {
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        ::io_uring_prep_read(sqe, res_.event_fd.get(), &event_count_, sizeof(event_count_), 0);
        if (int rc = ::io_uring_submit(&ring_); rc < 0)
            return refused(-rc, fmt::format("io_uring submit failed: {}", std::strerror(-rc)));
        read_armed_ = true;
    }
    // Completions that came between the poll above and the read being armed
    // left the eventfd counter above zero, so the read completes at once.
    __kernel_timespec ts{};
    ts.tv_sec = timeout.count() / 1000;
    ts.tv_nsec = (timeout.count() % 1000) * 1000000;
    io_uring_cqe* cqe = nullptr;
    const int rc = ::io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    if (rc == -ETIME) return poll(max);
    if (rc < 0) return refused(-rc, fmt::format("waiting for the interrupt failed: {}", std::strerror(-rc)));
    const int res = cqe->res;
    ::io_uring_cqe_seen(&ring_, cqe);
    read_armed_ = false;
    if (res < 0 && res != -EAGAIN)
        return refused(-res, fmt::format("reading the interrupt eventfd failed: {}", std::strerror(-res)));
    if (res > 0) ++interrupts_;
    return poll(max);
}

Result<void> SgqQueuePair::close() {
    if (closed_) return {};
    closed_ = true;
    Result<void> result;
    if (controller_) {
        // The card completes what it fetched (normally or ABORTED) before it clears ENABLED.
        result = controller_->disable_queue(res_.qid, [this] { poll(0); });
    }
    while (engine_.outstanding() != 0 && poll(0) != 0) {
    }
    if (engine_.outstanding() != 0)
        log::get(log::kDevice)->warn("{}: queue pair {}: {} commands were never completed by the device; "
                                     "reported as CANCELLED",
                                     name_, res_.qid, engine_.outstanding());
    engine_.reclaim_all([this](uint16_t cid) { cancel(cid); });
    if (controller_) controller_->release_queue(res_.qid, this);
    controller_ = nullptr;
    // The card no longer touches the rings: unmap them now rather than at destruction.
    res_.sq = DmaBuffer{};
    res_.cq = DmaBuffer{};
    res_.sgl_pages = DmaBuffer{};
    return result;
}

QueuePairStats SgqQueuePair::stats() const {
    const auto& c = engine_.counters();
    QueuePairStats s;
    s.submitted = c.submitted;
    s.completed = c.completed;
    s.sq_doorbells = c.sq_doorbells;
    s.cq_doorbells = c.cq_doorbells;
    s.queue_full = queue_full_;
    s.device_errors = c.device_errors();
    s.interrupts = interrupts_;
    s.memory_bytes = res_.sq.size() + res_.cq.size() + res_.sgl_pages.size() + trackers_.size() * sizeof(Tracker) +
                     scratch_.size() * sizeof(DmaSegment) + res_.depth * 3u /* CID pool */;
    return s;
}

}  // namespace vfioq::sgq
