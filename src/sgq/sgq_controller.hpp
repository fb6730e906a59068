// SPDX-License-Identifier: MIT
// The SGQ device profile: bring-up, queue pair creation and teardown, and
// shutdown per docs/device-interface.md section 5, through Device registers.
#pragma once

#include <functional>
#include <mutex>
#include <optional>
#include <vector>

#include "io/queue_host.hpp"
#include "io/queue_profile.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq::io {
class EngineQueuePair;
}

namespace vfioq::sgq {

class SgqController final : public Controller, public io::QueueOwner {
public:
    static Result<std::unique_ptr<Controller>> open(Device& device, const ControllerOptions& options);
    ~SgqController() override;

    [[nodiscard]] Device& device() override { return device_; }
    [[nodiscard]] const ControllerInfo& info() const override { return info_; }
    Result<std::unique_ptr<QueuePair>> create_queue_pair(const QueuePairOptions& options) override;
    Result<void> shutdown() override;
    [[nodiscard]] int event_fd() const override { return host_.vector_fd(0); }

    [[nodiscard]] const std::string& name() const override { return device_.name(); }

    // For queue pairs: Q_CTRL.ENABLE = 0 and wait for ENABLED to clear, calling drain() meanwhile.
    Result<void> disable_queue(uint16_t qid, const std::function<void()>& drain) override;
    Result<void> enable_queue(uint16_t qid) override;
    Result<void> reset_controller(const std::string& why) override;
    void release_queue(uint16_t qid, QueuePair* qp) override;
    [[nodiscard]] const io::ControllerHealth& health() const override { return health_; }

private:
    // What a queue is enabled with, kept to enable it again after a recovery.
    struct QueueSetup {
        uint64_t sq_base = 0, cq_base = 0;
        uint32_t sq_entries = 0, cq_entries = 0, coal = 0, q_ctrl = 0;
    };

    explicit SgqController(Device& device) : device_(device), host_(device) {
        health_.device_gone = &device.gone_flag();
    }
    Result<void> bring_up(const ControllerOptions& options);
    Result<uint32_t> reg32(uint64_t offset, const char* name);
    Result<void> set_reg32(uint64_t offset, uint32_t value, const char* name);
    // Polls `reg` until pred(value) or the ready timeout; the error says what was awaited.
    Result<uint32_t> wait_register(uint64_t offset, const char* name, const std::function<bool(uint32_t)>& pred,
                                   const std::string& awaited, const std::function<void()>& between = {});
    Result<void> disable_controller();
    Result<void> enable_controller();
    // Writes a queue's registers from setups_ and sets ENABLE; callers hold host_.mutex().
    Result<void> start_queue_locked(uint16_t qid);
    // A register read all-ones: if ID does too, the device is gone (marked so) and this is the error.
    std::optional<Error> confirm_gone(const char* reg, const std::string& doing);

    Device& device_;
    ControllerInfo info_;
    Cap cap_{};
    io::QueueHost host_;
    std::vector<QueueSetup> setups_;  // by qid, under host_.mutex()
    io::ControllerHealth health_;
};

}  // namespace vfioq::sgq
