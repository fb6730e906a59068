// SPDX-License-Identifier: MIT
#include "registration_cache.hpp"

#include <fmt/format.h>

#include <algorithm>

namespace vfioq::dma {

RegistrationCache::RegistrationCache(Mapper& mapper, Budget budget, uint64_t page_size)
    : mapper_(mapper), budget_(budget), page_(page_size) {}

RegistrationCache::~RegistrationCache() {
    for (auto& [start, e] : live_) mapper_.unmap(e->iova, e->size());
    for (auto& e : superseded_) mapper_.unmap(e->iova, e->size());
}

RegistrationCache::Entry* RegistrationCache::find_live(uintptr_t start, uintptr_t end) const {
    auto it = live_.upper_bound(start);
    if (it == live_.begin()) return nullptr;
    --it;
    Entry* e = it->second.get();
    return e->start <= start && end <= e->end ? e : nullptr;
}

const RegistrationCache::Entry* RegistrationCache::find_held(const void* p, size_t len) const {
    const auto a = reinterpret_cast<uintptr_t>(p);
    if (len == 0 || a + len < a) return nullptr;
    const Entry* e = find_live(a, a + len);
    return e && e->refs > 0 ? e : nullptr;
}

void RegistrationCache::drop(Entry* e) {
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
    auto it = lru_.begin();
    while (!fits()) {
        while (it != lru_.end() && std::find(keep.begin(), keep.end(), *it) != keep.end()) ++it;
        if (it == lru_.end()) return false;
        Entry* victim = *it;
        it = lru_.erase(it);
        drop(victim);
        stats_.evictions++;
    }
    return true;
}

Result<RegistrationCache::Entry*> RegistrationCache::acquire(const void* p, size_t len) {
    const auto addr = reinterpret_cast<uintptr_t>(p);
    if (p == nullptr || len == 0) return make_error(EINVAL, "cannot register a null pointer or 0 bytes");
    if (addr + len < addr) return make_error(EINVAL, fmt::format("{} + {} bytes wraps the address space", p, len));
    const uintptr_t a = addr / page_ * page_;
    const uintptr_t b = (addr + len + page_ - 1) / page_ * page_;
    if (Entry* hit = find_live(a, b)) {
        if (hit->refs++ == 0) lru_.erase(hit->lru);
        stats_.hits++;
        return hit;
    }
    stats_.misses++;
    // Everything live that overlaps or touches [a, b) is merged into one mapping.
    std::vector<Entry*> merged;
    uintptr_t start = a, end = b;
    auto it = live_.upper_bound(a);
    if (it != live_.begin() && std::prev(it)->second->end >= a) --it;
    for (; it != live_.end() && it->second->start <= b; ++it) {
        Entry* e = it->second.get();
        merged.push_back(e);
        start = std::min(start, e->start);
        end = std::max(end, e->end);
    }
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
    auto iova = mapper_.map(start, end - start);
    if (!iova) return iova.error().with_context(fmt::format("registering {} bytes at {}", len, p));
    for (Entry* e : merged) {
        if (e->refs == 0) {
            lru_.erase(e->lru);
            drop(e);
        } else {
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
    Entry* raw = entry.get();
    live_.emplace(start, std::move(entry));
    stats_.mappings++;
    stats_.bytes += end - start;
    return raw;
}

void RegistrationCache::release(Entry* e) {
    if (e == nullptr || e->refs == 0) return;
    if (--e->refs > 0) return;
    if (e->live) {
        e->lru = lru_.insert(lru_.end(), e);
        return;
    }
    mapper_.unmap(e->iova, e->size());
    stats_.mappings--;
    stats_.bytes -= e->size();
    std::erase_if(superseded_, [e](const auto& p) { return p.get() == e; });
}

Result<void> RegistrationCache::unregister(const void* p, size_t len) {
    const auto a = reinterpret_cast<uintptr_t>(p);
    Entry* e = len == 0 ? nullptr : find_live(a, a + len);
    if (!e) return make_error(ENOENT, fmt::format("{} bytes at {} are not registered", len, p));
    if (e->refs > 0)
        return make_error(EBUSY, fmt::format("{} bytes at {} are still held by {} registration(s)", len, p, e->refs));
    lru_.erase(e->lru);
    drop(e);
    return {};
}

void RegistrationCache::flush() {
    while (!lru_.empty()) {
        Entry* e = lru_.front();
        lru_.pop_front();
        drop(e);
    }
}

}  // namespace vfioq::dma
