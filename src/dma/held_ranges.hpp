// SPDX-License-Identifier: MIT
// The bytes the application holds registered, counted byte by byte. The
// registration cache maps whole pages and merges neighbours into one mapping
// (the IOMMU's granularity); what a command may be sent to is exactly what a
// live registration names, no byte more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>

namespace vfioq::dma {

class HeldRanges {
public:
    // One more hold on [a, b); a < b.
    void add(uintptr_t a, uintptr_t b) {
        if (is_last_one_step(a, b)) {
            ++last_.first->second;
            return;
        }
        shift(a, b, +1);
    }
    // One hold fewer on [a, b), which was added before. Its boundaries stay for the
    // next hold of the same range (a registration cache hit then allocates nothing);
    // the ones that say nothing are tidied away once they are as many as the rest.
    void remove(uintptr_t a, uintptr_t b) {
        if (is_last_one_step(a, b)) {
            --last_.first->second;
            return;
        }
        shift(a, b, -1);
    }

    // Whether every byte of [a, b) is held at least once.
    [[nodiscard]] bool covers(uintptr_t a, uintptr_t b) const;
    // The first byte of [a, b) nobody holds (b when every byte is held).
    [[nodiscard]] uintptr_t first_unheld(uintptr_t a, uintptr_t b) const;
    // The most holds on any byte of [a, b): 0 when none of it is held.
    [[nodiscard]] uint64_t most_holds(uintptr_t a, uintptr_t b) const;
    // How many boundaries describe the holds (for tests: it shrinks back as holds go).
    [[nodiscard]] size_t boundaries() const;
    // How many are kept, the ones that say nothing included (for tests: bounded).
    [[nodiscard]] size_t boundaries_kept() const { return steps_.size(); }

private:
    // The range shifted last, described by one count: a hit and its release change just that.
    [[nodiscard]] bool is_last_one_step(uintptr_t a, uintptr_t b) const {
        return last_.valid && last_.one_step && last_.a == a && last_.b == b;
    }
    void shift(uintptr_t a, uintptr_t b, int64_t delta);
    std::map<uintptr_t, uint64_t>::iterator split_at(uintptr_t x);
    void tidy();
    [[nodiscard]] uint64_t count_before(std::map<uintptr_t, uint64_t>::const_iterator it) const;

    // A step function: steps_[k] holds count for [k, next key); 0 before the first key.
    std::map<uintptr_t, uint64_t> steps_;
    // The boundaries of the range shifted last: a hit's release, and the next hit on the same
    // buffer, shift it again without searching. Map iterators stay valid until an erase (tidy).
    struct LastRange {
        uintptr_t a = 0, b = 0;
        std::map<uintptr_t, uint64_t>::iterator first, end;
        bool valid = false;
        bool one_step = false;  // no boundary between first and end: one count to change
    } last_;
    size_t tidy_at_ = kTidyFloor;
    static constexpr size_t kTidyFloor = 64;
};

}  // namespace vfioq::dma
