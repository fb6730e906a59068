// SPDX-License-Identifier: MIT
#include "engine_queue_pair.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "vfioq/log.hpp"

namespace vfioq::io {

EngineQueuePair::EngineQueuePair(QueueOwner& owner, std::unique_ptr<CommandCodec> codec, QueuePairResources resources,
                                 uint32_t max_segments, DmaContext& dma)
    : owner_(&owner),
      codec_(std::move(codec)),
      name_(owner.name()),
      res_(std::move(resources)),
      dma_(dma),
      engine_(engine::RingConfig{res_.qid, res_.sq.data(), res_.sq_entries, res_.cq.data(), res_.cq_entries,
                                 res_.depth, res_.sq_doorbell, res_.cq_doorbell}),
      pool_(res_.sgl_pages.data(), res_.sgl_pages.iova(), res_.sgl_page_count, dma.bus_map()),
      trackers_(res_.depth, Tracker{nullptr, nullptr, -1, 0}),
      scratch_(max_segments) {
    if (res_.event_fd && ::io_uring_queue_init(4, &ring_, 0) == 0) ring_ready_ = true;
}

EngineQueuePair::~EngineQueuePair() {
    if (auto r = close(); !r) log::get(log::kDevice)->error("{}", r.error().message);
    if (ring_ready_) ::io_uring_queue_exit(&ring_);
}

Error EngineQueuePair::refused(int code, const std::string& why) const {
    return make_error(code, fmt::format("{}: queue pair {}: {}", name_, res_.qid, why));
}

Result<uint16_t> EngineQueuePair::enqueue(const IoRequest& req) {
    if (closed_) return refused(EPIPE, "submission after close");
    if (!engine_.can_submit()) {
        ++queue_full_;
        return refused(EAGAIN, fmt::format("full ({} commands outstanding); poll and submit again",
                                           engine_.outstanding()));
    }
    alignas(8) std::byte sqe[engine::kSqEntrySize] = {};
    auto page = codec_->encode(req, sqe, pool_);
    if (!page) {
        if (page.error().code == EAGAIN) ++queue_full_;
        return refused(page.error().code, page.error().message);
    }
    const int32_t cid = engine_.acquire_cid();  // can_submit() said one is free
    const auto cid16 = static_cast<uint16_t>(cid);
    std::memcpy(sqe + 2, &cid16, sizeof(cid16));
    trackers_[static_cast<uint32_t>(cid)] = Tracker{req.callback, req.context, *page, codec_->length(sqe)};
    std::memcpy(engine_.sq_slot(), sqe, sizeof(sqe));
    engine_.push();
    return cid16;
}

Result<uint16_t> EngineQueuePair::submit(const IoRequest& request) {
    auto r = enqueue(request);
    engine_.ring_sq();
    return r;
}

Result<uint16_t> EngineQueuePair::submit_host(Opcode op, uint64_t devaddr, std::span<const HostSegment> segments,
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

Result<uint16_t> EngineQueuePair::submit_raw(std::span<const std::byte> entry, CompletionCallback callback,
                                          void* context) {
    if (closed_) return refused(EPIPE, "submission after close");
    if (entry.size() != engine::kSqEntrySize)
        return refused(EINVAL, fmt::format("a raw submission entry is {} bytes, not {}", engine::kSqEntrySize,
                                           entry.size()));
    if (!engine_.can_submit()) {
        ++queue_full_;
        return refused(EAGAIN, "full; poll and submit again");
    }
    alignas(8) std::byte sqe[engine::kSqEntrySize];
    std::memcpy(sqe, entry.data(), sizeof(sqe));
    const auto cid = static_cast<uint16_t>(engine_.acquire_cid());
    std::memcpy(sqe + 2, &cid, sizeof(cid));
    trackers_[cid] = Tracker{callback, context, -1, codec_->length(sqe)};
    std::memcpy(engine_.sq_slot(), sqe, sizeof(sqe));
    engine_.push();
    engine_.ring_sq();
    return cid;
}

Result<uint32_t> EngineQueuePair::submit_batch(std::span<const IoRequest> requests) {
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

void EngineQueuePair::complete(uint16_t cid, const engine::CqEntry& e) {
    const Tracker t = trackers_[cid];
    pool_.give_chain(t.sgl_page);
    const uint16_t raw = e.status();
    const IoStatus status = codec_->decode(raw);
    if (t.callback)
        t.callback(Completion{status, raw, res_.qid, cid, codec_->bytes(e.dw0, status, t.length), t.context});
}

void EngineQueuePair::cancel(uint16_t cid) {
    const Tracker t = trackers_[cid];
    pool_.give_chain(t.sgl_page);
    if (t.callback) t.callback(Completion{IoStatus::kCancelled, 0, res_.qid, cid, 0, t.context});
}

uint32_t EngineQueuePair::poll(uint32_t max) {
    if (closed_ && engine_.outstanding() == 0) return 0;
    return engine_.poll(max ? max : res_.poll_batch,
                        [this](uint16_t cid, const engine::CqEntry& e) { complete(cid, e); });
}

Result<uint32_t> EngineQueuePair::wait(std::chrono::milliseconds timeout, uint32_t max) {
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

Result<void> EngineQueuePair::close() {
    if (closed_) return {};
    closed_ = true;
    Result<void> result;
    if (owner_) {
        // The device completes what it fetched (normally or aborted) while it takes the queue down.
        result = owner_->disable_queue(res_.qid, [this] { poll(0); });
    }
    while (engine_.outstanding() != 0 && poll(0) != 0) {
    }
    if (engine_.outstanding() != 0)
        log::get(log::kDevice)->warn("{}: queue pair {}: {} commands were never completed by the device; "
                                     "reported as CANCELLED",
                                     name_, res_.qid, engine_.outstanding());
    engine_.reclaim_all([this](uint16_t cid) { cancel(cid); });
    if (owner_) owner_->release_queue(res_.qid, this);
    owner_ = nullptr;
    // The card no longer touches the rings: unmap them now rather than at destruction.
    res_.sq = DmaBuffer{};
    res_.cq = DmaBuffer{};
    res_.sgl_pages = DmaBuffer{};
    return result;
}

QueuePairStats EngineQueuePair::stats() const {
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

}  // namespace vfioq::io
