// SPDX-License-Identifier: MIT
// Device: an opened PCI function, whatever transport reaches it. It owns the
// transport, maps what the transport lets it map and offers register access
// that takes the mapping when there is one and a message when not.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "vfioq/dma.hpp"
#include "vfioq/export.hpp"
#include "vfioq/kernel_vfio.hpp"
#include "vfioq/result.hpp"
#include "vfioq/transport.hpp"
#include "vfioq/vfio_user.hpp"

namespace vfioq {

// How tools and applications name a device:
//   "model"              the reference model, started in this process (see set_model_opener)
//   "vfio-user:PATH"     a vfio-user server listening on the UNIX socket PATH
//   "0000:03:00.0"       a PCI function bound to vfio-pci (kernel VFIO)
struct VFIOQ_API DeviceAddress {
    enum class Kind { kModel, kVfioUser, kPci };
    Kind kind = Kind::kModel;
    std::string target;  // socket path or canonical PCI address

    static Result<DeviceAddress> parse(std::string_view text);
};

struct OpenOptions {
    VfioUserOptions vfio_user;
    KernelVfioOptions kernel;
    DmaOptions dma;
};

class Device;

// What opens the `model` address. The driver library holds no model: the model
// library installs its opener (vfioq::model::enable_model_address()), and
// until one is installed, opening "model" is an error that says so.
using ModelOpener = Result<std::unique_ptr<Device>> (*)(const OpenOptions& options);
VFIOQ_API void set_model_opener(ModelOpener opener);

class VFIOQ_API Device {
public:
    // Opens the device an address names. Errors name the address and the cause.
    static Result<std::unique_ptr<Device>> open(std::string_view address, const OpenOptions& options = {});
    // Wraps a transport opened by other means; `keepalive` lives as long as the device.
    static Result<std::unique_ptr<Device>> from_transport(std::unique_ptr<Transport> transport,
                                                          std::shared_ptr<void> keepalive = {},
                                                          const DmaOptions& dma = {});
    ~Device();
    Device(const Device&) = delete;
    Device& operator=(const Device&) = delete;

    [[nodiscard]] const std::string& name() const { return transport_->name(); }
    [[nodiscard]] Transport& transport() { return *transport_; }
    // DMA buffers and registered memory of this device.
    [[nodiscard]] DmaContext& dma() { return *dma_; }

    // Register access to a BAR; width in bits (8, 16, 32, 64), offset naturally aligned.
    Result<uint64_t> read(uint32_t bar, uint64_t offset, unsigned width);
    Result<void> write(uint32_t bar, uint64_t offset, unsigned width, uint64_t value);
    Result<uint32_t> read32(uint32_t bar, uint64_t offset);
    Result<uint64_t> read64(uint32_t bar, uint64_t offset);
    Result<void> write32(uint32_t bar, uint64_t offset, uint32_t value);
    Result<void> write64(uint32_t bar, uint64_t offset, uint64_t value);

    // Config space access with the same widths.
    Result<uint64_t> config_read(uint64_t offset, unsigned width);
    Result<void> config_write(uint64_t offset, unsigned width, uint64_t value);

    // The size of a BAR as the transport reports it; 0 for one the device does not implement.
    [[nodiscard]] uint64_t bar_size(uint32_t bar) const { return bar < bars_.size() ? bars_[bar].size : 0; }

    // Where part of a BAR is mapped into this process, its address; null otherwise.
    [[nodiscard]] volatile void* mapped(uint32_t bar, uint64_t offset, size_t size) const;

    // Surprise removal: the device was removed, died (its registers read
    // all-ones) or its connection closed. From then on register and config
    // access fails with ENODEV naming the cause, and the BAR mappings are
    // replaced by memory that reads all-ones, so a store into a doorbell that
    // races the removal lands harmlessly instead of faulting the process.
    [[nodiscard]] bool gone() const { return gone_.load(std::memory_order_acquire); }
    [[nodiscard]] const std::atomic<bool>& gone_flag() const { return gone_; }
    [[nodiscard]] std::string gone_reason() const;
    // Idempotent; thread-safe.
    void mark_gone(const std::string& why);

private:
    Device() = default;
    Result<void> map_bars();
    Result<void> check_access(const char* verb, uint32_t index, uint64_t offset, unsigned width) const;
    [[nodiscard]] Error gone_error(const char* verb, uint32_t index, uint64_t offset) const;

    std::shared_ptr<void> keepalive_;         // destroyed after the transport
    std::unique_ptr<Transport> transport_;
    std::vector<RegionInfo> bars_;            // indexes 0..5
    std::vector<RegionMapping> mappings_;
    std::vector<uint32_t> mapping_bar_;       // the BAR of each mapping
    std::unique_ptr<DmaContext> dma_;         // destroyed first: it unmaps through the transport
    std::atomic<bool> gone_{false};
    mutable std::mutex gone_mutex_;
    std::string gone_reason_;
};

}  // namespace vfioq
