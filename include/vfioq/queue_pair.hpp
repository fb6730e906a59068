// SPDX-License-Identifier: MIT
// QueuePair: one submission/completion ring pair on the card, the I/O path.
//
// Threading: a queue pair belongs to one thread at a time; its calls take no
// lock. Use one queue pair per thread (Controller::create_queue_pair).
// Completions: poll() (or wait()) reaps them and calls each command's
// callback on the calling thread; a callback may submit, but not poll.
// Fast path: submit, submit_batch and poll allocate nothing, take no lock,
// throw nothing and make no system call (the doorbell is a store into the
// mapped doorbell page; where the device offers no mapping, one message per
// batch). Errors on a refused submission carry a message naming the queue,
// the segment and the limit.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "vfioq/dma.hpp"
#include "vfioq/export.hpp"
#include "vfioq/result.hpp"

namespace vfioq {

// A command's fate. The first ten are the card's status codes (spec 3.4);
// the rest are the driver's verdict where the card gave none.
enum class IoStatus : uint16_t {
    kSuccess = 0,
    kInvalidOpcode,
    kInvalidField,
    kDevaddrRange,
    kLengthInvalid,
    kSglInvalid,
    kSglLengthMismatch,
    kDmaFault,
    kAborted,
    kInternal,
    kUnknownDeviceStatus,  // a code the card's profile does not define; see Completion::device_status
    kCancelled,            // the queue pair was closed and the device never completed it
    kTimeout,              // not completed within QueuePairOptions::command_timeout; its outcome is unknown
    kReset,                // lost to a controller reset (the card keeps nothing across one)
    kDeviceGone,           // the device was removed, died or its connection closed
};
VFIOQ_API const char* io_status_name(IoStatus status);

enum class Opcode : uint8_t {
    kWrite,  // host -> card (H2C)
    kRead,   // card -> host (C2H)
    kNop,
};

struct Completion {
    IoStatus status;
    // The raw status field of the card's completion entry; 0 where the driver
    // decided the status (CANCELLED, TIMEOUT, RESET, DEVICE_GONE, and ABORTED for
    // a command the card had not answered when recovery disabled its queue).
    uint16_t device_status;
    uint16_t qid;
    uint16_t cid;
    uint32_t bytes;  // bytes the device reports as moved
    void* context;   // as given at submission
};

using CompletionCallback = void (*)(const Completion& completion);

struct IoRequest {
    Opcode op = Opcode::kNop;
    uint64_t devaddr = 0;                   // byte offset in card memory
    std::span<const DmaSegment> segments;   // host memory, in card address order
    CompletionCallback callback = nullptr;  // may be null
    void* context = nullptr;
};

struct QueuePairStats {
    uint64_t submitted = 0, completed = 0;
    uint64_t sq_doorbells = 0, cq_doorbells = 0;
    // Of those, updates that went to an NVMe shadow doorbell only: the controller's
    // event index did not ask for the register to be written.
    uint64_t doorbell_writes_skipped = 0;
    uint64_t queue_full = 0;  // submissions refused for back-pressure
    uint64_t device_errors = 0;  // bad completion entries (CID, SQ id, SQ head), counted and logged
    // ... by kind.
    uint64_t cid_out_of_range = 0, cid_not_outstanding = 0, wrong_sqid = 0, sq_head_invalid = 0;
    uint64_t error_statuses = 0;      // completions whose device status is not SUCCESS
    uint64_t timeouts = 0;            // commands reported TIMEOUT
    uint64_t queue_recoveries = 0;    // times the queue was disabled and enabled again after a timeout
    uint64_t controller_resets = 0;   // controller resets this queue pair went through
    uint64_t interrupts = 0;     // eventfd wake-ups consumed
    uint64_t memory_bytes = 0;   // host memory this queue pair holds (rings, descriptor pages, trackers)
};

// A completion entry the driver refused, as the card wrote it.
struct BadCompletionRecord {
    uint32_t dwords[4];
    const char* reason;  // e.g. "CID not outstanding"
};

class VFIOQ_API QueuePair {
public:
    virtual ~QueuePair() = default;

    [[nodiscard]] virtual uint16_t id() const = 0;
    // Commands that may be outstanding at once, and how many are now.
    [[nodiscard]] virtual uint32_t capacity() const = 0;
    [[nodiscard]] virtual uint32_t outstanding() const = 0;

    // Submits one command and rings the doorbell. EAGAIN when the queue is full
    // (back-pressure: poll and try again; nothing is queued or dropped); EINVAL
    // for a request the card's limits refuse; EPIPE after close(); ENODEV once
    // the device is gone; EIO when recovery could not bring the queue back.
    virtual Result<uint16_t> submit(const IoRequest& request) = 0;
    // Submits host memory that is registered or in a DmaBuffer (EFAULT otherwise).
    virtual Result<uint16_t> submit_host(Opcode op, uint64_t devaddr, std::span<const HostSegment> segments,
                                         CompletionCallback callback, void* context) = 0;
    // Submits a 64-byte submission entry as it is, but for its CID field, which
    // the queue pair fills in. For bring-up and tests that need commands the
    // checks of submit() would refuse; the card's status says what it made of it.
    virtual Result<uint16_t> submit_raw(std::span<const std::byte> entry, CompletionCallback callback,
                                        void* context) = 0;
    // Submits requests in order until one is refused or the queue is full;
    // one doorbell for all. Returns how many were submitted; an error only when
    // the first one is refused for a reason other than back-pressure.
    virtual Result<uint32_t> submit_batch(std::span<const IoRequest> requests) = 0;

    // Reaps up to `max` completions (0: the queue pair's poll batch), calls their
    // callbacks, and returns how many. Never blocks. Also where recovery runs:
    // a command past its timeout, a controller reset or a device that is gone
    // is dealt with here, and the commands it concerns are reported.
    virtual uint32_t poll(uint32_t max = 0) = 0;
    // Interrupt mode: waits up to `timeout` for the queue's MSI-X vector (through
    // io_uring on its eventfd) unless completions are already there, then polls.
    // ENOTSUP in polled mode.
    virtual Result<uint32_t> wait(std::chrono::milliseconds timeout, uint32_t max = 0) = 0;
    // Interrupt mode: the eventfd of the queue's vector, for an application's own
    // event loop (readable when completions may be there; read it, then poll()).
    // Do not mix it with wait(). -1 in polled mode.
    [[nodiscard]] virtual int event_fd() const = 0;

    // Disables the queue on the card, delivers every outstanding command's
    // completion (the device's own, ABORTED, or CANCELLED if the device never
    // answered), and releases the rings. Submissions afterwards fail with EPIPE.
    virtual Result<void> close() = 0;
    [[nodiscard]] virtual bool closed() const = 0;

    [[nodiscard]] virtual QueuePairStats stats() const = 0;
    // The most recent completion entries refused as bad (at most 8), oldest first.
    [[nodiscard]] virtual std::vector<BadCompletionRecord> bad_completions() const = 0;
    // ENODEV once the device is gone: then every command has been reported
    // DEVICE_GONE and every submission fails.
    [[nodiscard]] virtual bool device_gone() const = 0;
};

}  // namespace vfioq
