// SPDX-License-Identifier: MIT
#include "sgq_device.hpp"

#include <fmt/format.h>
#include <linux/pci_regs.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>

#include "queue_processor.hpp"
#include "vfioq/log.hpp"
#include "vfioq/sgq_registers.hpp"
#include "vfioq/transport.hpp"

namespace vfioq::model {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kBar0Index = static_cast<uint32_t>(PciRegion::kBar0);
constexpr uint32_t kBar2Index = static_cast<uint32_t>(PciRegion::kBar2);
constexpr uint32_t kConfigIndex = static_cast<uint32_t>(PciRegion::kConfig);

void set_low(uint64_t& reg, uint32_t v) { reg = (reg & 0xFFFFFFFF00000000ull) | v; }
void set_high(uint64_t& reg, uint32_t v) { reg = (reg & 0xFFFFFFFFull) | uint64_t{v} << 32; }
uint32_t half(uint64_t reg, uint64_t offset) { return static_cast<uint32_t>(offset & 4 ? reg >> 32 : reg); }

}  // namespace

SgqDevice::SgqDevice(const ModelConfig& config)
    : config_(config), config_space_(config), msix_(config.vector_count()), queues_(config.vector_count()) {}

SgqDevice::~SgqDevice() {
    if (processor_) processor_->stop();
    dma_.clear();
    if (bar0_map_) ::munmap(bar0_map_, sgq::kBar0Size);
    if (devmem_) ::munmap(devmem_, config_.devmem_size);
}

Result<std::unique_ptr<SgqDevice>> SgqDevice::create(const ModelConfig& config) {
    if (auto r = config.validate(); !r) return r.error().with_context("device model configuration");
    std::unique_ptr<SgqDevice> device(new SgqDevice(config));
    if (auto r = device->init(); !r) return r.error().with_context("device model");
    device->processor_ = std::make_unique<QueueProcessor>(*device, config);
    device->processor_->start();
    return device;
}

Result<void> SgqDevice::init() {
    // BAR0 lives in a memfd so that its doorbell page can be handed to the client.
    int fd = ::memfd_create("vfioq-model-bar0", MFD_CLOEXEC);
    if (fd < 0) return make_error(errno, fmt::format("memfd_create for BAR0 failed: {}", std::strerror(errno)));
    bar0_fd_.reset(fd);
    disconnect_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!disconnect_fd_) return make_error(errno, fmt::format("eventfd failed: {}", std::strerror(errno)));
    if (::ftruncate(fd, sgq::kBar0Size) != 0)
        return make_error(errno, fmt::format("sizing the BAR0 memfd failed: {}", std::strerror(errno)));
    void* p = ::mmap(nullptr, sgq::kBar0Size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) return make_error(errno, fmt::format("mapping BAR0 failed: {}", std::strerror(errno)));
    bar0_map_ = static_cast<std::byte*>(p);
    // Card memory is reserved, not committed: pages appear as commands touch them.
    p = ::mmap(nullptr, config_.devmem_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
               -1, 0);
    if (p == MAP_FAILED)
        return make_error(errno, fmt::format("reserving {} bytes of card memory failed: {}", config_.devmem_size,
                                             std::strerror(errno)));
    devmem_ = static_cast<std::byte*>(p);
    return {};
}

uint64_t SgqDevice::region_size(uint32_t index) const {
    switch (index) {
        case kBar0Index: return sgq::kBar0Size;
        case kBar2Index: return sgq::kBar2Size;
        case kConfigIndex: return kConfigSize;
        default: return 0;
    }
}

Result<void> SgqDevice::region_read(uint32_t index, uint64_t offset, std::span<std::byte> out) {
    const uint64_t size = region_size(index);
    const char* name = region_name(index);
    if (out.empty() || offset >= size || out.size() > size - offset)
        return make_error(EINVAL, fmt::format("read of {} bytes at {:#x} is outside {} ({:#x} bytes)", out.size(),
                                              offset, name, size));
    if (removed()) {
        std::memset(out.data(), 0xFF, out.size());
        return {};
    }
    if (index == kConfigIndex) {
        std::lock_guard lock(mutex_);
        config_space_.read(static_cast<uint32_t>(offset), out);
        return {};
    }
    const size_t n = out.size();
    const bool aligned = offset % std::min<size_t>(n, 4) == 0;
    if (!aligned || !(n == 1 || n == 2 || n % 4 == 0))
        return make_error(EINVAL, fmt::format("{} read of {} bytes at {:#x}: registers take naturally aligned "
                                              "accesses of 1, 2, 4 or 8 bytes", name, n, offset));
    // Wider reads (8 bytes, or a dump) are a sequence of dword reads, low first.
    for (size_t done = 0; done < n; done += 4) {
        const uint64_t at = offset + done;
        const uint64_t dword_at = at & ~3ull;
        const uint32_t value = index == kBar0Index ? read32(dword_at) : msix_.read32(dword_at);
        const size_t len = std::min<size_t>(4, n - done);
        std::memcpy(out.data() + done, reinterpret_cast<const std::byte*>(&value) + (at - dword_at), len);
    }
    return {};
}

