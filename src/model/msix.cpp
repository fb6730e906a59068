// SPDX-License-Identifier: MIT
#include "msix.hpp"

#include <unistd.h>

#include "vfioq/sgq_registers.hpp"

namespace vfioq::model {
namespace {

constexpr uint64_t kEntrySize = 16;

bool selected(std::span<const uint8_t> which, uint32_t i) { return which.empty() || which[i] != 0; }

}  // namespace

Msix::Msix(uint32_t vectors) : vectors_(vectors) {}

uint32_t Msix::read32(uint64_t offset) const {
    std::lock_guard lock(mutex_);
    if (offset >= sgq::kMsixPbaOffset) {
        const uint64_t word = (offset - sgq::kMsixPbaOffset) / 4;
        uint32_t bits = 0;
        for (uint32_t b = 0; b < 32; ++b) {
            const uint64_t v = word * 32 + b;
            if (v < vectors_.size() && vectors_[v].pending) bits |= 1u << b;
        }
        return bits;
    }
    const uint64_t index = offset / kEntrySize;
    if (index >= vectors_.size()) return 0;
    const Vector& v = vectors_[index];
    switch (offset % kEntrySize) {
        case 0: return v.addr_lo;
        case 4: return v.addr_hi;
        case 8: return v.data;
        default: return v.control;
    }
}

void Msix::write32(uint64_t offset, uint32_t value) {
    std::lock_guard lock(mutex_);
    if (offset >= sgq::kMsixPbaOffset) return;  // the PBA is read-only
    const uint64_t index = offset / kEntrySize;
    if (index >= vectors_.size()) return;
    Vector& v = vectors_[index];
    switch (offset % kEntrySize) {
        case 0: v.addr_lo = value & ~3u; break;
        case 4: v.addr_hi = value; break;
        case 8: v.data = value; break;
        default:
            v.control = value & 1u;
            if (deliverable(v) && v.pending) signal(v);
            break;
    }
}

void Msix::assign(uint32_t start, std::vector<UniqueFd> eventfds) {
    std::lock_guard lock(mutex_);
    for (size_t i = 0; i < eventfds.size() && start + i < vectors_.size(); ++i) {
        Vector& v = vectors_[start + i];
        v.eventfd = std::move(eventfds[i]);
        v.control = 0;
        if (deliverable(v) && v.pending) signal(v);
    }
}

void Msix::release(uint32_t start, uint32_t count) {
    std::lock_guard lock(mutex_);
    for (uint32_t i = start; i < start + count && i < vectors_.size(); ++i) {
        vectors_[i].eventfd.reset();
        vectors_[i].control = 1;
    }
}

void Msix::release_all() { release(0, vector_count()); }

void Msix::set_masked(uint32_t start, uint32_t count, std::span<const uint8_t> which, bool masked) {
    std::lock_guard lock(mutex_);
    for (uint32_t i = 0; i < count && start + i < vectors_.size(); ++i) {
        if (!selected(which, i)) continue;
        Vector& v = vectors_[start + i];
        v.irq_masked = masked;
        if (deliverable(v) && v.pending) signal(v);
    }
}

void Msix::trigger(uint32_t start, uint32_t count, std::span<const uint8_t> which) {
    for (uint32_t i = 0; i < count; ++i)
        if (selected(which, i)) raise(start + i);
}

void Msix::set_function_masked(bool masked) {
    std::lock_guard lock(mutex_);
    function_masked_ = masked;
    if (!masked) deliver_pending();
}

void Msix::raise(uint32_t vector) {
    std::lock_guard lock(mutex_);
    if (vector >= vectors_.size()) return;
    Vector& v = vectors_[vector];
    if (deliverable(v))
        signal(v);
    else
        v.pending = true;
}

uint64_t Msix::delivered(uint32_t vector) const {
    std::lock_guard lock(mutex_);
    return vector < vectors_.size() ? vectors_[vector].delivered : 0;
}

bool Msix::pending(uint32_t vector) const {
    std::lock_guard lock(mutex_);
    return vector < vectors_.size() && vectors_[vector].pending;
}

bool Msix::has_eventfd(uint32_t vector) const {
    std::lock_guard lock(mutex_);
    return vector < vectors_.size() && vectors_[vector].eventfd.valid();
}

void Msix::reset() {
    std::lock_guard lock(mutex_);
    for (Vector& v : vectors_) {
        v.pending = false;
        if (!v.eventfd.valid()) v.control = 1;
    }
}

bool Msix::deliverable(const Vector& v) const {
    return v.eventfd.valid() && !v.irq_masked && (v.control & 1u) == 0 && !function_masked_;
}

void Msix::signal(Vector& v) {
    v.pending = false;
    const uint64_t one = 1;
    // An eventfd write only fails when its counter would overflow: the interrupt is pending anyway.
    if (::write(v.eventfd.get(), &one, sizeof(one)) == sizeof(one)) ++v.delivered;
}

void Msix::deliver_pending() {
    for (Vector& v : vectors_)
        if (v.pending && deliverable(v)) signal(v);
}

}  // namespace vfioq::model
