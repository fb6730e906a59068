// SPDX-License-Identifier: MIT
// Command identifiers of one queue pair: a free stack for O(1) allocation and
// an outstanding flag per CID, so that a completion naming a CID that is not
// out (a duplicate, a stale or invented CID) is caught before it is used.
#pragma once

#include <cstdint>
#include <vector>

namespace vfioq::engine {

class CidPool {
public:
    explicit CidPool(uint32_t count = 0)
        : free_(count), outstanding_(count, 0), generation_(count, 0), free_count_(count),
          tag_mask_(count <= kGenerationTags ? kGenerationTags - 1 : 0xFFFF) {
        for (uint32_t i = 0; i < count; ++i) free_[i] = static_cast<uint16_t>(count - 1 - i);  // CID 0 first
    }

    [[nodiscard]] uint32_t capacity() const { return static_cast<uint32_t>(outstanding_.size()); }
    [[nodiscard]] uint32_t available() const { return free_count_; }
    [[nodiscard]] uint32_t in_use() const { return capacity() - free_count_; }

    // The CID a command carries is its tag (its slot, 0 .. capacity - 1) and,
    // for queues of at most 4096 commands, a 4-bit generation in bits 15:12
    // that changes each time the tag is reused: a late duplicate of an earlier
    // command's completion then names a CID that is not outstanding, instead of
    // completing the command that reused its tag before the card ran it.
    [[nodiscard]] uint32_t tag_of(uint32_t cid) const { return cid & tag_mask_; }
    [[nodiscard]] uint16_t cid_of(uint32_t tag) const {
        return static_cast<uint16_t>(tag | (tag_mask_ == 0xFFFF ? 0u : uint32_t{generation_[tag]} << 12));
    }
    [[nodiscard]] bool in_range(uint32_t cid) const { return tag_of(cid) < capacity(); }

    // The CID of a free tag; -1 when every tag is out.
    int32_t acquire() {
        if (free_count_ == 0) return -1;
        const uint16_t tag = free_[--free_count_];
        outstanding_[tag] = 1;
        return cid_of(tag);
    }
    // True if `cid` was outstanding (and now is not).
    bool release(uint32_t cid) {
        if (!outstanding(cid)) return false;
        const uint32_t tag = tag_of(cid);
        outstanding_[tag] = 0;
        generation_[tag] = static_cast<uint8_t>((generation_[tag] + 1) & 0xF);
        free_[free_count_++] = static_cast<uint16_t>(tag);
        return true;
    }
    [[nodiscard]] bool outstanding(uint32_t cid) const {
        const uint32_t tag = tag_of(cid);
        return tag < capacity() && outstanding_[tag] && cid_of(tag) == cid;
    }

private:
    static constexpr uint32_t kGenerationTags = 4096;
    std::vector<uint16_t> free_;
    std::vector<uint8_t> outstanding_;
    std::vector<uint8_t> generation_;
    uint32_t free_count_ = 0;
    uint32_t tag_mask_;
};

}  // namespace vfioq::engine
