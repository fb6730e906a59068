// SPDX-License-Identifier: MIT
#include "engine_queue_pair.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
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
      engine_(engine::RingConfig{res_.qid, res_.sq.data(), res_.sq_entries, res_.cq.data(), res_.cq_entries, res_.depth,
                                 res_.sq_doorbell, res_.cq_doorbell}),
      pool_(res_.sgl_pages.data(), res_.sgl_pages.iova(), res_.sgl_page_count, dma.bus_map()),
      trackers_(res_.depth, Tracker{nullptr, nullptr, -1, 0, 0, kNil, kNil, 0}),
      scratch_(max_segments),
      bytes_in_dw0_(codec_->bytes_in_dw0()),
      timeout_ns_(res_.command_timeout.count()),
      owner_health_(&owner.health()),
      seen_resets_(owner.health().resets.load()),
      interrupt_(res_.event_fd.get()) {
    clock_ns_ = now_ns();
}

EngineQueuePair::~EngineQueuePair() {
    if (auto r = close(); !r) log::logger<log::kQueue>().error("{}", r.error().message);
}

int64_t EngineQueuePair::now_ns() const {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

Error EngineQueuePair::refused(int code, const std::string& why) const {
    return make_error(code, fmt::format("{}: queue pair {}: {}", name_, res_.qid, why));
}

namespace {
// Back-pressure: static reasons, so that a refused submission formats and allocates nothing.
constexpr const char* kFullReason = "the queue pair is full; poll and submit again";
constexpr const char* kRecoveringReason = "the queue pair is recovering from a timeout; poll and submit again";
}  // namespace

Result<void> EngineQueuePair::may_submit() {
    if (health_changed()) [[unlikely]]
        on_health_change();
    switch (state_) {
        case State::kOpen: return {};
        case State::kRecovering: return static_error(EAGAIN, kRecoveringReason);
        case State::kBroken: return refused(EIO, "out of service after a failed recovery: " + broken_why_);
        case State::kGone: return refused(ENODEV, "the device is gone");
        case State::kClosed: return refused(EPIPE, "submission after close");
    }
    return {};
}

void EngineQueuePair::track(uint16_t cid, CompletionCallback callback, void* context, int32_t sgl_page,
                            uint32_t length) {
    // Field by field: a Tracker built on the caller's stack and copied here would be read
    // back with wide loads over its narrow stores, which the CPU cannot forward and stalls on.
    const auto tag = static_cast<uint16_t>(engine_.tag_of(cid));
    Tracker& n = trackers_[tag];
    n.callback = callback;
    n.context = context;
    n.sgl_page = sgl_page;
    n.length = length;
    // stamp_submissions() at the end of the call stamps the first of the commands it queued;
    // the others carry the stamp of the one before them.
    if (unstamped_ == kNil) {
        n.submitted_ns = kUnstamped;
        unstamped_ = tag;
    } else {
        n.submitted_ns = kAsBefore;
    }
    n.prev = newest_;
    n.next = kNil;
    n.cid = cid;
    if (newest_ != kNil) trackers_[newest_].next = tag;
    else oldest_ = tag;
    newest_ = tag;
}

void EngineQueuePair::untrack(uint16_t tag) {
    Tracker& t = trackers_[tag];
    if (t.prev != kNil) trackers_[t.prev].next = t.next;
    else oldest_ = t.next;
    if (t.next != kNil) {
        Tracker& next = trackers_[t.next];
        next.prev = t.prev;
        // The stamp the next one carried by reference stays with it.
        if (next.submitted_ns == kAsBefore && t.submitted_ns != kAsBefore) next.submitted_ns = t.submitted_ns;
    } else {
        newest_ = t.prev;
    }
    if (tag == unstamped_) unstamped_ = t.next;
    if (t.sgl_page >= 0) pool_.give_chain(t.sgl_page);
    t.sgl_page = -1;
}

void EngineQueuePair::resolve_stamps() {
    int64_t stamp = kUnstamped;
    for (uint16_t t = oldest_; t != kNil; t = trackers_[t].next) {
        if (trackers_[t].submitted_ns == kAsBefore)
            trackers_[t].submitted_ns = stamp;
        else
            stamp = trackers_[t].submitted_ns;
    }
}

Result<uint16_t> EngineQueuePair::enqueue(const IoRequest& req) {
    if (!open_and_healthy()) [[unlikely]]
        if (auto ok = may_submit(); !ok) return ok.error();
    return enqueue_unchecked(req);
}

Result<uint16_t> EngineQueuePair::enqueue_unchecked(const IoRequest& req) {
    if (!engine_.can_submit()) {
        ++queue_full_;
        return static_error(EAGAIN, kFullReason);
    }
    // Encoded in place: the slot at the tail is the host's until push() moves the tail past it.
    auto* sqe = static_cast<std::byte*>(engine_.sq_slot());
    std::memset(sqe, 0, engine::kSqEntrySize);
    auto page = codec_->encode(req, sqe, pool_);
    if (!page) [[unlikely]] {
        if (page.error().code == EAGAIN) {
            ++queue_full_;
            return std::move(page).error();
        }
        return refused(page.error().code, page.error().text());
    }
    const int32_t cid = engine_.acquire_cid();  // can_submit() said one is free
    const auto cid16 = static_cast<uint16_t>(cid);
    std::memcpy(sqe + 2, &cid16, sizeof(cid16));
    uint64_t length = 0;  // the encoder checked it against the device's limits
    for (const auto& seg : req.segments) length += seg.len;
    track(cid16, req.callback, req.context, *page, static_cast<uint32_t>(length));
    engine_.push();
    return cid16;
}

void EngineQueuePair::stamp_submissions() {
    if (unstamped_ == kNil) return;
    if (timeout_ns_ != 0) {
        clock_ns_ = now_ns();
        polls_since_clock_ = 0;
        trackers_[unstamped_].submitted_ns = clock_ns_;
    }
    unstamped_ = kNil;
}

Result<uint16_t> EngineQueuePair::submit(const IoRequest& request) {
    auto r = enqueue(request);
    engine_.ring_sq();
    stamp_submissions();
    return r;
}

Result<uint16_t> EngineQueuePair::submit_host(Opcode op, uint64_t devaddr, std::span<const HostSegment> segments,
                                           CompletionCallback callback, void* context) {
    // A READ has the card write host memory.
    const auto access = op == Opcode::kRead ? DeviceAccess::kWrites : DeviceAccess::kReads;
    // Neighbours that are neighbours to the device too are merged before CAP.MAX_SGE is applied, as submit() does.
    size_t merged = 0;
    DmaSegment last{};
    for (size_t i = 0; i < segments.size(); ++i) {
        auto iova = dma_.translate(segments[i].addr, segments[i].len, access);
        if (!iova) return refused(iova.error().code, fmt::format("segment {}: {}", i, iova.error().message));
        if (merged != 0 && last.iova + last.len == *iova && last.len + segments[i].len <= UINT32_MAX) {
            last.len += segments[i].len;
        } else {
            last = DmaSegment{*iova, segments[i].len};
            ++merged;
        }
        if (merged <= scratch_.size()) scratch_[merged - 1] = last;
    }
    if (merged > scratch_.size())
        return refused(EINVAL, fmt::format("{} segments given, {} once neighbours are merged; a command carries at "
                                           "most {} (CAP.MAX_SGE)",
                                           segments.size(), merged, scratch_.size()));
    return submit(IoRequest{op, devaddr, std::span(scratch_).first(merged), callback, context});
}

Result<uint16_t> EngineQueuePair::submit_raw(std::span<const std::byte> entry, CompletionCallback callback,
                                          void* context) {
    if (auto ok = may_submit(); !ok) return ok.error();
    if (entry.size() != engine::kSqEntrySize)
        return refused(EINVAL, fmt::format("a raw submission entry is {} bytes, not {}", engine::kSqEntrySize,
                                           entry.size()));
    if (!engine_.can_submit()) {
        ++queue_full_;
        return static_error(EAGAIN, kFullReason);
    }
    alignas(8) std::byte sqe[engine::kSqEntrySize];
    std::memcpy(sqe, entry.data(), sizeof(sqe));
    const auto cid = static_cast<uint16_t>(engine_.acquire_cid());
    std::memcpy(sqe + 2, &cid, sizeof(cid));
    track(cid, callback, context, -1, codec_->length(sqe));
    std::memcpy(engine_.sq_slot(), sqe, sizeof(sqe));
    engine_.push();
    engine_.ring_sq();
    stamp_submissions();
    return cid;
}

Result<uint32_t> EngineQueuePair::submit_batch(std::span<const IoRequest> requests) {
    // Health and state once for the batch: nothing in it runs a callback or changes them.
    if (requests.empty()) return 0u;
    if (!open_and_healthy()) [[unlikely]]
        if (auto ok = may_submit(); !ok) return ok.error().code == EAGAIN ? Result<uint32_t>(0u) : ok.error();
    uint32_t n = 0;
    for (const auto& req : requests) {
        auto r = enqueue_unchecked(req);
        if (!r) {
            engine_.ring_sq();
            stamp_submissions();
            if (n == 0 && r.error().code != EAGAIN) return r.error();
            return n;
        }
        ++n;
    }
    engine_.ring_sq();
    stamp_submissions();
    return n;
}

void EngineQueuePair::complete(uint16_t tag, const engine::CqEntry& e) {
    untrack(tag);
    const Tracker& t = trackers_[tag];
    const uint16_t raw = e.status();
    IoStatus status = IoStatus::kSuccess;
    uint32_t bytes = bytes_in_dw0_ ? e.dw0 : t.length;
    if (raw != 0) [[unlikely]] {
        ++error_statuses_;
        status = codec_->decode(raw);
        bytes = codec_->bytes(e.dw0, status, t.length);
    }
    if (t.callback) t.callback(Completion{status, raw, res_.qid, e.cid, bytes, t.context});
}

void EngineQueuePair::report(uint16_t tag, IoStatus status) {
    untrack(tag);
    const Tracker& t = trackers_[tag];
    if (status == IoStatus::kTimeout) ++timeouts_;
    if (t.callback) t.callback(Completion{status, 0, res_.qid, t.cid, 0, t.context});
}

uint32_t EngineQueuePair::reap(uint32_t max) {
    return engine_.poll(max ? max : res_.poll_batch,
                        [this](uint16_t tag, const engine::CqEntry& e) { complete(tag, e); });
}

uint32_t EngineQueuePair::reap_all() {
    uint32_t n = 0;
    while (engine_.outstanding() != 0) {
        const uint32_t got = reap(0);
        if (got == 0) break;
        n += got;
    }
    return n;
}

uint32_t EngineQueuePair::poll(uint32_t max) {
    uint32_t reported = 0;
    if (health_changed()) [[unlikely]]
        reported += on_health_change();
    if (state_ != State::kOpen) return reported;
    const uint32_t n = reap(max);
    // The clock is read once per kClockEvery polls, empty or not: an empty poll is the
    // phase-tag load and compare above and this count.
    if (timeout_ns_ != 0 && oldest_ != kNil && ++polls_since_clock_ >= kClockEvery) [[unlikely]]
        reported += check_timeouts();
    return reported + n;
}

Result<uint32_t> EngineQueuePair::wait(std::chrono::milliseconds timeout, uint32_t max) {
    if (!interrupt_.has_eventfd())
        return refused(ENOTSUP, "wait() needs interrupt mode (QueuePairOptions::interrupts)");
    if (!interrupt_.available()) return refused(ENOSYS, "io_uring is not available to wait on the interrupt eventfd");
    if (uint32_t n = poll(max)) return n;
    if (state_ == State::kGone) return refused(ENODEV, "the device is gone");
    // Completions that came between the poll above and the wait left the
    // eventfd counter above zero, so the wait ends at once. The wait is cut
    // into slices so that a command's timeout, a reset or a device that went
    // away is seen while waiting, not only at the end.
    using namespace std::chrono;
    const auto deadline = steady_clock::now() + timeout;
    for (;;) {
        auto slice = duration_cast<nanoseconds>(deadline - steady_clock::now());
        slice = std::clamp<nanoseconds>(slice, nanoseconds(0), milliseconds(100));
        auto woke = interrupt_.wait(slice);
        if (!woke) return refused(woke.error().code, woke.error().message);
        if (*woke == InterruptWait::Outcome::kInterrupt) return poll(max);
        polls_since_clock_ = kClockEvery;  // a slice that timed out reads the clock
        if (uint32_t n = poll(max); n != 0 || steady_clock::now() >= deadline || state_ == State::kGone) return n;
    }
}

Result<void> EngineQueuePair::close() {
    if (state_ == State::kClosed) return {};
    if (health_changed()) on_health_change();
    const bool gone = state_ == State::kGone;
    state_ = State::kClosed;
    Result<void> result;
    if (owner_ && !gone) {
        // The device completes what it fetched (normally or aborted) while it takes the queue down.
        result = owner_->disable_queue(res_.qid, [this] { reap(0); });
    }
    reap_all();
    if (device_gone_now()) {
        fail_gone();
        state_ = State::kClosed;
        result = {};  // nothing to take down
    }
    if (engine_.outstanding() != 0)
        log::logger<log::kQueue>().warn(
            "{}: queue pair {}: {} commands were never completed by the device; "
            "reported as CANCELLED",
            name_, res_.qid, engine_.outstanding());
    engine_.reclaim_all([this](uint16_t tag) { report(tag, IoStatus::kCancelled); });
    if (owner_) owner_->release_queue(res_.qid, this);
    owner_ = nullptr;
    owner_health_ = nullptr;
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
    s.doorbell_writes_skipped = c.doorbell_writes_skipped;
    s.queue_full = queue_full_;
    s.device_errors = c.device_errors();
    s.cid_out_of_range = c.cid_out_of_range;
    s.cid_not_outstanding = c.cid_not_outstanding;
    s.wrong_sqid = c.wrong_sqid;
    s.sq_head_invalid = c.sq_head_invalid;
    s.error_statuses = error_statuses_;
    s.timeouts = timeouts_;
    s.queue_recoveries = queue_recoveries_;
    s.controller_resets = controller_resets_;
    s.interrupts = interrupt_.interrupts();
    s.memory_bytes = res_.sq.size() + res_.cq.size() + res_.sgl_pages.size() + trackers_.size() * sizeof(Tracker) +
                     scratch_.size() * sizeof(DmaSegment) + res_.depth * 6u /* CID pool */;
    return s;
}

std::vector<BadCompletionRecord> EngineQueuePair::bad_completions() const {
    std::vector<BadCompletionRecord> out;
    const auto& history = engine_.bad_history();
    for (size_t i = 0; i < engine_.bad_count(); ++i) {
        BadCompletionRecord r{};
        std::memcpy(r.dwords, &history[i].entry, sizeof(r.dwords));
        r.reason = engine::bad_completion_reason(history[i].reason);
        out.push_back(r);
    }
    return out;
}

}  // namespace vfioq::io
