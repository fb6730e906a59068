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
        : free_(count),
          slot_(count),
          free_count_(count),
          generation_step_(count <= kGenerationTags ? kGenerationTags : 0),
          tag_mask_(count <= kGenerationTags ? kGenerationTags - 1 : 0xFFFF) {
        for (uint32_t i = 0; i < count; ++i) {
            free_[i] = static_cast<uint16_t>(count - 1 - i);  // CID 0 first
            slot_[i] = i;
        }
    }

    [[nodiscard]] uint32_t capacity() const { return static_cast<uint32_t>(slot_.size()); }
    [[nodiscard]] uint32_t available() const { return free_count_; }
    [[nodiscard]] uint32_t in_use() const { return capacity() - free_count_; }

    // The CID a command carries is its tag (its slot, 0 .. capacity - 1) and,
    // for queues of at most 4096 commands, a 4-bit generation in bits 15:12
    // that changes each time the tag is reused: a late duplicate of an earlier
    // command's completion then names a CID that is not outstanding, instead of
    // completing the command that reused its tag before the card ran it.
    [[nodiscard]] uint32_t tag_of(uint32_t cid) const { return cid & tag_mask_; }
    [[nodiscard]] uint16_t cid_of(uint32_t tag) const { return static_cast<uint16_t>(slot_[tag]); }
    [[nodiscard]] bool in_range(uint32_t cid) const { return tag_of(cid) < capacity(); }

    // The CID of a free tag; -1 when every tag is out.
    int32_t acquire() {
        if (free_count_ == 0) return -1;
        uint32_t& slot = slot_[free_[--free_count_]];
        slot |= kOutstanding;
        return static_cast<uint16_t>(slot);
    }
    // True if `cid` was outstanding (and now is not).
    bool release(uint32_t cid) {
        if (!outstanding(cid)) return false;
        release_outstanding(cid);
        return true;
    }
    // release() of a CID that outstanding() just said is out.
    void release_outstanding(uint32_t cid) {
        const uint32_t tag = tag_of(cid);
        // The next generation, bits 15:12 wrapping (none above 4096 commands).
        slot_[tag] = (cid + generation_step_) & 0xFFFF;
        free_[free_count_++] = static_cast<uint16_t>(tag);
    }
    [[nodiscard]] bool outstanding(uint32_t cid) const {
        const uint32_t tag = tag_of(cid);
        return tag < capacity() && slot_[tag] == (cid | kOutstanding);
    }

private:
    static constexpr uint32_t kGenerationTags = 4096;
    // A tag's slot: the CID it carries now (or next, when free), and whether it is out. One
    // word, not byte flags: a store through a byte type may alias anything, and the compiler
    // would load every other member again after it.
    static constexpr uint32_t kOutstanding = 1u << 16;
    std::vector<uint16_t> free_;
    std::vector<uint32_t> slot_;
    uint32_t free_count_ = 0;
    uint32_t generation_step_;
    uint32_t tag_mask_;
};

}  // namespace vfioq::engine
