// SPDX-License-Identifier: MIT
// The reference model of the SGQ card (docs/device-interface.md): config
// space, the BAR0 register file and controller state machine, the doorbell
// page shared through an fd, BAR2 MSI-X, and DMA through the client's windows.
// Thread-safe: the vfio-user server, device workers and tests may call it at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "config_space.hpp"
#include "dma_space.hpp"
#include "msix.hpp"
#include "vfioq/model_config.hpp"
#include "vfioq/result.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::model {

class QueueProcessor;

class SgqDevice {
public:
    static Result<std::unique_ptr<SgqDevice>> create(const ModelConfig& config);
    ~SgqDevice();
    SgqDevice(const SgqDevice&) = delete;
    SgqDevice& operator=(const SgqDevice&) = delete;

    [[nodiscard]] const ModelConfig& config() const { return config_; }

    // Region access as a client sees it (VFIO region indexes). Errors name
    // the region and offset; BAR registers take naturally aligned accesses of
    // 4 or 8 bytes (reads also 1 or 2), config space any bytes.
    [[nodiscard]] uint64_t region_size(uint32_t index) const;
    Result<void> region_read(uint32_t index, uint64_t offset, std::span<std::byte> out);
    Result<void> region_write(uint32_t index, uint64_t offset, std::span<const std::byte> in);

    // The fd behind BAR0; only the doorbell page is offered for mmap.
    [[nodiscard]] int bar0_fd() const { return bar0_fd_.get(); }

    // 32-bit register access to BAR0 at a 4-byte aligned offset.
    uint32_t read32(uint64_t offset);
    void write32(uint64_t offset, uint32_t value);
    uint64_t read64(uint64_t offset) { return read32(offset) | uint64_t{read32(offset + 4)} << 32; }

    Msix& msix() { return msix_; }
    DmaSpace& dma() { return dma_; }
    ConfigSpace& config_space() { return config_space_; }

    // Device-initiated DMA on behalf of a command; a refused access sets
    // ERR_STATUS.DMA_FAULT, ERR_QID and ERR_ADDR as the spec says. `reader` is the
    // calling thread's own (DmaSpace::Reader).
    Result<void> dma_read(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, uint64_t iova,
                          std::span<std::byte> out);
    Result<void> dma_write(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, uint64_t iova,
                           std::span<const std::byte> in);
    // A ring in this process's memory for the reader's section (DmaSpace::local), or null:
    // the caller then goes through dma_read() and dma_write(), which report a fault.
    [[nodiscard]] std::byte* local_ring(DmaSpace::Reader& reader, uint64_t iova, uint64_t bytes, bool to_host) const;
    // The same for a caller without a reader (through the DMA space's lock).
    Result<void> dma_read(uint16_t qid, uint16_t cid, uint64_t iova, std::span<std::byte> out);
    Result<void> dma_write(uint16_t qid, uint16_t cid, uint64_t iova, std::span<const std::byte> in);

    // Function-level reset (VFIO device reset, PCIe FLR): controller reset; config kept.
    void function_reset();
    // The client went away: its DMA windows and eventfds are released, and a
    // running controller (CTRL.EN = 1) is reset; an idle one keeps its registers.
    void client_disconnected();
    // Fault injection: a fatal controller error (STATUS.CFS, vector 0); the
    // card does nothing more until a reset.
    void inject_fatal_error();
    // Fault injection: the card's engine hangs; nothing is fetched or posted
    // (so a queue disable never finishes) until a controller reset.
    void hang() { hung_.store(true, std::memory_order_release); }
    // Fault injection: surprise removal. Every register and config read gives
    // all-ones, writes are dropped and the card does nothing more; with
    // `close_connection` the server also closes the client's connection.
    void remove(bool close_connection);
    [[nodiscard]] bool removed() const { return removed_.load(std::memory_order_acquire); }
    // Readable once the server should close the connection (remove(true)).
    [[nodiscard]] int disconnect_fd() const { return disconnect_fd_.get(); }
    // The card does nothing: fatal status, hung or removed.
    [[nodiscard]] bool frozen() const {
        return fatal_flag_.load(std::memory_order_acquire) || hung_.load(std::memory_order_acquire) ||
               removed_.load(std::memory_order_acquire);
    }
    // Fault injection: the next `count` commands that pass validation complete
    // with `status` and move no data.
    void inject_command_status(uint16_t status, uint32_t count);
    // For the executor: the status to force on this command, or -1. Not an optional: GCC
    // returns one through two narrow stack stores and a wide load, which cannot be
    // forwarded and cost the doorbell thread a fifth of its time.
    [[nodiscard]] int32_t take_forced_status() {
        if (forced_count_.load(std::memory_order_relaxed) == 0) [[likely]]
            return -1;
        return take_forced_status_slowly();
    }
    // For the executor: true on every corrupt_reads_every-th READ.
    [[nodiscard]] bool corrupt_this_read();

