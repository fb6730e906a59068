// SPDX-License-Identifier: MIT
#include "held_ranges.hpp"

#include <algorithm>

namespace vfioq::dma {

uint64_t HeldRanges::count_before(std::map<uintptr_t, uint64_t>::const_iterator it) const {
    return it == steps_.begin() ? 0 : std::prev(it)->second;
}

std::map<uintptr_t, uint64_t>::iterator HeldRanges::split_at(uintptr_t x) {
    auto it = steps_.lower_bound(x);
    if (it != steps_.end() && it->first == x) return it;
    return steps_.emplace_hint(it, x, count_before(it));
}

// Boundaries whose count equals the one before say nothing; they go in one pass.
void HeldRanges::tidy() {
    last_.valid = false;  // its boundaries may go
    uint64_t before = 0;
    for (auto it = steps_.begin(); it != steps_.end();) {
        if (it->second == before) {
            it = steps_.erase(it);
        } else {
            before = it->second;
            ++it;
        }
    }
    tidy_at_ = std::max(kTidyFloor, 2 * steps_.size());
}

size_t HeldRanges::boundaries() const {
    size_t n = 0;
    uint64_t before = 0;
    for (const auto& [at, count] : steps_) {
        if (count != before) ++n;
        before = count;
    }
    return n;
}

void HeldRanges::shift(uintptr_t a, uintptr_t b, int64_t delta) {
    if (a >= b) return;
    if (!last_.valid || last_.a != a || last_.b != b) {
        // Map iterators stay valid as boundaries are added: `end` holds while a's is made.
        last_.end = split_at(b);
        last_.first = split_at(a);
        last_.a = a;
        last_.b = b;
        last_.valid = true;
        last_.one_step = std::next(last_.first) == last_.end;
    }
    for (auto it = last_.first; it != last_.end; ++it)
        it->second = static_cast<uint64_t>(static_cast<int64_t>(it->second) + delta);
    if (steps_.size() > tidy_at_) tidy();
}

uintptr_t HeldRanges::first_unheld(uintptr_t a, uintptr_t b) const {
    if (a >= b) return b;
    auto it = steps_.upper_bound(a);
    uintptr_t at = a;
    uint64_t count = count_before(it);
    for (;;) {
        if (count == 0) return at;
        if (it == steps_.end() || it->first >= b) return b;
        at = it->first;
        count = it->second;
        ++it;
    }
}

bool HeldRanges::covers(uintptr_t a, uintptr_t b) const { return a < b && first_unheld(a, b) == b; }

uint64_t HeldRanges::most_holds(uintptr_t a, uintptr_t b) const {
    auto it = steps_.upper_bound(a);
    uint64_t most = count_before(it);
    for (; it != steps_.end() && it->first < b; ++it) most = std::max(most, it->second);
    return most;
}

}  // namespace vfioq::dma
