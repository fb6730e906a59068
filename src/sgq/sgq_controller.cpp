// SPDX-License-Identifier: MIT
#include "sgq_controller.hpp"

#include <fmt/format.h>
#include <linux/pci_regs.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "io/engine_queue_pair.hpp"
#include "sgq_codec.hpp"
#include "vfioq/log.hpp"
#include "vfioq/sgq_identity.hpp"

namespace vfioq::sgq {

namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kIrqMsix = static_cast<uint32_t>(PciIrq::kMsix);

}  // namespace

Result<std::unique_ptr<Controller>> SgqController::open(Device& device, const ControllerOptions& options) {
    std::unique_ptr<SgqController> c(new SgqController(device));
    if (auto r = c->bring_up(options); !r) return r.error();
    return std::unique_ptr<Controller>(std::move(c));
}

SgqController::~SgqController() {
    if (auto r = shutdown(); !r) log::logger<log::kController>().error("{}", r.error().message);
}

Result<uint32_t> SgqController::reg32(uint64_t offset, const char* reg) {
    auto v = device_.read32(kRegisterBar, offset);
    if (!v) return v.error().with_context(fmt::format("reading {}", reg));
    return *v;
}

Result<void> SgqController::set_reg32(uint64_t offset, uint32_t value, const char* reg) {
    auto r = device_.write32(kRegisterBar, offset, value);
    if (!r) return r.error().with_context(fmt::format("writing {:#x} to {}", value, reg));
    return {};
}

Result<uint32_t> SgqController::wait_register(uint64_t offset, const char* reg,
                                              const std::function<bool(uint32_t)>& pred, const std::string& awaited,
                                              const std::function<void()>& between) {
    const auto deadline = Clock::now() + info_.ready_timeout;
    auto pause = std::chrono::microseconds(20);
    for (;;) {
        auto v = reg32(offset, reg);
        if (!v) return v.error();
        if (pred(*v)) return *v;
        if (*v == 0xFFFFFFFFu)
            if (auto gone = confirm_gone(reg, "waiting for " + awaited)) return *gone;
        if (Clock::now() > deadline)
            return make_error(ETIMEDOUT, fmt::format("{}: {} still reads {:#010x} after {} ms waiting for {}", name(),
                                                     reg, *v, info_.ready_timeout.count(), awaited));
        if (between) between();
        std::this_thread::sleep_for(pause);
        pause = std::min(pause * 2, std::chrono::microseconds(2000));
    }
}

std::optional<Error> SgqController::confirm_gone(const char* reg, const std::string& doing) {
    // No register of the card reads all-ones but a removed one; ID settles it.
    auto id = device_.read32(kRegisterBar, kRegId);
    if (id && *id != 0xFFFFFFFFu) return std::nullopt;
    const std::string why = fmt::format("{} and ID read all-ones while {}: the card was removed or is dead", reg, doing);
    device_.mark_gone(why);
    return make_error(ENODEV, fmt::format("{}: {}", name(), why));
}

