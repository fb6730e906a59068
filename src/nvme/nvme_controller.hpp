// SPDX-License-Identifier: MIT
// The NVMe device profile: controller bring-up (CC/CSTS, the admin queue,
// Identify controller and namespace 1, number of queues), I/O queue pairs
// created and deleted by admin commands with their MSI-X vectors, and
// shutdown. I/O uses the same queue engine and API as the SGQ card, which was
// designed after NVMe; the profile exists so that the kernel VFIO path is
// proven against a controller vfioq did not write, and to drive NVMe drives.
#pragma once

#include <mutex>
#include <vector>

#include "engine/queue_engine.hpp"
#include "io/queue_host.hpp"
#include "io/queue_profile.hpp"
#include "nvme_codec.hpp"
#include "nvme_registers.hpp"
#include "vfioq/controller.hpp"

namespace vfioq::io {
class EngineQueuePair;
}

namespace vfioq::nvme {

class NvmeController final : public Controller, public io::QueueOwner {
public:
    static Result<std::unique_ptr<Controller>> open(Device& device, const ControllerOptions& options);
    ~NvmeController() override;

    [[nodiscard]] Device& device() override { return device_; }
    [[nodiscard]] const ControllerInfo& info() const override { return info_; }
    Result<std::unique_ptr<QueuePair>> create_queue_pair(const QueuePairOptions& options) override;
    Result<void> shutdown() override;
    [[nodiscard]] int event_fd() const override { return -1; }  // vector 0 belongs to the admin queue

    [[nodiscard]] const std::string& name() const override { return device_.name(); }
    Result<void> disable_queue(uint16_t qid, const std::function<void()>& drain) override;
    // Recovery is the SGQ card's: an NVMe queue that timed out is left disabled.
    Result<void> enable_queue(uint16_t qid) override;
    Result<void> reset_controller(const std::string& why) override;
    void release_queue(uint16_t qid, QueuePair* qp) override;
    [[nodiscard]] const io::ControllerHealth& health() const override { return health_; }

private:
    explicit NvmeController(Device& device) : device_(device), host_(device) {
        health_.device_gone = &device.gone_flag();
    }
    Result<void> bring_up(const ControllerOptions& options);
    Result<uint32_t> wait_csts(const std::function<bool(uint32_t)>& pred, const char* awaited);
    // Runs one admin command to completion; returns DW0 of its completion.
    Result<uint32_t> admin(Command cmd, const std::string& what);
    // Doorbell Buffer Config: the shadow doorbells and event indexes in host memory.
    // A controller that refuses keeps its plain doorbells (logged, not an error).
    void configure_shadow_doorbells();
    // A new I/O queue's doorbells get their shadows, zeroed before the queue exists.
    void shadow_queue_doorbells(io::QueuePairResources& res);

    Device& device_;
    ControllerInfo info_;
    Cap cap_{};
    NamespaceGeometry ns_;
    io::QueueHost host_;  // I/O queues from 1
    io::ControllerHealth health_;
    std::mutex admin_mutex_;  // the admin queue: one command at a time
    DmaBuffer asq_, acq_, identify_;
    uint64_t identify_address_ = 0;  // as the controller sees it
    engine::QueueEngine admin_;
    DmaBuffer shadow_, event_idx_;  // empty unless the controller took them
};

}  // namespace vfioq::nvme
