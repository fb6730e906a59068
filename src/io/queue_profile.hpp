// SPDX-License-Identifier: MIT
// What a device profile (the SGQ card, NVMe) gives a queue pair: how a
// request becomes a 64-byte submission entry, what a completion status means,
// and how the device takes the queue down. Everything else about a queue
// pair (rings, CIDs, callbacks, interrupts, closing) is the same for all.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "dma/sgl_builder.hpp"
#include "vfioq/queue_pair.hpp"
#include "vfioq/result.hpp"

namespace vfioq::io {

// Encodes requests for one queue pair. Fast path: no allocation on success.
class CommandCodec {
public:
    virtual ~CommandCodec() = default;
    // Fills `sqe` (64 bytes, zeroed by the caller) but for the CID (bytes 2-3 in
    // both SGQ and NVMe entries). Returns the first descriptor page taken from
    // `pool` (-1 for none), EINVAL with the reason for a request the device's
    // limits refuse, or EAGAIN (a static reason, nothing formatted) when
    // descriptor pages run out. The entry's data length must be the sum of the
    // request's segments: the queue pair counts it from them.
    virtual Result<int32_t> encode(const IoRequest& request, std::byte* sqe, dma::SglPagePool& pool) = 0;
    // The data length of an entry (a raw submission's).
    [[nodiscard]] virtual uint32_t length(const std::byte* sqe) const = 0;
    // The status field of a completion (bits 15:1 of its last word) as a named status.
    [[nodiscard]] virtual IoStatus decode(uint16_t status) const = 0;
    // Bytes a completion reports moved: the SGQ card says so in DW0; NVMe does
    // not, so a successful command moved what it asked for.
    [[nodiscard]] virtual uint32_t bytes(uint32_t dw0, IoStatus status, uint32_t requested) const = 0;
    // Status 0 is success in every profile; a successful completion is then decoded
    // without asking the codec: its bytes are DW0 when this is true, else what was asked.
    [[nodiscard]] virtual bool bytes_in_dw0() const { return false; }
};

// What every queue pair of a controller watches on each call, with relaxed
// loads of words that change only when something went wrong.
struct ControllerHealth {
    std::atomic<uint32_t> resets{0};  // controller resets so far
    const std::atomic<bool>* device_gone = nullptr;
};

// The device side of a queue pair's life.
class QueueOwner {
public:
    virtual ~QueueOwner() = default;
    [[nodiscard]] virtual const std::string& name() const = 0;
    // Stops the queue on the device; the device completes (or aborts) what it fetched
    // while drain() is called to reap those completions. ETIMEDOUT when the device
    // does not finish within its ready timeout; ENODEV when it is gone.
    virtual Result<void> disable_queue(uint16_t qid, const std::function<void()>& drain) = 0;
    // Enables the queue again on the rings it was created with (heads and tails
    // back at 0), after a disable or a controller reset. ENOTSUP where the
    // profile cannot.
    virtual Result<void> enable_queue(uint16_t qid) = 0;
    // Resets the controller and brings it back up; every queue is then off until
    // its queue pair enables it again (ControllerHealth::resets tells them).
    virtual Result<void> reset_controller(const std::string& why) = 0;
    // The queue id and its vector are free again.
    virtual void release_queue(uint16_t qid, QueuePair* qp) = 0;
    [[nodiscard]] virtual const ControllerHealth& health() const = 0;
};

}  // namespace vfioq::io
