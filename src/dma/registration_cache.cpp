// SPDX-License-Identifier: MIT
#include "registration_cache.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cassert>

namespace vfioq::dma {

RegistrationCache::RegistrationCache(Mapper& mapper, Budget budget, uint64_t page_size)
    : mapper_(mapper), budget_(budget), page_mask_(page_size - 1) {
    // Page sizes are powers of two; rounding is then a mask, not two divisions per registration.
    assert(std::has_single_bit(page_size));
}

RegistrationCache::~RegistrationCache() {
    for (auto& [start, e] : live_) mapper_.unmap(e->iova, e->size());
    for (auto& e : superseded_) mapper_.unmap(e->iova, e->size());
}

RegistrationCache::Entry* RegistrationCache::find_live(uintptr_t start, uintptr_t end) const {
    // Registrations of one buffer come in runs: the last mapping found is tried first.
    if (last_hit_ && last_hit_->start <= start && end <= last_hit_->end) return last_hit_;
    auto it = live_.upper_bound(start);
    if (it == live_.begin()) return nullptr;
    --it;
    Entry* e = it->second.get();
    return e->start <= start && end <= e->end ? e : nullptr;
}

const RegistrationCache::Entry* RegistrationCache::find_held(const void* p, size_t len) const {
    const auto a = reinterpret_cast<uintptr_t>(p);
    if (len == 0 || a + len < a || !held_.covers(a, a + len)) return nullptr;
    // A mapping somebody holds, so that it stays mapped while the memory does.
    if (const Entry* e = find_live(a, a + len); e && e->refs > 0) return e;
    for (const auto& e : superseded_)
        if (e->start <= a && a + len <= e->end) return e.get();
    return nullptr;  // held, but by registrations mapped apart
}

uintptr_t RegistrationCache::first_unheld(const void* p, size_t len) const {
    const auto a = reinterpret_cast<uintptr_t>(p);
    return held_.first_unheld(a, a + len < a ? ~uintptr_t{0} : a + len);
}

void RegistrationCache::lru_append(Entry* e) {
    e->lru_prev = lru_tail_;
    e->lru_next = nullptr;
    (lru_tail_ ? lru_tail_->lru_next : lru_head_) = e;
    lru_tail_ = e;
    e->in_lru = true;
}

void RegistrationCache::lru_remove(Entry* e) {
    if (!e->in_lru) return;
    (e->lru_prev ? e->lru_prev->lru_next : lru_head_) = e->lru_next;
    (e->lru_next ? e->lru_next->lru_prev : lru_tail_) = e->lru_prev;
    e->lru_prev = e->lru_next = nullptr;
    e->in_lru = false;
}

void RegistrationCache::forget(const Entry* e) {
    if (last_hit_ == e) last_hit_ = nullptr;
}

void RegistrationCache::drop(Entry* e) {
    lru_remove(e);
    forget(e);
    mapper_.unmap(e->iova, e->size());
    stats_.mappings--;
    stats_.bytes -= e->size();
    live_.erase(e->start);  // deletes e
}

bool RegistrationCache::make_room(uint64_t extra_bytes, uint64_t freed_mappings, uint64_t freed_bytes,
                                  const std::vector<Entry*>& keep) {
    auto fits = [&] {
        return stats_.mappings - freed_mappings + 1 <= budget_.max_mappings &&
               stats_.bytes - freed_bytes + extra_bytes <= budget_.max_bytes;
    };
    Entry* next = lru_head_;
    while (!fits()) {
        while (next && std::find(keep.begin(), keep.end(), next) != keep.end()) next = next->lru_next;
        if (!next) return false;
        Entry* victim = next;
        next = next->lru_next;
        drop(victim);
        stats_.evictions++;
    }
    return true;
}

Result<RegistrationCache::Entry*> RegistrationCache::acquire(const void* p, size_t len) {
    const auto addr = reinterpret_cast<uintptr_t>(p);
    if (p == nullptr || len == 0) return make_error(EINVAL, "cannot register a null pointer or 0 bytes");
    if (addr + len < addr) return make_error(EINVAL, fmt::format("{} + {} bytes wraps the address space", p, len));
    const uintptr_t a = addr & ~page_mask_;
    const uintptr_t b = (addr + len + page_mask_) & ~page_mask_;
    if (Entry* hit = find_live(a, b)) {
        if (hit->refs++ == 0) lru_remove(hit);
        hit->unmap_when_released = false;  // registered again: worth caching again
        stats_.hits++;
        last_hit_ = hit;
        held_.add(addr, addr + len);
        return hit;
    }
    stats_.misses++;
    auto protection = mapper_.protection(a, b);
    if (!protection) return protection.error().with_context(fmt::format("registering {} bytes at {}", len, p));
    const bool writable = protection->writable;
    // Everything live that overlaps or touches [a, b) is merged into one mapping, if the device may do the
    // same to it; a cached mapping whose memory changed protection since is dropped.
    std::vector<Entry*> merged, stale;
    uintptr_t start = a, end = b;
    auto it = live_.upper_bound(a);
    if (it != live_.begin() && std::prev(it)->second->end >= a) --it;
    for (; it != live_.end() && it->second->start <= b; ++it) {
        Entry* e = it->second.get();
        const bool overlaps = e->start < b && a < e->end;
        if (e->writable != writable) {
            if (!overlaps) continue;  // a neighbour of another kind keeps a mapping of its own
            if (e->refs > 0)
                return make_error(EBUSY, fmt::format("registering {} bytes at {}: registered memory at {:#x} was "
                                                     "mapped {} and is now {} (its protection changed while "
                                                     "registered)",
                                                     len, p, e->start, e->writable ? "writable" : "read-only",
                                                     writable ? "writable" : "read-only"));
            stale.push_back(e);
            continue;
        }
        merged.push_back(e);
        start = std::min(start, e->start);
        end = std::max(end, e->end);
    }
    for (Entry* e : stale) drop(e);
    uint64_t freed_mappings = 0, freed_bytes = 0;
    for (Entry* e : merged)
        if (e->refs == 0) {
            freed_mappings++;
            freed_bytes += e->size();
        }
    if (!make_room(end - start, freed_mappings, freed_bytes, merged))
        return make_error(ENOSPC, fmt::format("registering {} bytes at {}: the DMA mapping budget ({} mappings, {} "
                                              "bytes) is used up by registrations still held ({} mappings, {} bytes)",
                                              len, p, budget_.max_mappings, budget_.max_bytes, stats_.mappings,
                                              stats_.bytes));
    auto iova = mapper_.map(start, end - start, writable);
    if (!iova) return iova.error().with_context(fmt::format("registering {} bytes at {}", len, p));
    for (Entry* e : merged) {
        if (e->refs == 0) {
            drop(e);
        } else {
            forget(e);
            e->live = false;
            superseded_.push_back(std::move(live_.at(e->start)));
            live_.erase(e->start);
        }
    }
    if (!merged.empty()) stats_.merges++;
    auto entry = std::make_unique<Entry>();
    entry->start = start;
    entry->end = end;
    entry->iova = *iova;
    entry->refs = 1;
    entry->writable = writable;
    Entry* raw = entry.get();
    live_.emplace(start, std::move(entry));
    stats_.mappings++;
    stats_.bytes += end - start;
    held_.add(addr, addr + len);
    last_hit_ = raw;
    return raw;
}

void RegistrationCache::release(Entry* e, const void* p, size_t len) {
    if (e == nullptr || e->refs == 0) return;
    const auto a = reinterpret_cast<uintptr_t>(p);
    held_.remove(a, a + len);
    if (--e->refs > 0) return;
    if (e->live && !e->unmap_when_released) {
        lru_append(e);
        return;
    }
    if (e->live) {
        drop(e);
        return;
    }
    mapper_.unmap(e->iova, e->size());
    stats_.mappings--;
    stats_.bytes -= e->size();
    std::erase_if(superseded_, [e](const auto& owned) { return owned.get() == e; });
}

Result<void> RegistrationCache::unregister(const void* p, size_t len) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    if (len == 0 || a + len < a) return make_error(ENOENT, fmt::format("{} bytes at {} are not registered", len, p));
    if (const uint64_t holds = held_.most_holds(a, a + len); holds > 0)
        return make_error(EBUSY, fmt::format("{} bytes at {} are still held by {} registration(s)", len, p, holds));
    Entry* e = find_live(a, a + len);
    if (!e) return make_error(ENOENT, fmt::format("{} bytes at {} are not registered", len, p));
    if (e->refs > 0) {
        // Merged with memory still held: the IOMMU cannot unmap part of a mapping, so it goes with the last hold.
        e->unmap_when_released = true;
        return {};
    }
    drop(e);
    return {};
}

void RegistrationCache::flush() {
    while (lru_head_) drop(lru_head_);
}

}  // namespace vfioq::dma
