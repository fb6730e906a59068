// SPDX-License-Identifier: MIT
#include "prp_builder.hpp"

namespace vfioq::dma {

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint32_t kPerListPage = kSglPageSize / sizeof(uint64_t);
}  // namespace

PrpResult build_prp(std::span<const DmaSegment> segments, uint64_t max_total, SglPagePool& pool,
                    const BusAddressMap* bus) {
    PrpResult r;
    if (segments.empty()) {
        r.error = SglError::kEmpty;
        return r;
    }
    // Check the layout and count the PRP entries: one per page touched.
    uint64_t entries = 0;
    for (uint32_t i = 0; i < segments.size(); ++i) {
        const DmaSegment& s = segments[i];
        r.segment = i;
        if (s.len == 0) {
            r.error = SglError::kZeroLength;
            return r;
        }
        const bool last = i + 1 == segments.size();
        if ((i == 0 && s.iova % 4) || (i > 0 && s.iova % kPage) || (!last && (s.iova + s.len) % kPage)) {
            r.error = i == 0 && s.iova % 4 ? SglError::kMisaligned : SglError::kNotPageAligned;
            return r;
        }
        r.total += s.len;
        if (r.total > max_total) {
            r.error = SglError::kTooLong;
            return r;
        }
        entries += (s.iova + s.len - 1) / kPage - s.iova / kPage + 1;
        if (bus)
            for (uint64_t p = s.iova; p < s.iova + s.len; p = (p / kPage + 1) * kPage)
                if (bus->translate(p, 1).address == 0) {
                    r.error = SglError::kNotMapped;
                    return r;
                }
    }
    // The pages in order: the first entry keeps its offset, the rest are page addresses.
    auto for_each_entry = [&](auto&& f) {
        uint64_t n = 0;
        for (const auto& s : segments)
            for (uint64_t p = s.iova; p < s.iova + s.len; p = (p / kPage + 1) * kPage)
                f(n++, bus ? bus->translate(p, 1).address : p);
    };
    if (entries <= 2) {
        for_each_entry([&](uint64_t n, uint64_t p) { (n == 0 ? r.prp1 : r.prp2) = p; });
        return r;
    }
    // Entries 2.. go into list pages of 512; a full page but the last links to the next in its last slot.
    const uint64_t listed = entries - 1;
    const uint64_t pages = listed <= kPerListPage ? 1 : (listed - 1 + kPerListPage - 2) / (kPerListPage - 1);
    if (pool.free_pages() < pages) {
        r.error = SglError::kNoPages;
        return r;
    }
    int32_t page = pool.take();
    r.first_page = page;
    r.prp2 = pool.page_address(static_cast<uint32_t>(page));
    auto* list = reinterpret_cast<uint64_t*>(pool.page(static_cast<uint32_t>(page)));
    uint32_t used = 0;
    uint64_t left = listed;
    for_each_entry([&](uint64_t n, uint64_t p) {
        if (n == 0) {
            r.prp1 = p;
            return;
        }
        if (used == kPerListPage - 1 && left > 1) {
            const int32_t next = pool.take();
            pool.link(static_cast<uint32_t>(page), next);
            list[used] = pool.page_address(static_cast<uint32_t>(next));
            page = next;
            list = reinterpret_cast<uint64_t*>(pool.page(static_cast<uint32_t>(page)));
            used = 0;
        }
        list[used++] = p;
        --left;
    });
    return r;
}

}  // namespace vfioq::dma
