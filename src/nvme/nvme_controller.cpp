// SPDX-License-Identifier: MIT
#include "nvme_controller.hpp"

#include <fmt/format.h>
#include <linux/pci_regs.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>

#include "io/engine_queue_pair.hpp"
#include "vfioq/log.hpp"

namespace vfioq::nvme {

namespace {
using Clock = std::chrono::steady_clock;
constexpr uint32_t kBar = 0;
constexpr uint32_t kAdminEntries = 32;
constexpr uint32_t kIrqMsix = static_cast<uint32_t>(PciIrq::kMsix);

template <typename T>
T field(const std::byte* data, size_t offset) {
    T v;
    std::memcpy(&v, data + offset, sizeof(T));
    return v;
}

void set_prp1(Command& c, uint64_t iova) {
    c.dw[6] = static_cast<uint32_t>(iova);
    c.dw[7] = static_cast<uint32_t>(iova >> 32);
}

std::string text_field(const std::byte* data, size_t offset, size_t len) {
    std::string s(reinterpret_cast<const char*>(data) + offset, len);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
    return s;
}
}  // namespace

Result<std::unique_ptr<Controller>> NvmeController::open(Device& device, const ControllerOptions& options) {
    std::unique_ptr<NvmeController> c(new NvmeController(device));
    if (auto r = c->bring_up(options); !r) return r.error();
    return std::unique_ptr<Controller>(std::move(c));
}

NvmeController::~NvmeController() {
    if (auto r = shutdown(); !r) log::logger<log::kController>().error("{}", r.error().message);
}

Result<uint32_t> NvmeController::wait_csts(const std::function<bool(uint32_t)>& pred, const char* awaited) {
    const auto deadline = Clock::now() + info_.ready_timeout;
    for (;;) {
        auto v = device_.read32(kBar, kRegCsts);
        if (!v) return v.error().with_context("reading CSTS");
        if (pred(*v)) return *v;
        if (*v == 0xFFFFFFFFu)
            return make_error(ENODEV, fmt::format("{}: CSTS reads all-ones waiting for {}: the controller is gone",
                                                  name(), awaited));
        if (Clock::now() > deadline)
            return make_error(ETIMEDOUT, fmt::format("{}: CSTS still reads {:#x} after {} ms waiting for {}", name(),
                                                     *v, info_.ready_timeout.count(), awaited));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
}

Result<void> NvmeController::bring_up(const ControllerOptions& options) {
    auto cap = device_.read64(kBar, kRegCap);
    auto vs = device_.read32(kBar, kRegVs);
    if (!cap || !vs) return (cap ? vs.error() : cap.error()).with_context(name() + ": reading CAP and VS");
    if (*cap == ~0ull) return make_error(ENODEV, name() + ": CAP reads all-ones: the controller is gone");
    cap_ = Cap::decode(*cap);
    if (!cap_.nvm_command_set || cap_.mpsmin != 0)
        return make_error(ENOTSUP, fmt::format("{}: CAP {:#x}: needs the NVM command set and 4 KiB pages", name(),
                                               *cap));
    if (cap_.mqes == 0)
        return make_error(
            EPROTO, fmt::format("{}: CAP {:#x}: MQES 0 is reserved (an I/O queue needs two entries)", name(), *cap));
    // DSTRD is a shift of at most 15, but doorbells it spreads past BAR0 cannot be rung.
    if (const uint64_t bar = device_.bar_size(kBar); cq_head_doorbell(0, cap_.dstrd) + 4 > bar)
        return make_error(EPROTO, fmt::format("{}: CAP {:#x}: DSTRD {} puts the admin doorbells beyond BAR0 ({:#x} "
                                              "bytes)",
                                              name(), *cap, cap_.dstrd, bar));
    // Queue 0 is the admin queue: its doorbells are placed here, I/O queues take 1 and up.
    const io::QueueLayout layout{kBar, cap_.dstrd, sq_tail_doorbell, cq_head_doorbell, 64, 16, 1};
    host_.set_layout(layout, 1);
    info_.kind = "NVMe";
    info_.version = *vs;
    info_.max_queue_entries = cap_.mqes + 1;
    info_.ready_timeout = options.ready_timeout.count() > 0
                              ? options.ready_timeout
                              : std::chrono::milliseconds(std::max<uint32_t>(cap_.timeout, 1) * 500);
    if (auto cmd = device_.config_read(PCI_COMMAND, 16); cmd && !(*cmd & PCI_COMMAND_MASTER))
        if (auto r = device_.config_write(PCI_COMMAND, 16, *cmd | PCI_COMMAND_MASTER); !r)
            return r.error().with_context(name() + ": enabling bus mastering");
    auto cc = device_.read32(kBar, kRegCc);
    if (!cc) return cc.error();
    if (*cc & kCcEnable) {
        if (auto r = device_.write32(kBar, kRegCc, 0); !r) return r.error();
        if (auto r = wait_csts([](uint32_t v) { return !(v & kCstsRdy); }, "RDY = 0 after CC.EN = 0"); !r)
            return r.error();
    }
    // MSI-X before CC.EN: QEMU's controller, at least, never signals vectors set up later.
    auto irq = device_.transport().irq_info(kIrqMsix);
    const uint32_t vectors = irq ? std::min<uint32_t>(irq->count, 65) : 0;
    if (auto r = host_.open_vectors(vectors); !r) return r.error();
    auto& dma = device_.dma();
    auto sq = dma.allocate(kAdminEntries * 64), cq = dma.allocate(kAdminEntries * 16), id = dma.allocate(4096);
    if (!sq || !cq || !id) return (!sq ? sq.error() : !cq ? cq.error() : id.error()).with_context(name() + ": admin queue");
    asq_ = std::move(*sq);
    acq_ = std::move(*cq);
    identify_ = std::move(*id);
    auto asq_addr = dma.device_address(asq_.iova(), asq_.size()), acq_addr = dma.device_address(acq_.iova(), acq_.size());
    auto id_addr = dma.device_address(identify_.iova(), identify_.size());
    if (!asq_addr || !acq_addr || !id_addr)
        return (!asq_addr ? asq_addr.error() : !acq_addr ? acq_addr.error() : id_addr.error())
            .with_context(name() + ": admin queue");
    identify_address_ = *id_addr;
    std::memset(acq_.data(), 0, acq_.size());
    engine::RingConfig rc;
    rc.qid = 0;
    rc.sq = asq_.data();
    rc.sq_entries = kAdminEntries;
    rc.cq = acq_.data();
    rc.cq_entries = kAdminEntries;
    rc.max_outstanding = kAdminEntries - 1;
    host_.place_doorbell(rc.sq_tail, sq_tail_doorbell(0, cap_.dstrd));
    host_.place_doorbell(rc.cq_head, cq_head_doorbell(0, cap_.dstrd));
    admin_ = engine::QueueEngine(rc);
    for (auto r : {device_.write32(kBar, kRegAqa, (kAdminEntries - 1) << 16 | (kAdminEntries - 1)),
                   device_.write64(kBar, kRegAsq, *asq_addr), device_.write64(kBar, kRegAcq, *acq_addr),
                   device_.write32(kBar, kRegCc, kCcEnable | kCcIosqes | kCcIocqes)})
        if (!r) return r.error().with_context(name() + ": programming the admin queue");
    auto ready = wait_csts([](uint32_t v) { return (v & (kCstsRdy | kCstsCfs)) != 0; }, "RDY = 1 after CC.EN = 1");
    if (!ready) return ready.error();
    if (*ready & kCstsCfs) return make_error(EIO, name() + ": CSTS.CFS (controller fatal status) after enabling");
    host_.set_running(true);

    Command c{};
    c.dw[0] = kAdminIdentify;
    set_prp1(c, identify_address_);
    c.dw[10] = 1;  // controller
    if (auto r = admin(c, "Identify controller"); !r) return r.error();
    const std::byte* idc = identify_.data();
    const uint8_t mdts = field<uint8_t>(idc, 77);
    const uint16_t oacs = field<uint16_t>(idc, kIdentifyOacs);
    const uint32_t sgls = field<uint32_t>(idc, 536);
    const std::string model = text_field(idc, 24, 40), serial = text_field(idc, 4, 20);
    c = Command{};
    c.dw[0] = kAdminIdentify;
    c.dw[1] = ns_.nsid;
    set_prp1(c, identify_address_);
    c.dw[10] = 0;  // namespace
    if (auto r = admin(c, "Identify namespace 1"); !r) return r.error();
    const std::byte* idn = identify_.data();
    ns_.blocks = field<uint64_t>(idn, 0);
    const uint8_t format = field<uint8_t>(idn, 26) & 0xF;
    // Both are shifts by what the controller reports: out of range, they would be undefined.
    const uint8_t lbads = field<uint8_t>(idn, 128 + 4 * format + 2);
    if (lbads < 9 || lbads > 16)
        return make_error(ENOTSUP, fmt::format("{}: namespace 1's LBA format {} has a data size of 2^{} bytes; "
                                               "vfioq drives 512 B to 64 KiB blocks",
                                               name(), format, lbads));
    ns_.block_size = 1u << lbads;
    if (ns_.blocks == 0) return make_error(ENODEV, name() + ": namespace 1 is empty or not attached");
    // MDTS counts 4 KiB pages (CAP.MPSMIN, which QEMU and vfioq take as 4 KiB) as a power of two;
    // beyond 1 GiB a command is as good as unlimited.
    ns_.max_transfer = mdts ? (uint64_t{4096} << std::min<uint8_t>(mdts, 18)) : (uint64_t{2} << 20);
    ns_.sgl = (sgls & 3) != 0 && !options.nvme_use_prp;
    // SGLs: one segment array of at most 256 descriptors (one page). Longer lists would
    // chain arrays, and QEMU 7.2's controller refuses chains of three or more
    // (it reads each array over the descriptor that pointed to it).
    ns_.max_segments = ns_.sgl ? dma::kSglPerPage : static_cast<uint32_t>(ns_.max_transfer / 4096 + 1);
    c = Command{};
    c.dw[0] = kAdminSetFeatures;
    c.dw[10] = kFeatureNumberOfQueues;
    const uint32_t want = std::max<uint32_t>(1, std::min<uint32_t>(64, vectors ? vectors - 1 : 64));
    c.dw[11] = (want - 1) | (want - 1) << 16;
    auto nq = admin(c, "Set Features (number of queues)");
    if (!nq) return nq.error();
    const uint32_t queues = std::min(*nq & 0xFFFF, *nq >> 16) + 1;
    info_.queue_pairs = std::min(queues, want);
    // I/O queue q uses vector q; vector 0 is the admin queue's.
    info_.interrupt_queue_pairs = vectors > 0 ? std::min(vectors - 1, info_.queue_pairs) : 0;
    info_.devmem_size = ns_.blocks * ns_.block_size;
    info_.block_size = ns_.block_size;
    info_.max_transfer = ns_.max_transfer;
    info_.max_segments = ns_.max_segments;
    // PRPs need pages except at the ends of a transfer; whole pages say that simply.
    info_.segment_alignment = ns_.sgl ? ((sgls & 3) == 2 ? 4 : 1) : 4096;
    host_.set_layout(layout, info_.queue_pairs + 1);
    if (options.nvme_shadow_doorbells && (oacs & kOacsDoorbellBufferConfig)) configure_shadow_doorbells();
    log::logger<log::kController>().info(
        "{}: NVMe {}.{} controller '{}' (serial {}) ready: namespace 1 of {} blocks of {} "
        "bytes, {} I/O queues of up to {} entries, {} bytes per command, data by {}, {} doorbells",
        name(), *vs >> 16, (*vs >> 8) & 0xFF, model, serial, ns_.blocks, ns_.block_size, info_.queue_pairs,
        info_.max_queue_entries, ns_.max_transfer, ns_.sgl ? "SGL" : "PRP", shadow_ ? "shadow" : "plain");
    return {};
}

void NvmeController::configure_shadow_doorbells() {
    auto& dma = device_.dma();
    // One word per doorbell, at the doorbell's own offset from 0x1000, whole pages.
    const uint64_t size =
        (cq_head_doorbell(info_.queue_pairs, cap_.dstrd) - kDoorbellBase + 4 + 4095) & ~uint64_t{4095};
    auto shadow = dma.allocate(size), event_idx = dma.allocate(size);
    auto refuse = [&](const Error& e) {
        log::logger<log::kController>().warn("{}: plain doorbells: shadow doorbells not set up: {}", name(), e.message);
    };
    if (!shadow || !event_idx) return refuse(!shadow ? shadow.error() : event_idx.error());
    std::memset(shadow->data(), 0, size);
    std::memset(event_idx->data(), 0, size);
    auto shadow_addr = dma.device_address(shadow->iova(), size),
         event_addr = dma.device_address(event_idx->iova(), size);
    if (!shadow_addr || !event_addr) return refuse(!shadow_addr ? shadow_addr.error() : event_addr.error());
    Command c{};
    c.dw[0] = kAdminDoorbellBufferConfig;
    set_prp1(c, *shadow_addr);
    c.dw[8] = static_cast<uint32_t>(*event_addr);
    c.dw[9] = static_cast<uint32_t>(*event_addr >> 32);
    if (auto r = admin(c, "Doorbell Buffer Config"); !r) return refuse(r.error());
    shadow_ = std::move(*shadow);
    event_idx_ = std::move(*event_idx);
    // The admin queue keeps its registers, as other drivers do, with the shadow mirroring
    // them: a controller that reads the admin queue's shadow too then reads the truth.
    engine::Doorbell sq = admin_.sq_doorbell(), cq = admin_.cq_doorbell();
    sq.shadow =
        reinterpret_cast<volatile uint32_t*>(shadow_.data() + (sq_tail_doorbell(0, cap_.dstrd) - kDoorbellBase));
    cq.shadow =
        reinterpret_cast<volatile uint32_t*>(shadow_.data() + (cq_head_doorbell(0, cap_.dstrd) - kDoorbellBase));
    *sq.shadow = admin_.sq_tail();
    *cq.shadow = admin_.cq_head();
    admin_.set_doorbells(sq, cq);
}

void NvmeController::shadow_queue_doorbells(io::QueuePairResources& res) {
    if (!shadow_) return;
    auto word = [](DmaBuffer& b, uint64_t doorbell) {
        return reinterpret_cast<volatile uint32_t*>(b.data() + (doorbell - kDoorbellBase));
    };
    const uint64_t sq_off = sq_tail_doorbell(res.qid, cap_.dstrd), cq_off = cq_head_doorbell(res.qid, cap_.dstrd);
    // A queue id used before leaves its old tail, head and event indexes behind: a stale
    // event index would hold back the first doorbell of the new queue.
    for (auto* w : {word(shadow_, sq_off), word(shadow_, cq_off), word(event_idx_, sq_off), word(event_idx_, cq_off)})
        *w = 0;
    res.sq_doorbell.shadow = word(shadow_, sq_off);
    res.sq_doorbell.event_idx = word(event_idx_, sq_off);
    res.sq_doorbell.entries = res.sq_entries;
    res.sq_doorbell.last = 0;
    // The CQ head's shadow mirrors its register, which is always written. QEMU's controller
    // resumes posting into a CQ it found full only on that register write, and the CQ event
    // index it leaves is the head it had before it read the shadow: a driver that trusts it
    // can move the head of a full CQ past it unannounced, and the queue stops for good.
    res.cq_doorbell.shadow = word(shadow_, cq_off);
    res.cq_doorbell.event_idx = nullptr;
    res.cq_doorbell.entries = res.cq_entries;
    res.cq_doorbell.last = 0;
}

Result<uint32_t> NvmeController::admin(Command cmd, const std::string& what) {
    std::lock_guard lock(admin_mutex_);
    const int32_t cid = admin_.acquire_cid();
    if (cid < 0) return make_error(EBUSY, fmt::format("{}: {}: the admin queue is full", name(), what));
    cmd.dw[0] = (cmd.dw[0] & 0xFFFF) | static_cast<uint32_t>(cid) << 16;
    std::memcpy(admin_.sq_slot(), &cmd, sizeof(cmd));
    admin_.push();
    admin_.ring_sq();
    const auto deadline = Clock::now() + std::max(info_.ready_timeout, std::chrono::milliseconds(5000));
    std::optional<engine::CqEntry> done;
    while (!done) {
        admin_.poll(8, [&](uint16_t, const engine::CqEntry& e) {
            if (e.cid == cid) done = e;
        });
        if (done) break;
        if (Clock::now() > deadline)
            return make_error(ETIMEDOUT, fmt::format("{}: {} did not complete", name(), what));
        std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
    if (done->status() != 0)
        return make_error(EIO, fmt::format("{}: {} failed: status type {}, code {:#x} ({})", name(), what,
                                           (done->status() >> 8) & 7, done->status() & 0xFF,
                                           io_status_name(decode_status(done->status()))));
    return done->dw0;
}

Result<std::unique_ptr<QueuePair>> NvmeController::create_queue_pair(const QueuePairOptions& o) {
    std::lock_guard lock(host_.mutex());
    auto refuse = [&](int code, const std::string& why) {
        return make_error(code, fmt::format("{}: creating a queue pair: {}", name(), why));
    };
    if (!host_.running()) return refuse(EPIPE, "the controller is shut down");
    const auto free_qid = host_.free_qid();
    if (!free_qid) return refuse(EBUSY, fmt::format("all {} I/O queues are in use", info_.queue_pairs));
    const uint16_t qid = *free_qid;
    const uint32_t max_entries = info_.max_queue_entries;
    if (o.depth == 0 || o.depth + 1 > max_entries)
        return refuse(EINVAL, fmt::format("depth {} is outside 1 .. {} (MQES)", o.depth, max_entries - 1));
    const uint32_t sq_entries = o.sq_entries ? o.sq_entries : o.depth + 1;
    const uint32_t cq_entries = o.cq_entries ? o.cq_entries : o.depth + 1;
    if (sq_entries < o.depth + 1 || sq_entries > max_entries || cq_entries < 2 || cq_entries > max_entries)
        return refuse(EINVAL, fmt::format("{} SQ / {} CQ entries do not fit depth {} and MQES {}", sq_entries,
                                          cq_entries, o.depth, max_entries - 1));
    if (o.interrupts && qid >= host_.vector_count())
        return refuse(ENOSPC, fmt::format("queue {} would use MSI-X vector {} of {}", qid, qid, host_.vector_count()));
    io::QueuePairResources res;
    res.qid = qid;
    res.depth = o.depth;
    res.sq_entries = sq_entries;
    res.cq_entries = cq_entries;
    res.poll_batch = o.poll_batch ? o.poll_batch : 256;
    res.command_timeout = o.command_timeout;
    res.sgl_page_count = o.sgl_pages ? o.sgl_pages : std::max<uint32_t>(16, o.depth / 4);
    if (auto r = host_.allocate_rings(res); !r) return r.error();
    shadow_queue_doorbells(res);
    auto& dma = device_.dma();
    auto cq_addr = dma.device_address(res.cq.iova(), res.cq.size());
    auto sq_addr = dma.device_address(res.sq.iova(), res.sq.size());
    if (!cq_addr || !sq_addr)
        return (!cq_addr ? cq_addr.error().with_context("completion queue")
                         : sq_addr.error().with_context("submission queue"))
            .with_context(fmt::format("{}: queue {}", name(), qid));
    const uint32_t vector = o.interrupts ? qid : 0;
    if (o.interrupts)
        if (auto r = host_.arm_queue_vector(qid, vector, res); !r) return r.error();
    auto fail = [&](Error e) {
        host_.disarm_queue_vector(qid);
        return e;
    };
    Command c{};
    c.dw[0] = kAdminCreateCq;
    set_prp1(c, *cq_addr);
    c.dw[10] = (cq_entries - 1) << 16 | qid;
    c.dw[11] = vector << 16 | (o.interrupts ? 2u : 0u) | 1u;  // IV, IEN, physically contiguous
    if (auto r = admin(c, fmt::format("Create I/O CQ {}", qid)); !r) return fail(r.error());
    c = Command{};
    c.dw[0] = kAdminCreateSq;
    set_prp1(c, *sq_addr);
    c.dw[10] = (sq_entries - 1) << 16 | qid;
    c.dw[11] = uint32_t{qid} << 16 | 1u;  // its CQ, physically contiguous
    if (auto r = admin(c, fmt::format("Create I/O SQ {}", qid)); !r) {
        Command d{};
        d.dw[0] = kAdminDeleteCq;
        d.dw[10] = qid;
        (void)admin(d, "Delete I/O CQ");
        return fail(r.error());
    }
    auto qp = std::make_unique<io::EngineQueuePair>(*this, std::make_unique<NvmeCodec>(ns_, dma.bus_map()), std::move(res),
                                                    ns_.max_segments, dma);
    host_.attach(qid, qp.get());
    return std::unique_ptr<QueuePair>(std::move(qp));
}

Result<void> NvmeController::disable_queue(uint16_t qid, const std::function<void()>& drain) {
    // Deleting the SQ aborts what it holds; those completions land in the CQ, drained before it goes.
    Command c{};
    c.dw[0] = kAdminDeleteSq;
    c.dw[10] = qid;
    auto r = admin(c, fmt::format("Delete I/O SQ {}", qid));
    if (drain) drain();
    c.dw[0] = kAdminDeleteCq;
    auto r2 = admin(c, fmt::format("Delete I/O CQ {}", qid));
    if (!r) return r.error();
    if (!r2) return r2.error();
    return {};
}

Result<void> NvmeController::enable_queue(uint16_t qid) {
    return make_error(ENOTSUP, fmt::format("{}: queue {}: the NVMe profile does not re-create a queue after a "
                                           "timeout; close the queue pair and create another",
                                           name(), qid));
}

Result<void> NvmeController::reset_controller(const std::string& why) {
    return make_error(ENOTSUP, fmt::format("{}: the NVMe profile does not reset the controller to recover ({})",
                                           name(), why));
}

void NvmeController::release_queue(uint16_t qid, QueuePair* qp) {
    std::lock_guard lock(host_.mutex());
    host_.release(qid, qp);
}

Result<void> NvmeController::shutdown() {
    if (!host_.close_all()) return {};
    Result<void> result;
    if (auto r = device_.write32(kBar, kRegCc, kCcEnable | kCcIosqes | kCcIocqes | kCcShnNormal); !r)
        result = r.error();
    else if (auto s = wait_csts([](uint32_t v) { return (v & kCstsShstMask) == kCstsShstComplete; },
                                "shutdown complete");
             !s)
        result = s.error();
    (void)device_.write32(kBar, kRegCc, 0);
    host_.close_vectors();
    return result;
}

}  // namespace vfioq::nvme