Result<void> SgqDevice::region_write(uint32_t index, uint64_t offset, std::span<const std::byte> in) {
    const uint64_t size = region_size(index);
    const char* name = region_name(index);
    if (in.empty() || offset >= size || in.size() > size - offset)
        return make_error(EINVAL, fmt::format("write of {} bytes at {:#x} is outside {} ({:#x} bytes)", in.size(),
                                              offset, name, size));
    if (removed()) return {};
    if (index == kConfigIndex) {
        bool flr;
        {
            std::lock_guard lock(mutex_);
            flr = config_space_.write(static_cast<uint32_t>(offset), in);
            msix_.set_function_masked(config_space_.msix_function_masked());
        }
        if (flr) function_reset();
        return {};
    }
    if (offset % 4 != 0 || in.size() % 4 != 0)
        return make_error(EINVAL, fmt::format("{} write of {} bytes at {:#x}: registers take naturally aligned "
                                              "writes of 4 or 8 bytes", name, in.size(), offset));
    for (size_t done = 0; done < in.size(); done += 4) {
        uint32_t value;
        std::memcpy(&value, in.data() + done, 4);
        if (index == kBar0Index)
            write32(offset + done, value);
        else
            msix_.write32(offset + done, value);
    }
    return {};
}

std::atomic_ref<uint32_t> SgqDevice::doorbell(uint64_t offset) {
    return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(bar0_map_ + offset));
}

uint32_t SgqDevice::read32(uint64_t offset) {
    if (removed()) return 0xFFFFFFFFu;
    std::lock_guard lock(mutex_);
    return read32_locked(offset);
}

void SgqDevice::write32(uint64_t offset, uint32_t value) {
    if (removed()) return;
    const uint64_t epoch_before = epoch();
    {
        std::lock_guard lock(mutex_);
        write32_locked(offset, value);
    }
    if (epoch() != epoch_before) settle_reset();
    // A register written by message (not through the mapped doorbell page) is seen at once.
    if (processor_ && offset >= sgq::kQueueRegsBase) processor_->kick();
}

void SgqDevice::queues_changed() { changes_.fetch_add(1, std::memory_order_acq_rel); }

uint32_t SgqDevice::status_locked() {
    const bool ready = (ctrl_ & sgq::kCtrlEn) && Clock::now() >= ready_at_;
    return (ready ? sgq::kStatusRdy : 0) | (fatal_ ? sgq::kStatusCfs : 0) | shst_ << sgq::kStatusShstShift;
}

uint32_t SgqDevice::read32_locked(uint64_t offset) {
    using namespace sgq;
    if (offset >= kDoorbellBase && offset < kDoorbellBase + kDoorbellPageSize)
        return doorbell(offset).load(std::memory_order_acquire);
    if (offset >= kQueueRegsBase && offset < kDoorbellBase) {
        const uint64_t qid = (offset - kQueueRegsBase) / kQueueRegsStride;
        const uint64_t reg = (offset - kQueueRegsBase) % kQueueRegsStride;
        if (qid >= queues_.size()) return 0;
        const QueueRegs& q = queues_[qid];
        switch (reg & ~4ull) {
            case kQRegSqBase: return half(q.sq_base, reg);
            case kQRegCqBase: return half(q.cq_base, reg);
            default: break;
        }
        switch (reg) {
            case kQRegSqSize: return q.sq_size;
            case kQRegCqSize: return q.cq_size;
            case kQRegCtrl: return q.ctrl;
            case kQRegStatus: return q.status;
            case kQRegCoal: return q.coal;
            default: return 0;
        }
    }
    switch (offset & ~4ull) {
        case kRegCap: return half(config_.cap_register(), offset);
        case kRegDevmemSize: return half(config_.devmem_size, offset);
        case kRegErrAddr: return half(err_addr_, offset);
        case kRegStatCmds: return half(stat_cmds_.load() - stat_cmds_base_.load(), offset);
        case kRegStatBytes: return half(stat_bytes_.load() - stat_bytes_base_.load(), offset);
        default: break;
    }
    switch (offset) {
        case kRegId: return kIdValue;
        case kRegVersion: return kVersionValue;
        case kRegCtrl: return ctrl_;
        case kRegStatus: return status_locked();
        case kRegScratch: return scratch_;
        case kRegErrStatus: return err_status_;
        case kRegErrQid: return err_qid_;
        default: return 0;  // RESET is write-only; reserved space reads 0
    }
}

