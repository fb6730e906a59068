// SPDX-License-Identifier: MIT
// The self-test's data and shapes. Data: every 512-byte block of card memory
// starts with a header (its card address and the write's sequence number),
// the rest is a seeded pseudo-random stream of (seed, sequence, address), so
// a byte that lands at the wrong address, or stale data from an earlier
// write, is caught and named. Shapes: a transfer cut into 1 .. MAX_SGE
// segments of odd lengths placed at odd offsets with gaps in a host area.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace vfioq::selftest {

inline constexpr uint64_t kBlock = 512;

struct BlockHeader {
    uint64_t card_address;
    uint64_t sequence;
};

inline uint64_t splitmix(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

// The byte that card address `a` must hold after the write numbered `sequence`.
inline uint8_t expected_byte(uint64_t seed, uint64_t sequence, uint64_t a) {
    const uint64_t in_block = a % kBlock;
    if (in_block < sizeof(BlockHeader)) {
        const BlockHeader h{a - in_block, sequence};
        uint8_t b[sizeof(h)];
        std::memcpy(b, &h, sizeof(h));
        return b[in_block];
    }
    return static_cast<uint8_t>(splitmix(seed ^ (sequence << 32) ^ (a / 8) * 0x100000001B3ull) >> (a % 8 * 8));
}

// A piece of a host area: offset into it and length.
struct Piece {
    uint64_t offset;
    uint64_t len;
};

// Cuts `total` bytes (a multiple of `align`) into at most `max_pieces` pieces
// laid out in order in an area of `area` bytes (area >= 2 * total), with random
// gaps; lengths and offsets are multiples of `align`.
inline void make_shape(std::mt19937_64& rng, uint64_t total, uint64_t align, uint32_t max_pieces, uint64_t area,
                       std::vector<Piece>& out) {
    out.clear();
    const uint64_t units = total / align;
    uint64_t want = 1;
    const uint64_t cap = std::min<uint64_t>(max_pieces, units);
    switch (rng() % 5) {
        case 0:
        case 1: want = 1; break;
        case 2: want = std::min<uint64_t>(2, cap); break;
        default: want = 1 + rng() % cap; break;
    }
    // Cut points on the unit grid, sorted and distinct.
    std::vector<uint64_t> cuts;
    cuts.reserve(want + 1);
    for (uint64_t i = 1; i < want; ++i) cuts.push_back(1 + rng() % (units - 1));
    std::sort(cuts.begin(), cuts.end());
    cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
    cuts.push_back(units);
    const uint64_t slack_units = (area - total) / align;
    const uint64_t gap_max = slack_units / (cuts.size() + 1);
    uint64_t at = align * (gap_max ? rng() % (gap_max + 1) : 0);
    uint64_t prev = 0;
    for (uint64_t c : cuts) {
        const uint64_t len = (c - prev) * align;
        out.push_back({at, len});
        at += len + align * (gap_max ? rng() % (gap_max + 1) : 0);
        prev = c;
    }
}

}  // namespace vfioq::selftest