    // Card memory (devmem_size bytes).
    [[nodiscard]] std::span<std::byte> devmem() { return {devmem_, config_.devmem_size}; }

    // --- The device side, used by the queue processor and the command executor. ---

    // A queue pair's registers; `generation` changes on every enable and reset.
    struct QueueRegs {
        uint64_t sq_base = 0, cq_base = 0;
        uint32_t sq_size = 0, cq_size = 0, ctrl = 0, status = 0, coal = 0;
        uint64_t generation = 0;
    };
    [[nodiscard]] QueueRegs queue_config(uint32_t qid);
    // Counts register changes that concern queue processing, so that the
    // processor re-reads queue registers only when one happened.
    [[nodiscard]] uint64_t change_count() const { return changes_.load(std::memory_order_acquire); }
    // Counts controller resets.
    [[nodiscard]] uint64_t epoch() const { return epoch_.load(std::memory_order_acquire); }
    [[nodiscard]] uint32_t doorbell_value(uint64_t offset) { return doorbell(offset).load(std::memory_order_acquire); }
    // Submission entries the card has fetched, every queue together (for tests).
    [[nodiscard]] uint64_t commands_fetched() const;
    // Q_STATUS.ERROR, the ERR_STATUS bit, ERR_QID and vector 0, if the queue is still in `generation`.
    void halt_queue(uint32_t qid, uint64_t generation, uint32_t err_bit, uint16_t cid, const char* why);
    // A disabled queue has drained: ENABLED (and ERROR) clear.
    void finish_disable(uint32_t qid, uint64_t generation);
    [[nodiscard]] bool shutdown_pending() const { return shutdown_pending_.load(std::memory_order_acquire); }
    void finish_shutdown();
    void record_error(uint32_t err_bit, uint16_t qid, uint16_t cid);
    // From the queue processor's thread only.
    void count_completion(uint64_t bytes);
    Result<void> publish32(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, uint64_t iova, uint32_t value);

private:

    explicit SgqDevice(const ModelConfig& config);
    Result<void> init();
    int32_t take_forced_status_slowly();

    // Callers hold mutex_.
    uint32_t read32_locked(uint64_t offset);
    void write32_locked(uint64_t offset, uint32_t value);
    uint32_t status_locked();
    void controller_reset_locked();
    // After a reset, with the lock released: returns once the card's DMA has stopped.
    void settle_reset();
    void write_queue_register_locked(uint32_t qid, uint64_t reg, uint32_t value);
    void write_q_ctrl_locked(uint32_t qid, uint32_t value);
    std::atomic_ref<uint32_t> doorbell(uint64_t offset);
    void record_dma_fault(uint16_t qid, uint16_t cid, uint64_t iova);
    Result<void> dma_access(DmaSpace::Reader* reader, bool to_host, uint16_t qid, uint16_t cid, uint64_t iova,
                            std::span<std::byte> data);
    void queues_changed();

    const ModelConfig config_;
    std::mutex mutex_;
    ConfigSpace config_space_;
    Msix msix_;
    DmaSpace dma_;

    UniqueFd bar0_fd_;
    std::byte* bar0_map_ = nullptr;  // the doorbell page lives at kDoorbellBase in it
    std::byte* devmem_ = nullptr;

    uint32_t ctrl_ = 0;
    bool fatal_ = false;
    uint32_t shst_ = 0;
    std::chrono::steady_clock::time_point ready_at_{};
    uint32_t scratch_ = 0;
    uint32_t err_status_ = 0;
    uint32_t err_qid_ = 0;
    uint64_t err_addr_ = 0;
    std::atomic<uint64_t> stat_cmds_{0}, stat_cmds_base_{0};
    std::atomic<uint64_t> stat_bytes_{0}, stat_bytes_base_{0};
    std::vector<QueueRegs> queues_;
    std::atomic<uint64_t> changes_{0};
    std::atomic<uint64_t> epoch_{0};
    std::atomic<bool> shutdown_pending_{false};
    std::atomic<uint32_t> forced_count_{0};
    std::atomic<uint16_t> forced_status_{0};
    std::atomic<uint64_t> reads_seen_{0};
    std::atomic<bool> fatal_flag_{false};  // fatal_, for the processor
    std::atomic<bool> hung_{false};
    std::atomic<bool> removed_{false};
    UniqueFd disconnect_fd_;
    std::unique_ptr<QueueProcessor> processor_;  // last: stopped before the rest goes
};

}  // namespace vfioq::model