Result<void> SgqController::bring_up(const ControllerOptions& options) {
    if (auto why = why_not_sgq(device_))
        return make_error(ENODEV, fmt::format("{}: not an SGQ card: {}", name(), *why));
    auto version = reg32(kRegVersion, "VERSION");
    if (!version) return version.error().with_context(name());
    if (*version >> 16 != 1)
        return make_error(ENOTSUP, fmt::format("{}: interface version {}.{} is not supported (major 1 is)", name(),
                                               *version >> 16, *version & 0xFFFF));
    auto cap = device_.read64(kRegisterBar, kRegCap);
    auto devmem = device_.read64(kRegisterBar, kRegDevmemSize);
    if (!cap) return cap.error().with_context(name() + ": reading CAP");
    if (!devmem) return devmem.error().with_context(name() + ": reading DEVMEM_SIZE");
    cap_ = Cap::decode(*cap);
    if (auto why = cap_.problem()) return make_error(EPROTO, fmt::format("{}: CAP {:#018x}: {}", name(), *cap, *why));
    info_.version = *version;
    info_.queue_pairs = cap_.nqp + 1;
    info_.max_queue_entries = cap_.mqes + 1;
    info_.devmem_size = *devmem;
    info_.max_transfer = cap_.max_transfer_bytes();
    info_.max_segments = cap_.max_sge;
    info_.segment_alignment = 1u << cap_.sge_align;
    info_.ready_timeout = options.ready_timeout.count() > 0
                              ? options.ready_timeout
                              : std::chrono::milliseconds(std::max<uint32_t>(cap_.timeout, 1) * 100);
    host_.set_layout({kRegisterBar, cap_.dstrd, sq_tail_doorbell, cq_head_doorbell, kSqEntrySize, kCqEntrySize, 0},
                     info_.queue_pairs);
    setups_.assign(info_.queue_pairs, QueueSetup{});

    // A controller left running by an earlier user is reset first: its queues point at memory that is gone.
    auto ctrl = reg32(kRegCtrl, "CTRL");
    auto status = reg32(kRegStatus, "STATUS");
    if (!ctrl || !status) return (ctrl ? status.error() : ctrl.error()).with_context(name());
    if ((*ctrl & kCtrlEn) || (*status & kStatusRdy)) {
        log::logger<log::kController>().info("{}: the controller was left enabled; resetting it", name());
        if (auto r = disable_controller(); !r) return r.error();
    }

    // The event vector (0) gets an eventfd now; queue vectors join as queue pairs are made.
    auto irq = device_.transport().irq_info(kIrqMsix);
    const uint32_t vectors = irq ? std::min(irq->count, info_.queue_pairs + 1) : 0;
    // Queue q uses vector q + 1; the contract's NQP + 1 vectors leave the last queue pair without one.
    info_.interrupt_queue_pairs = vectors > 0 ? std::min(vectors - 1, info_.queue_pairs) : 0;
    if (auto r = host_.open_vectors(vectors); !r) return r.error();
    if (vectors == 0)
        log::logger<log::kController>().warn("{}: no MSI-X vectors are offered; only polled queue pairs will work",
                                             name());

    // Bus mastering lets the card reach host memory (the kernel leaves it off).
    if (auto cmd = device_.config_read(PCI_COMMAND, 16); cmd && !(*cmd & PCI_COMMAND_MASTER))
        if (auto r = device_.config_write(PCI_COMMAND, 16, *cmd | PCI_COMMAND_MASTER); !r)
            return r.error().with_context(name() + ": enabling bus mastering");

    if (auto r = enable_controller(); !r) return r;
    host_.set_running(true);
    log::logger<log::kController>().info(
        "{}: SGQ controller {}.{} ready: {} queue pairs of up to {} entries, {} bytes of "
        "card memory, {} bytes and {} segments per command",
        name(), info_.version >> 16, info_.version & 0xFFFF, info_.queue_pairs, info_.max_queue_entries,
        info_.devmem_size, info_.max_transfer, info_.max_segments);
    return {};
}

Result<void> SgqController::enable_controller() {
    if (auto r = set_reg32(kRegCtrl, kCtrlEn, "CTRL"); !r) return r.error().with_context(name());
    auto ready = wait_register(
        kRegStatus, "STATUS", [](uint32_t v) { return (v & (kStatusRdy | kStatusCfs)) != 0; }, "RDY = 1 after EN = 1");
    if (!ready) return ready.error();
    if (*ready & kStatusCfs)
        return make_error(EIO, fmt::format("{}: STATUS.CFS (fatal controller status) is set after enabling; the "
                                           "card needs a reset",
                                           name()));
    return {};
}

Result<void> SgqController::disable_controller() {
    if (auto r = set_reg32(kRegCtrl, 0, "CTRL"); !r) return r.error().with_context(name());
    auto r = wait_register(
        kRegStatus, "STATUS", [](uint32_t v) { return !(v & kStatusRdy); }, "RDY = 0 after EN = 0");
    if (!r) return r.error();
    return {};
}