void SgqDevice::write32_locked(uint64_t offset, uint32_t value) {
    using namespace sgq;
    if (offset >= kDoorbellBase && offset < kDoorbellBase + kDoorbellPageSize) {
        doorbell(offset).store(value, std::memory_order_release);
        return;
    }
    if (offset >= kQueueRegsBase && offset < kDoorbellBase) {
        const uint64_t qid = (offset - kQueueRegsBase) / kQueueRegsStride;
        if (qid < queues_.size())
            write_queue_register_locked(static_cast<uint32_t>(qid), (offset - kQueueRegsBase) % kQueueRegsStride,
                                        value);
        return;
    }
    switch (offset) {
        case kRegCtrl: {
            const uint32_t old = ctrl_;
            ctrl_ = value & (kCtrlEn | kCtrlShnMask);
            if ((old & kCtrlEn) && !(value & kCtrlEn)) {
                controller_reset_locked();
                ctrl_ = value & kCtrlShnMask;
            } else if (!(old & kCtrlEn) && (value & kCtrlEn)) {
                ready_at_ = Clock::now() + config_.ready_delay;
            }
            // Shutdown: the queue processor finishes what it fetched, then reports SHST complete.
            if ((value & kCtrlShnMask) == kCtrlShnNormal && (old & kCtrlShnMask) != kCtrlShnNormal) {
                if (ctrl_ & kCtrlEn) {
                    shst_ = kShstInProgress;
                    shutdown_pending_.store(true, std::memory_order_release);
                    queues_changed();
                } else {
                    shst_ = kShstComplete;
                }
            }
            break;
        }
        case kRegScratch: scratch_ = value; break;
        case kRegReset:
            if (value == kResetMagic) {
                controller_reset_locked();
                ctrl_ = 0;
            }
            break;
        case kRegErrStatus: err_status_ &= ~value; break;  // RW1C
        default: break;                                    // read-only and reserved registers ignore writes
    }
}

void SgqDevice::write_queue_register_locked(uint32_t qid, uint64_t reg, uint32_t value) {
    using namespace sgq;
    QueueRegs& q = queues_[qid];
    if (reg == kQRegCtrl) return write_q_ctrl_locked(qid, value);
    if (reg == kQRegCoal) {
        q.coal = value;
        queues_changed();
        return;
    }
    if (q.ctrl & kQCtrlEnable) return;  // base and size are fixed while the queue is enabled
    switch (reg) {
        case kQRegSqBase: set_low(q.sq_base, value); break;
        case kQRegSqBase + 4: set_high(q.sq_base, value); break;
        case kQRegCqBase: set_low(q.cq_base, value); break;
        case kQRegCqBase + 4: set_high(q.cq_base, value); break;
        case kQRegSqSize: q.sq_size = value; break;
        case kQRegCqSize: q.cq_size = value; break;
        default: break;
    }
}

void SgqDevice::write_q_ctrl_locked(uint32_t qid, uint32_t value) {
    using namespace sgq;
    QueueRegs& q = queues_[qid];
    const bool was_enabled = q.ctrl & kQCtrlEnable;
    const bool enable = value & kQCtrlEnable;
    const uint32_t writable = kQCtrlEnable | kQCtrlIen | 0xFFFF0000u;
    if (enable && !was_enabled && !(status_locked() & kStatusRdy)) {
        // ENABLE is ignored while the controller is not ready; the other fields take the write.
        q.ctrl = value & writable & ~kQCtrlEnable;
        return;
    }
    q.ctrl = value & writable;
    if (enable && !was_enabled) {
        const uint32_t mqes = config_.mqes;
        const bool bad = (q.sq_base & 0xFFF) || (q.cq_base & 0xFFF) || q.sq_size == 0 || q.sq_size > mqes ||
                         q.cq_size == 0 || q.cq_size > mqes;
        if (bad) {
            q.status = kQStatusError;
            log::logger<log::kModel>().warn(
                "queue {}: enable refused (SQ_BASE {:#x}, CQ_BASE {:#x}, SQ_SIZE {}, "
                "CQ_SIZE {}, MQES {}); Q_STATUS.ERROR set",
                qid, q.sq_base, q.cq_base, q.sq_size, q.cq_size, mqes);
            msix_.raise(0);
            return;
        }
        // A queue's doorbells read as 0 after it is enabled.
        doorbell(sq_tail_doorbell(qid, config_.dstrd)).store(0, std::memory_order_release);
        doorbell(cq_head_doorbell(qid, config_.dstrd)).store(0, std::memory_order_release);
        q.status = kQStatusEnabled;
        ++q.generation;
    } else if (!enable && !(q.status & kQStatusEnabled)) {
        q.status = 0;  // disabling clears the ERROR of an enable that was refused
    }
    // Disabling a running queue: the processor completes what it fetched, then clears ENABLED.
    queues_changed();
}

