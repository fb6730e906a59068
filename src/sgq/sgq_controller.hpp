// SPDX-License-Identifier: MIT
// The SGQ device profile: bring-up, queue pair creation and teardown, and
// shutdown per docs/device-interface.md section 5, through Device registers.
#pragma once

#include <functional>
#include <mutex>
#include <vector>

#include "vfioq/controller.hpp"
#include "vfioq/sgq_registers.hpp"
#include "engine/queue_engine.hpp"
#include "io/queue_profile.hpp"

namespace vfioq::io {
class EngineQueuePair;
}

namespace vfioq::sgq {

class SgqController final : public Controller, public engine::DoorbellWriter, public io::QueueOwner {
public:
    static Result<std::unique_ptr<Controller>> open(Device& device, const ControllerOptions& options);
    ~SgqController() override;

    [[nodiscard]] Device& device() override { return device_; }
    [[nodiscard]] const ControllerInfo& info() const override { return info_; }
    Result<std::unique_ptr<QueuePair>> create_queue_pair(const QueuePairOptions& options) override;
    Result<void> shutdown() override;
    [[nodiscard]] int event_fd() const override { return vector_fds_.empty() ? -1 : vector_fds_[0].get(); }

    [[nodiscard]] const std::string& name() const override { return device_.name(); }

    // For queue pairs: Q_CTRL.ENABLE = 0 and wait for ENABLED to clear, calling drain() meanwhile.
    Result<void> disable_queue(uint16_t qid, const std::function<void()>& drain) override;
    void release_queue(uint16_t qid, QueuePair* qp) override;

    // Doorbell writes through the transport where the doorbell page is not mapped.
    void write_doorbell(uint64_t offset, uint32_t value) override;

private:
    explicit SgqController(Device& device) : device_(device) {}
    Result<void> bring_up(const ControllerOptions& options);
    Result<uint32_t> reg32(uint64_t offset, const char* name);
    Result<void> set_reg32(uint64_t offset, uint32_t value, const char* name);
    // Polls `reg` until pred(value) or the ready timeout; the error says what was awaited.
    Result<uint32_t> wait_register(uint64_t offset, const char* name, const std::function<bool(uint32_t)>& pred,
                                   const std::string& awaited, const std::function<void()>& between = {});
    Result<void> apply_vectors();
    Result<void> disable_controller();

    Device& device_;
    ControllerInfo info_;
    Cap cap_{};
    std::mutex mutex_;
    std::vector<io::EngineQueuePair*> queues_;  // by qid; null when free
    std::vector<UniqueFd> vector_fds_;   // MSI-X eventfds by vector
    bool running_ = false;
};

}  // namespace vfioq::sgq