Result<std::unique_ptr<QueuePair>> SgqController::create_queue_pair(const QueuePairOptions& o) {
    std::lock_guard lock(host_.mutex());
    auto refuse = [&](int code, const std::string& why) {
        return make_error(code, fmt::format("{}: creating a queue pair: {}", name(), why));
    };
    if (!host_.running()) return refuse(EPIPE, "the controller is shut down");
    const auto free_qid = host_.free_qid();
    if (!free_qid) return refuse(EBUSY, fmt::format("all {} queue pairs of the card are in use", host_.slots()));
    const uint16_t qid = *free_qid;
    const uint32_t max_entries = std::min<uint32_t>(info_.max_queue_entries, 65536);
    if (o.depth == 0 || o.depth > 65535 || o.depth + 1 > max_entries)
        return refuse(EINVAL, fmt::format("depth {} is outside 1 .. {} (the card's rings hold {} entries)", o.depth,
                                          std::min<uint32_t>(max_entries - 1, 65535), max_entries));
    const uint32_t sq_entries = o.sq_entries ? o.sq_entries : o.depth + 1;
    const uint32_t cq_entries = o.cq_entries ? o.cq_entries : o.depth + 1;
    if (sq_entries < o.depth + 1 || sq_entries > max_entries)
        return refuse(EINVAL, fmt::format("{} SQ entries cannot hold {} outstanding commands (need depth + 1 "
                                          "..{})",
                                          sq_entries, o.depth, max_entries));
    if (cq_entries < 2 || cq_entries > max_entries)
        return refuse(EINVAL, fmt::format("{} CQ entries is outside 2 .. {}", cq_entries, max_entries));
    const uint32_t vector = qid + 1u;
    if (o.interrupts && vector >= host_.vector_count())
        return refuse(ENOSPC, fmt::format("queue {} would use MSI-X vector {} and the card offers {}", qid, vector,
                                          host_.vector_count()));
    if (o.poll_batch == 0) return refuse(EINVAL, "poll batch must be at least 1");

    io::QueuePairResources res;
    res.qid = qid;
    res.depth = o.depth;
    res.sq_entries = sq_entries;
    res.cq_entries = cq_entries;
    res.poll_batch = o.poll_batch;
    res.command_timeout = o.command_timeout;
    res.sgl_page_count = o.sgl_pages ? o.sgl_pages : std::max<uint32_t>(16, o.depth / 4);
    if (auto r = host_.allocate_rings(res); !r) return r.error();
    if (o.interrupts)
        if (auto r = host_.arm_queue_vector(qid, vector, res); !r) return r.error();
    auto fail = [&](Error e) {
        host_.disarm_queue_vector(qid);
        return e.with_context(fmt::format("{}: queue {}", name(), qid));
    };
    auto& dma = device_.dma();
    // A queue left enabled (by a crashed program, or a disable the card never finished) ignores
    // new base and size registers: disable it first, or say why it cannot be used.
    auto status = reg32(queue_register(qid, kQRegStatus), "Q_STATUS");
    if (!status) return fail(status.error());
    if (*status & kQStatusEnabled) {
        if (auto r = disable_queue(qid, {}); !r)
            return fail(r.error().with_context("the queue is still enabled on the card and does not disable; reset "
                                               "the controller"));
    }
    auto sq_base = dma.device_address(res.sq.iova(), res.sq.size());
    if (!sq_base) return fail(sq_base.error().with_context("submission ring"));
    auto cq_base = dma.device_address(res.cq.iova(), res.cq.size());
    if (!cq_base) return fail(cq_base.error().with_context("completion ring"));
    setups_[qid] = QueueSetup{*sq_base,
                              *cq_base,
                              sq_entries,
                              cq_entries,
                              uint32_t{o.coalesce_entries} | uint32_t{o.coalesce_usecs} << 16,
                              kQCtrlEnable | (o.interrupts ? kQCtrlIen | vector << kQCtrlVectorShift : 0)};
    if (auto r = start_queue_locked(qid); !r) return fail(r.error());
    const dma::SglLimits limits{cap_.max_sge, cap_.sge_align, cap_.max_xfer};
    auto qp = std::make_unique<io::EngineQueuePair>(*this, std::make_unique<SgqCodec>(limits, info_.devmem_size, dma.bus_map()),
                                                    std::move(res), limits.max_sge, dma);
    host_.attach(qid, qp.get());
    log::logger<log::kController>().debug("{}: queue pair {} enabled: depth {}, {} SQ / {} CQ entries, {}", name(), qid,
                                          o.depth, sq_entries, cq_entries,
                                          o.interrupts ? fmt::format("interrupts on vector {}", vector) : "polled");
    return std::unique_ptr<QueuePair>(std::move(qp));
}

