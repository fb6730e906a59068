// SPDX-License-Identifier: MIT
#include "queue_host.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "engine_queue_pair.hpp"
#include "vfioq/log.hpp"

namespace vfioq::io {
namespace {

constexpr uint32_t kIrqMsix = static_cast<uint32_t>(PciIrq::kMsix);

Result<UniqueFd> new_eventfd(const std::string& device, uint32_t vector) {
    UniqueFd fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!fd)
        return make_error(errno,
                          fmt::format("{}: an eventfd for MSI-X vector {}: {}", device, vector, std::strerror(errno)));
    return fd;
}

}  // namespace

void QueueHost::set_layout(const QueueLayout& layout, uint32_t slots) {
    layout_ = layout;
    queues_.assign(slots, nullptr);
    vector_of_.assign(slots, -1);
}

std::optional<uint16_t> QueueHost::free_qid() const {
    auto slot =
        std::find(queues_.begin() + std::min<size_t>(layout_.first_qid, queues_.size()), queues_.end(), nullptr);
    if (slot == queues_.end()) return std::nullopt;
    return static_cast<uint16_t>(slot - queues_.begin());
}

void QueueHost::release(uint16_t qid, const QueuePair* qp) {
    if (qid >= queues_.size() || queues_[qid] != qp) return;
    queues_[qid] = nullptr;
    disarm_queue_vector(qid);
}

Result<void> QueueHost::apply_vectors() {
    // The whole table is set at once: a kernel may not take vectors one at a time.
    std::vector<int> fds;
    for (const auto& fd : vector_fds_) fds.push_back(fd ? fd.get() : -1);
    if (auto r = device_.transport().set_irq_eventfds(kIrqMsix, 0, fds); !r)
        return r.error().with_context(device_.name() + ": assigning MSI-X eventfds");
    return {};
}

Result<void> QueueHost::open_vectors(uint32_t count) {
    vector_fds_.clear();
    vector_fds_.resize(count);
    if (count == 0) return {};
    auto fd = new_eventfd(device_.name(), 0);
    if (!fd) return fd.error();
    vector_fds_[0] = std::move(*fd);
    return apply_vectors();
}

int QueueHost::vector_fd(uint32_t vector) const { return vector < vector_fds_.size() ? vector_fds_[vector].get() : -1; }

Result<void> QueueHost::arm_queue_vector(uint16_t qid, uint32_t vector, QueuePairResources& res) {
    auto fd = new_eventfd(device_.name(), vector);
    if (!fd) return fd.error();
    UniqueFd copy(::dup(fd->get()));
    if (!copy)
        return make_error(errno, fmt::format("{}: queue {}: duplicating the eventfd of vector {}: {}", device_.name(),
                                             qid, vector, std::strerror(errno)));
    vector_fds_[vector] = std::move(*fd);
    if (auto r = apply_vectors(); !r) {
        vector_fds_[vector].reset();
        return r.error();
    }
    vector_of_[qid] = static_cast<int>(vector);
    res.event_fd = std::move(copy);
    res.vector = static_cast<int>(vector);
    return {};
}

void QueueHost::disarm_queue_vector(uint16_t qid) {
    const int vector = qid < vector_of_.size() ? vector_of_[qid] : -1;
    if (vector < 0) return;
    vector_of_[qid] = -1;
    if (static_cast<uint32_t>(vector) >= vector_fds_.size() || !vector_fds_[vector]) return;
    vector_fds_[vector].reset();
    if (auto r = apply_vectors(); !r) log::logger<log::kController>().warn("{}", r.error().message);
}

void QueueHost::wake_queue_vectors() {
    const uint64_t one = 1;
    for (size_t v = 1; v < vector_fds_.size(); ++v)
        if (vector_fds_[v] && ::write(vector_fds_[v].get(), &one, sizeof(one)) < 0 && errno != EAGAIN)
            // EAGAIN is a saturated counter: that waiter wakes anyway.
            log::logger<log::kController>().warn("{}: waking the waiter of vector {}: {}", device_.name(), v,
                                                 std::strerror(errno));
}

void QueueHost::close_vectors() {
    if (!vector_fds_.empty() && !device_.gone()) (void)device_.transport().disable_irqs(kIrqMsix);
    vector_fds_.clear();
}

Result<void> QueueHost::allocate_rings(QueuePairResources& res) {
    const uint16_t qid = res.qid;
    const uint64_t sq_off = layout_.sq_doorbell(qid, layout_.dstrd), cq_off = layout_.cq_doorbell(qid, layout_.dstrd);
    if (const uint64_t bar = device_.bar_size(layout_.bar); std::max(sq_off, cq_off) + 4 > bar)
        return make_error(ENOSPC, fmt::format("{}: queue {}: its doorbells at DSTRD {} lie beyond {} ({:#x} bytes)",
                                              device_.name(), qid, layout_.dstrd, region_name(layout_.bar), bar));
    auto& dma = device_.dma();
    auto sq = dma.allocate(uint64_t{res.sq_entries} * layout_.sq_entry_size);
    if (!sq) return sq.error().with_context(fmt::format("queue {} submission ring", qid));
    auto cq = dma.allocate(uint64_t{res.cq_entries} * layout_.cq_entry_size);
    if (!cq) return cq.error().with_context(fmt::format("queue {} completion ring", qid));
    auto pages = dma.allocate(uint64_t{res.sgl_page_count} * dma::kSglPageSize);
    if (!pages) return pages.error().with_context(fmt::format("queue {} descriptor pages", qid));
    res.sq = std::move(*sq);
    res.cq = std::move(*cq);
    res.sgl_pages = std::move(*pages);
    std::memset(res.cq.data(), 0, res.cq.size());  // phase 0 everywhere: nothing posted yet
    place_doorbell(res.sq_doorbell, sq_off);
    place_doorbell(res.cq_doorbell, cq_off);
    return {};
}

void QueueHost::place_doorbell(engine::Doorbell& doorbell, uint64_t offset) {
    doorbell.offset = offset;
    doorbell.mapped = static_cast<volatile uint32_t*>(device_.mapped(layout_.bar, offset, 4));
    doorbell.fallback = this;
}

bool QueueHost::close_all() {
    std::vector<EngineQueuePair*> open;
    {
        std::lock_guard lock(mutex_);
        if (!running_) return false;
        for (auto* qp : queues_)
            if (qp) open.push_back(qp);
    }
    // Outside the lock: closing a queue pair calls back into its owner.
    for (auto* qp : open) {
        (void)qp->close();
        qp->owner_gone();
    }
    std::lock_guard lock(mutex_);
    running_ = false;
    return true;
}

void QueueHost::write_doorbell(uint64_t offset, uint32_t value) {
    if (auto r = device_.write32(layout_.bar, offset, value); !r)
        log::logger<log::kController>().error("{}: doorbell write at {:#x}: {}", device_.name(), offset,
                                              r.error().message);
}

}  // namespace vfioq::io
