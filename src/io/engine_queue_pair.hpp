// SPDX-License-Identifier: MIT
// A queue pair over the queue engine, for any device profile: per-CID
// trackers with callbacks, descriptor pages, interrupt waits through io_uring,
// closing that reports every command. The profile encodes and decodes.
#pragma once

#include <liburing.h>

#include <string>
#include <vector>

#include "dma/sgl_builder.hpp"
#include "engine/queue_engine.hpp"
#include "queue_profile.hpp"
#include "vfioq/dma.hpp"
#include "vfioq/queue_pair.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::io {

struct QueuePairResources {
    uint16_t qid = 0;
    DmaBuffer sq, cq, sgl_pages;
    uint32_t sq_entries = 0, cq_entries = 0, depth = 0, sgl_page_count = 0;
    uint32_t poll_batch = 256;
    engine::Doorbell sq_doorbell, cq_doorbell;
    UniqueFd event_fd;  // interrupt mode
    int vector = -1;
};

class EngineQueuePair final : public QueuePair {
public:
    EngineQueuePair(QueueOwner& owner, std::unique_ptr<CommandCodec> codec, QueuePairResources resources,
                    uint32_t max_segments, DmaContext& dma);
    ~EngineQueuePair() override;

    [[nodiscard]] uint16_t id() const override { return res_.qid; }
    [[nodiscard]] uint32_t capacity() const override { return engine_.capacity(); }
    [[nodiscard]] uint32_t outstanding() const override { return engine_.outstanding(); }

    Result<uint16_t> submit(const IoRequest& request) override;
    Result<uint16_t> submit_host(Opcode op, uint64_t devaddr, std::span<const HostSegment> segments,
                                 CompletionCallback callback, void* context) override;
    Result<uint16_t> submit_raw(std::span<const std::byte> entry, CompletionCallback callback, void* context) override;
    Result<uint32_t> submit_batch(std::span<const IoRequest> requests) override;
    uint32_t poll(uint32_t max) override;
    Result<uint32_t> wait(std::chrono::milliseconds timeout, uint32_t max) override;
    [[nodiscard]] int event_fd() const override { return res_.event_fd.get(); }
    Result<void> close() override;
    [[nodiscard]] bool closed() const override { return closed_; }
    [[nodiscard]] QueuePairStats stats() const override;

    // The owner is going away first.
    void owner_gone() { owner_ = nullptr; }

private:
    struct Tracker {
        CompletionCallback callback;
        void* context;
        int32_t sgl_page;
        uint32_t length;
    };

    // Builds and queues one command without ringing; `ring` says whether to ring after.
    Result<uint16_t> enqueue(const IoRequest& request);
    void complete(uint16_t cid, const engine::CqEntry& entry);
    void cancel(uint16_t cid);
    Error refused(int code, const std::string& why) const;

    QueueOwner* owner_;
    std::unique_ptr<CommandCodec> codec_;
    std::string name_;  // the device's
    QueuePairResources res_;
    DmaContext& dma_;
    engine::QueueEngine engine_;
    dma::SglPagePool pool_;
    std::vector<Tracker> trackers_;
    std::vector<DmaSegment> scratch_;  // submit_host's translated segments
    bool closed_ = false;
    uint64_t queue_full_ = 0;
    uint64_t interrupts_ = 0;

    io_uring ring_{};
    bool ring_ready_ = false;
    bool read_armed_ = false;
    uint64_t event_count_ = 0;
};

}  // namespace vfioq::io
