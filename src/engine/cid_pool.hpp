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
    explicit CidPool(uint32_t count = 0) : free_(count), outstanding_(count, 0), free_count_(count) {
        for (uint32_t i = 0; i < count; ++i) free_[i] = static_cast<uint16_t>(count - 1 - i);  // CID 0 first
    }

    [[nodiscard]] uint32_t capacity() const { return static_cast<uint32_t>(outstanding_.size()); }
    [[nodiscard]] uint32_t available() const { return free_count_; }
    [[nodiscard]] uint32_t in_use() const { return capacity() - free_count_; }

    // -1 when every CID is out.
    int32_t acquire() {
        if (free_count_ == 0) return -1;
        const uint16_t cid = free_[--free_count_];
        outstanding_[cid] = 1;
        return cid;
    }
    // True if `cid` was outstanding (and now is not).
    bool release(uint32_t cid) {
        if (cid >= outstanding_.size() || !outstanding_[cid]) return false;
        outstanding_[cid] = 0;
        free_[free_count_++] = static_cast<uint16_t>(cid);
        return true;
    }
    [[nodiscard]] bool outstanding(uint32_t cid) const { return cid < outstanding_.size() && outstanding_[cid]; }

private:
    std::vector<uint16_t> free_;
    std::vector<uint8_t> outstanding_;
    uint32_t free_count_ = 0;
};

}  // namespace vfioq::engine