SgqDevice::QueueRegs SgqDevice::queue_config(uint32_t qid) {
    std::lock_guard lock(mutex_);
    return queues_[qid];
}

void SgqDevice::halt_queue(uint32_t qid, uint64_t generation, uint32_t err_bit, uint16_t cid, const char* why) {
    {
        std::lock_guard lock(mutex_);
        QueueRegs& q = queues_[qid];
        if (q.generation != generation || !(q.status & sgq::kQStatusEnabled)) return;
        q.status |= sgq::kQStatusError;
        err_status_ |= err_bit;
        err_qid_ = qid | uint32_t{cid} << 16;
    }
    log::logger<log::kModel>().warn("queue {}: {}; Q_STATUS.ERROR set, the queue is halted until disabled", qid, why);
    queues_changed();
    msix_.raise(0);
}

void SgqDevice::finish_disable(uint32_t qid, uint64_t generation) {
    {
        std::lock_guard lock(mutex_);
        QueueRegs& q = queues_[qid];
        if (q.generation != generation || (q.ctrl & sgq::kQCtrlEnable)) return;
        q.status = 0;
    }
    queues_changed();
}

void SgqDevice::finish_shutdown() {
    std::lock_guard lock(mutex_);
    if (!shutdown_pending_.exchange(false)) return;
    if (shst_ == sgq::kShstInProgress) shst_ = sgq::kShstComplete;
}

void SgqDevice::record_error(uint32_t err_bit, uint16_t qid, uint16_t cid) {
    std::lock_guard lock(mutex_);
    err_status_ |= err_bit;
    err_qid_ = uint32_t{qid} | uint32_t{cid} << 16;
}

