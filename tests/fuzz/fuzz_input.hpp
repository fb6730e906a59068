// SPDX-License-Identifier: MIT
// The fuzzers' view of their input: a stream of small fields, each read as
// whatever the harness needs next, zero once the input runs out.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace vfioq::fuzz {

class Input {
public:
    Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

    [[nodiscard]] bool empty() const { return pos_ >= size_; }
    template <typename T>
    T take() {
        T v{};
        const size_t n = std::min(sizeof(T), size_ - std::min(pos_, size_));
        if (n) std::memcpy(&v, data_ + pos_, n);
        pos_ += sizeof(T);
        return v;
    }
    // Up to `n` bytes (fewer at the end of the input).
    std::span<const std::byte> bytes(size_t n) {
        const size_t start = std::min(pos_, size_);
        n = std::min(n, size_ - start);
        pos_ = start + n;
        return {reinterpret_cast<const std::byte*>(data_ + start), n};
    }

private:
    const uint8_t* data_;
    size_t size_;
    size_t pos_ = 0;
};

}  // namespace vfioq::fuzz
