// SPDX-License-Identifier: MIT
// Controller: the card brought up and ready for queue pairs.
//
//   auto device = vfioq::Device::open("model");          // the PCI function
//   auto ctrl = vfioq::Controller::open(**device);       // bring-up (spec section 5)
//   auto qp = (*ctrl)->create_queue_pair({.depth = 4096});
//
// Lifetimes: Device outlives Controller, Controller outlives its queue pairs
// (a queue pair still open when its controller goes is closed by it first).
// Thread-safety: controller calls are control path and take a lock; each
// queue pair then belongs to one thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "vfioq/device.hpp"
#include "vfioq/export.hpp"
#include "vfioq/queue_pair.hpp"
#include "vfioq/result.hpp"

namespace vfioq {

struct ControllerOptions {
    // How long EN/RDY transitions may take; 0 takes the card's CAP.TO.
    std::chrono::milliseconds ready_timeout{0};
    // NVMe: move data by PRPs even when the controller supports SGLs. Segments
    // must then be whole 4 KiB pages (ControllerInfo::segment_alignment says so).
    bool nvme_use_prp = false;
    // NVMe: shadow doorbells (Doorbell Buffer Config) for the I/O queues when the
    // controller offers them, as a virtual controller does: the register, which
    // traps to the hypervisor, is written only when the controller's event index asks.
    bool nvme_shadow_doorbells = true;
};

struct QueuePairOptions {
    // Commands outstanding at once (1 .. the card's ring size minus 1, at most 65535).
    uint32_t depth = 256;
    // Ring entries; 0 makes each ring depth + 1 entries.
    uint32_t sq_entries = 0;
    uint32_t cq_entries = 0;
    // Interrupt mode: the queue's CQ raises an MSI-X vector, delivered to an eventfd.
    bool interrupts = false;
    // Interrupt coalescing (Q_COAL): entries and microseconds; 0, 0 = every completion.
    uint16_t coalesce_entries = 0;
    uint16_t coalesce_usecs = 0;
    // Most completions one poll() reaps.
    uint32_t poll_batch = 256;
    // 4 KiB pages for segment arrays (commands of more than two segments); 0: depth / 4, at least 16.
    uint32_t sgl_pages = 0;
    // A command not completed within this time is reported TIMEOUT: the queue
    // is disabled (the card completes or aborts what it holds) and enabled
    // again; a disable that does not finish resets the controller. Checked in
    // poll(), so it fires only while the application polls or waits. 0: never.
    std::chrono::milliseconds command_timeout{30000};
};

// What the card reports, decoded.
struct ControllerInfo {
    std::string kind = "SGQ";   // the device profile: "SGQ" or "NVMe"
    uint32_t version = 0;       // major << 16 | minor (NVMe: as the VS register)
    uint32_t queue_pairs = 0;   // NQP + 1
    // How many of them can have an MSI-X vector of their own (interrupts = true):
    // the card's vectors less the errors/admin vector 0, at most queue_pairs.
    uint32_t interrupt_queue_pairs = 0;
    uint32_t max_queue_entries = 0;  // MQES + 1
    uint64_t devmem_size = 0;
    uint64_t max_transfer = 0;  // bytes per command
    uint32_t max_segments = 0;  // DATA descriptors per command
    uint32_t segment_alignment = 1;  // bytes
    uint32_t block_size = 1;    // card addresses and lengths are multiples of this (NVMe: the LBA size)
    std::chrono::milliseconds ready_timeout{0};
};

class VFIOQ_API Controller {
public:
    // Brings the device up with the profile its PCI class calls for: an NVMe
    // controller (class 010802) gets the NVMe profile, anything else the SGQ
    // card's (which checks ID and VERSION, resets a controller left running,
    // sets CTRL.EN and waits for STATUS.RDY). Errors name the device and register.
    static Result<std::unique_ptr<Controller>> open(Device& device, const ControllerOptions& options = {});
    virtual ~Controller() = default;

    [[nodiscard]] virtual Device& device() = 0;
    [[nodiscard]] virtual const ControllerInfo& info() const = 0;

    // A queue pair on the next free queue id (ids 0 .. NQP). In interrupt mode
    // queue q uses MSI-X vector q + 1 (vector 0 is the card's event vector).
    virtual Result<std::unique_ptr<QueuePair>> create_queue_pair(const QueuePairOptions& options = {}) = 0;

    // Normal shutdown (CTRL.SHN, wait for SHST complete), then CTRL.EN = 0.
    // Open queue pairs are closed first. The destructor does it too.
    virtual Result<void> shutdown() = 0;

    // The event vector's eventfd (controller fatal status, queue errors); -1 if none.
    [[nodiscard]] virtual int event_fd() const = 0;
};

}  // namespace vfioq