Result<void> SgqController::start_queue_locked(uint16_t qid) {
    const QueueSetup& q = setups_[qid];
    auto write64 = [&](uint64_t reg, uint64_t v) { return device_.write64(kRegisterBar, queue_register(qid, reg), v); };
    auto write32 = [&](uint64_t reg, uint32_t v) { return device_.write32(kRegisterBar, queue_register(qid, reg), v); };
    for (auto r : {write64(kQRegSqBase, q.sq_base), write64(kQRegCqBase, q.cq_base),
                   write32(kQRegSqSize, q.sq_entries - 1), write32(kQRegCqSize, q.cq_entries - 1),
                   write32(kQRegCoal, q.coal)})
        if (!r) return r.error();
    if (auto r = write32(kQRegCtrl, q.q_ctrl); !r) return r.error();
    auto st = wait_register(
        queue_register(qid, kQRegStatus), "Q_STATUS",
        [](uint32_t v) { return (v & (kQStatusEnabled | kQStatusError)) != 0; }, "ENABLED after Q_CTRL.ENABLE");
    if (!st) return st.error();
    if (*st & kQStatusError) {
        (void)write32(kQRegCtrl, 0);
        return make_error(EIO, fmt::format("the card refused to enable it (Q_STATUS.ERROR): SQ_BASE {:#x}, "
                                           "CQ_BASE {:#x}, SQ_SIZE {}, CQ_SIZE {}",
                                           q.sq_base, q.cq_base, q.sq_entries - 1, q.cq_entries - 1));
    }
    return {};
}

Result<void> SgqController::enable_queue(uint16_t qid) {
    std::lock_guard lock(host_.mutex());
    if (!host_.running())
        return make_error(EPIPE, fmt::format("{}: queue {}: the controller is shut down", name(), qid));
    if (auto r = start_queue_locked(qid); !r)
        return r.error().with_context(fmt::format("{}: enabling queue {} again", name(), qid));
    return {};
}

Result<void> SgqController::reset_controller(const std::string& why) {
    std::lock_guard lock(host_.mutex());
    if (!host_.running()) return make_error(EPIPE, fmt::format("{}: the controller is shut down", name()));
    log::logger<log::kController>().warn("{}: resetting the controller: {}", name(), why);
    // Every queue stops at once; each queue pair learns of it from health_ and reclaims its own commands.
    auto down = disable_controller();
    health_.resets.fetch_add(1, std::memory_order_release);
    if (!down) return down.error().with_context("resetting the controller");
    if (auto r = enable_controller(); !r) return r.error().with_context("bringing the controller back after a reset");
    host_.wake_queue_vectors();
    return {};
}

Result<void> SgqController::disable_queue(uint16_t qid, const std::function<void()>& drain) {
    // A controller in fatal status does nothing until reset: do not wait for it.
    auto status = reg32(kRegStatus, "STATUS");
    if (!status) return status.error().with_context(fmt::format("{}: disabling queue {}", name(), qid));
    if (*status == 0xFFFFFFFFu)
        if (auto gone = confirm_gone("STATUS", fmt::format("disabling queue {}", qid))) return *gone;
    if (*status & kStatusCfs)
        return make_error(EIO, fmt::format("{}: disabling queue {}: STATUS.CFS (fatal controller status) is set; "
                                           "the controller needs a reset",
                                           name(), qid));
    const uint64_t ctrl = queue_register(qid, kQRegCtrl);
    if (auto r = device_.write32(kRegisterBar, ctrl, 0); !r)
        return r.error().with_context(fmt::format("{}: disabling queue {}", name(), qid));
    auto r = wait_register(
        queue_register(qid, kQRegStatus), "Q_STATUS", [](uint32_t v) { return !(v & kQStatusEnabled); },
        fmt::format("queue {} to clear ENABLED after Q_CTRL.ENABLE = 0", qid), drain);
    if (!r) return r.error();
    return {};
}

void SgqController::release_queue(uint16_t qid, QueuePair* qp) {
    std::lock_guard lock(host_.mutex());
    host_.release(qid, qp);
}

Result<void> SgqController::shutdown() {
    if (!host_.close_all()) return {};
    Result<void> result;
    if (device_.gone()) {
        // Nothing to shut down: the card is not there to hear it.
        host_.close_vectors();
        return {};
    }
    if (auto r = set_reg32(kRegCtrl, kCtrlEn | kCtrlShnNormal, "CTRL"); !r) {
        result = r.error().with_context(name());
    } else {
        auto done = wait_register(
            kRegStatus, "STATUS",
            [](uint32_t v) { return ((v & kStatusShstMask) >> kStatusShstShift) == kShstComplete; },
            "SHST = complete after CTRL.SHN = normal");
        if (!done) result = done.error();
    }
    if (auto r = disable_controller(); !r && result) result = r.error();
    host_.close_vectors();
    return result;
}

}  // namespace vfioq::sgq
