// SPDX-License-Identifier: MIT
// A double-ended queue of fixed capacity in one allocation made when a queue
// is enabled: the commands a queue has fetched and not yet posted. Pushing
// and popping at either end cost an index update, never an allocation, so
// the model's queue processing allocates nothing per command. Erasing from
// the middle (out-of-order completion, a test mode) moves the entries behind.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace vfioq::model {

template <typename T>
class ReadyRing {
public:
    ReadyRing() = default;
    // Room for at least `capacity` entries; what was queued is dropped.
    explicit ReadyRing(uint32_t capacity) {
        uint32_t n = 1;
        while (n < capacity) n <<= 1;
        slots_.resize(n);
        mask_ = n - 1;
    }

    [[nodiscard]] bool empty() const { return count_ == 0; }
    [[nodiscard]] bool full() const { return count_ == slots_.size(); }
    [[nodiscard]] size_t size() const { return count_; }
    T& operator[](size_t i) { return slots_[(head_ + i) & mask_]; }
    const T& operator[](size_t i) const { return slots_[(head_ + i) & mask_]; }
    T& front() { return (*this)[0]; }

    // The caller checks full() first: the ring never holds more than a queue can have in flight.
    T& push_back(const T& value) {
        T& slot = slots_[(head_ + count_++) & mask_];
        slot = value;
        return slot;
    }
    // A slot at the back to fill in place.
    T& emplace_back() { return slots_[(head_ + count_++) & mask_]; }
    // Takes back the last emplace_back().
    void drop_back() { --count_; }
    void push_front(const T& value) {
        head_ = (head_ - 1) & mask_;
        ++count_;
        slots_[head_] = value;
    }
    void pop_front() {
        head_ = (head_ + 1) & mask_;
        --count_;
    }
    void erase(size_t i) {
        if (i == 0) return pop_front();
        for (size_t k = i; k + 1 < count_; ++k) (*this)[k] = (*this)[k + 1];
        --count_;
    }

private:
    std::vector<T> slots_;
    size_t mask_ = 0;
    size_t head_ = 0;
    size_t count_ = 0;
};

}  // namespace vfioq::model