void SgqDevice::count_completion(uint64_t bytes) {
    // The queue processor's thread is the only writer: a load and a store, no locked add.
    stat_cmds_.store(stat_cmds_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    stat_bytes_.store(stat_bytes_.load(std::memory_order_relaxed) + bytes, std::memory_order_relaxed);
}

Result<void> SgqDevice::publish32(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, uint64_t iova, uint32_t value) {
    DmaFault fault{};
    auto r = dma_.publish32(reader, iova, value, &fault);
    if (!r) record_dma_fault(qid, cid, fault.iova);
    return r;
}

void SgqDevice::controller_reset_locked() {
    fatal_ = false;
    fatal_flag_.store(false);
    hung_.store(false);
    shst_ = sgq::kShstNormal;
    scratch_ = 0;
    err_status_ = 0;
    err_qid_ = 0;
    err_addr_ = 0;
    // The counts belong to the queue processor's thread; a reset moves their zero instead.
    stat_cmds_base_ = stat_cmds_.load();
    stat_bytes_base_ = stat_bytes_.load();
    shutdown_pending_ = false;
    for (auto& q : queues_) q = QueueRegs{.generation = q.generation + 1};
    // Word by word, atomically: the host and the doorbell thread touch this page without the lock.
    for (uint64_t off = 0; off < sgq::kDoorbellPageSize; off += 4)
        doorbell(sgq::kDoorbellBase + off).store(0, std::memory_order_relaxed);
    // Every queue stops at once: the processor drops what it fetched.
    epoch_.fetch_add(1, std::memory_order_acq_rel);
    queues_changed();
}

void SgqDevice::record_dma_fault(uint16_t qid, uint16_t cid, uint64_t iova) {
    std::lock_guard lock(mutex_);
    err_status_ |= sgq::kErrDmaFault;
    err_qid_ = uint32_t{qid} | uint32_t{cid} << 16;
    err_addr_ = iova;
}

// Fault injection: DMA that touches the chosen IOVA fails as a refused IOMMU access would.
static bool poisoned(const ModelConfig& config, uint64_t iova, size_t len) {
    const auto& at = config.faults.dma_fault_iova;
    return at && *at >= iova && *at - iova < len;
}

std::byte* SgqDevice::local_ring(DmaSpace::Reader& reader, uint64_t iova, uint64_t bytes, bool to_host) const {
    // An injected fault in the ring is met entry by entry, where it is reported.
    if (poisoned(config_, iova, bytes)) return nullptr;
    return dma_.local(reader, iova, bytes, to_host);
}

Result<void> SgqDevice::dma_read(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, uint64_t iova,
                                 std::span<std::byte> out) {
    return dma_access(&reader, false, qid, cid, iova, out);
}

Result<void> SgqDevice::dma_write(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, uint64_t iova,
                                  std::span<const std::byte> in) {
    return dma_access(&reader, true, qid, cid, iova, {const_cast<std::byte*>(in.data()), in.size()});
}

Result<void> SgqDevice::dma_read(uint16_t qid, uint16_t cid, uint64_t iova, std::span<std::byte> out) {
    return dma_access(nullptr, false, qid, cid, iova, out);
}

Result<void> SgqDevice::dma_write(uint16_t qid, uint16_t cid, uint64_t iova, std::span<const std::byte> in) {
    return dma_access(nullptr, true, qid, cid, iova, {const_cast<std::byte*>(in.data()), in.size()});
}

Result<void> SgqDevice::dma_access(DmaSpace::Reader* reader, bool to_host, uint16_t qid, uint16_t cid, uint64_t iova,
                                   std::span<std::byte> data) {
    if (poisoned(config_, iova, data.size())) [[unlikely]] {
        record_dma_fault(qid, cid, *config_.faults.dma_fault_iova);
        return make_error(EFAULT, "injected DMA fault");
    }
    DmaFault fault{};
    Result<void> r;
    if (reader)
        r = to_host ? dma_.write(*reader, iova, data, &fault) : dma_.read(*reader, iova, data, &fault);
    else
        r = to_host ? dma_.write(iova, data, &fault) : dma_.read(iova, data, &fault);
    if (!r) record_dma_fault(qid, cid, fault.iova);
    return r;
}

void SgqDevice::function_reset() {
    {
        std::lock_guard lock(mutex_);
        controller_reset_locked();
        ctrl_ = 0;
    }
    settle_reset();
    msix_.reset();
}

void SgqDevice::settle_reset() {
    // The card's threads look at the epoch inside their DMA sections, so once every one that
    // was inside has left, nothing fetched before the reset moves data or posts a completion:
    // the host that reads STATUS.RDY = 0 after its write finds the card stopped (section 5).
    dma_.wait_for_readers();
}

uint64_t SgqDevice::commands_fetched() const { return processor_ ? processor_->fetched() : 0; }

void SgqDevice::client_disconnected() {
    dma_.clear();
    dma_.set_client_access(nullptr);
    msix_.release_all();
    // As silicon under vfio-pci is reset when the last file descriptor closes (device interface, section 6):
    // the next user finds a fresh card, and nothing moves data for a client that is gone.
    function_reset();
}

void SgqDevice::inject_command_status(uint16_t status, uint32_t count) {
    forced_status_.store(status);
    forced_count_.store(count);
}

int32_t SgqDevice::take_forced_status_slowly() {
    uint32_t n = forced_count_.load(std::memory_order_relaxed);
    while (n > 0)
        if (forced_count_.compare_exchange_weak(n, n - 1)) return forced_status_.load();
    return -1;
}

bool SgqDevice::corrupt_this_read() {
    const uint64_t every = config_.corrupt_reads_every;
    return every != 0 && (reads_seen_.fetch_add(1, std::memory_order_relaxed) + 1) % every == 0;
}

void SgqDevice::inject_fatal_error() {
    {
        std::lock_guard lock(mutex_);
        fatal_ = true;
        fatal_flag_.store(true);
    }
    msix_.raise(0);
}

void SgqDevice::remove(bool close_connection) {
    removed_.store(true);
    if (close_connection) {
        const uint64_t one = 1;
        if (::write(disconnect_fd_.get(), &one, sizeof(one)) < 0) {
            // Only a saturated counter fails, and then it is readable already.
        }
    }
}

}  // namespace vfioq::model
