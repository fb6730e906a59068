// SPDX-License-Identifier: MIT
// What every profile's controller keeps for its queue pairs, written once: a
// slot per queue id, the MSI-X eventfds by vector, the rings, descriptor pages
// and doorbells of a new queue pair, doorbell writes where the page is not
// mapped, and closing them all at shutdown. Each profile keeps only what is
// its own: registers (SGQ) or admin commands (NVMe) that create and destroy
// queues on the device.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "engine/queue_engine.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::io {

class EngineQueuePair;
struct QueuePairResources;

// Where a profile's queues live on the device.
struct QueueLayout {
    uint32_t bar = 0;  // of the doorbells
    uint32_t dstrd = 0;
    uint64_t (*sq_doorbell)(uint32_t qid, uint32_t dstrd) = nullptr;
    uint64_t (*cq_doorbell)(uint32_t qid, uint32_t dstrd) = nullptr;
    uint32_t sq_entry_size = 64, cq_entry_size = 16;
    uint16_t first_qid = 0;  // NVMe's queue 0 is the admin queue
};

class QueueHost final : public engine::DoorbellWriter {
public:
    explicit QueueHost(Device& device) : device_(device) {}
    ~QueueHost() override = default;
    QueueHost(const QueueHost&) = delete;
    QueueHost& operator=(const QueueHost&) = delete;

    // Guards the slots, the vectors and running(). The profile holds it across
    // the steps of creating a queue; nothing here takes it.
    [[nodiscard]] std::mutex& mutex() { return mutex_; }
    [[nodiscard]] bool running() const { return running_; }
    void set_running(bool running) { running_ = running; }

    // At bring-up: the layout and `slots` queue ids (first_qid included).
    void set_layout(const QueueLayout& layout, uint32_t slots);
    [[nodiscard]] const QueueLayout& layout() const { return layout_; }
    [[nodiscard]] std::optional<uint16_t> free_qid() const;
    [[nodiscard]] uint32_t slots() const { return static_cast<uint32_t>(queues_.size()); }
    void attach(uint16_t qid, EngineQueuePair* qp) { queues_[qid] = qp; }
    // Frees the slot `qp` holds and disarms its vector; nothing if it holds none.
    void release(uint16_t qid, const QueuePair* qp);

    // MSI-X: `count` vectors the transport offers, vector 0 armed now (or none at all).
    Result<void> open_vectors(uint32_t count);
    [[nodiscard]] uint32_t vector_count() const { return static_cast<uint32_t>(vector_fds_.size()); }
    [[nodiscard]] int vector_fd(uint32_t vector) const;
    // Gives `qid` its own eventfd on `vector` (into res.event_fd, a duplicate the queue pair owns).
    Result<void> arm_queue_vector(uint16_t qid, uint32_t vector, QueuePairResources& res);
    // Undoes arm_queue_vector after a later step of creating the queue failed.
    void disarm_queue_vector(uint16_t qid);
    // Wakes every queue's waiter (after a reset, so it sees it now and not at its timeout).
    void wake_queue_vectors();
    // Takes the eventfds back from the transport (unless the device is gone) and closes them.
    void close_vectors();

    // The rings (CQ zeroed: nothing posted), descriptor pages and doorbells of queue res.qid.
    Result<void> allocate_rings(QueuePairResources& res);

    // Closes every open queue pair, which reports its outstanding commands and lets
    // go of its slot, then marks the host stopped. False if it was stopped already.
    bool close_all();

    // Doorbell writes through the transport where the doorbell page is not mapped.
    void write_doorbell(uint64_t offset, uint32_t value) override;
    // Points a doorbell at `offset`: the mapped page if there is one, else this.
    void place_doorbell(engine::Doorbell& doorbell, uint64_t offset);

private:
    Result<void> apply_vectors();

    Device& device_;
    QueueLayout layout_;
    std::mutex mutex_;
    bool running_ = false;
    std::vector<EngineQueuePair*> queues_;  // by qid; null when free
    std::vector<int> vector_of_;            // by qid; -1 when polled
    std::vector<UniqueFd> vector_fds_;      // MSI-X eventfds by vector
};

}  // namespace vfioq::io
