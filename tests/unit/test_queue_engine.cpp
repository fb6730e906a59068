// SPDX-License-Identifier: MIT
// The queue engine against a device played by the test: rings of several
// sizes through every wrap, full and empty, out-of-order completion, and
// completions a buggy device might post.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <vector>

#include "engine/queue_engine.hpp"

namespace vfioq::engine {
namespace {

struct Sqe {
    uint16_t cid;
    uint8_t pad[62];
};

// Host memory for the rings and a device that consumes the SQ and posts to the CQ.
class FakeDevice {
public:
    FakeDevice(uint32_t sq_entries, uint32_t cq_entries, uint32_t depth, uint16_t qid = 3)
        : sq(sq_entries), cq(cq_entries), sq_n(sq_entries), cq_n(cq_entries) {
        RingConfig c;
        c.qid = qid;
        c.sq = sq.data();
        c.sq_entries = sq_entries;
        c.cq = cq.data();
        c.cq_entries = cq_entries;
        c.max_outstanding = depth;
        c.sq_tail.mapped = &sq_tail_db;
        c.cq_head.mapped = &cq_head_db;
        engine = QueueEngine(c);
        this->qid = qid;
    }

    // Fetches everything the SQ tail doorbell offers; returns the CIDs in ring order.
    std::vector<uint16_t> fetch() {
        std::vector<uint16_t> cids;
        while (sq_head != sq_tail_db) {
            cids.push_back(sq[sq_head].cid);
            sq_head = (sq_head + 1) % sq_n;
        }
        return cids;
    }
    // Posts a completion; false if the CQ is full (the host has not released entries).
    bool post(uint16_t cid, uint16_t status = 0, int sqhd = -1, int sqid = -1) {
        if ((cq_tail + 1) % cq_n == cq_head_db) return false;
        CqEntry e{};
        e.dw0 = 0xABC;
        e.sqhd = static_cast<uint16_t>(sqhd < 0 ? sq_head : sqhd);
        e.sqid = static_cast<uint16_t>(sqid < 0 ? qid : sqid);
        e.cid = cid;
        e.status_phase = static_cast<uint16_t>(status << 1 | (phase ? 1 : 0));
        cq[cq_tail] = e;
        if (++cq_tail == cq_n) {
            cq_tail = 0;
            phase = !phase;
        }
        return true;
    }

    std::vector<Sqe> sq;
    std::vector<CqEntry> cq;
    uint32_t sq_n, cq_n;
    volatile uint32_t sq_tail_db = 0, cq_head_db = 0;
    uint32_t sq_head = 0, cq_tail = 0;
    bool phase = true;
    uint16_t qid = 0;
    QueueEngine engine;
};

int32_t submit(QueueEngine& e) {
    if (!e.can_submit()) return -1;
    const int32_t cid = e.acquire_cid();
    EXPECT_GE(cid, 0);
    Sqe s{};
    s.cid = static_cast<uint16_t>(cid);
    std::memcpy(e.sq_slot(), &s, sizeof(s));
    e.push();
    return cid;
}

// The SQ slot asked for ahead of the tail is inside the ring, and none on a ring so small that
// the slot ahead is one the device reads now (a depth-1 queue has two entries).
TEST(QueueEngine, TheSlotAskedForAheadIsInsideTheRingAndNoneOnASmallRing) {
    EXPECT_EQ(QueueEngine::slot_ahead(0, 8, 257), 8u);
    EXPECT_EQ(QueueEngine::slot_ahead(250, 8, 257), 1u);
    EXPECT_EQ(QueueEngine::slot_ahead(256, 8, 257), 7u);
    EXPECT_EQ(QueueEngine::slot_ahead(1, 8, 2), 2u) << "none: the ring is too small";
    EXPECT_EQ(QueueEngine::slot_ahead(0, 8, 31), 31u);
    EXPECT_EQ(QueueEngine::slot_ahead(31, 8, 32), 7u);
}

TEST(CidPool, AcquireReleaseAndOutstanding) {
    CidPool p(3);
    EXPECT_EQ(p.acquire(), 0);
    EXPECT_EQ(p.acquire(), 1);
    EXPECT_EQ(p.acquire(), 2);
    EXPECT_EQ(p.acquire(), -1);
    EXPECT_TRUE(p.outstanding(1));
    EXPECT_TRUE(p.release(1));
    EXPECT_FALSE(p.release(1)) << "a second release is refused";
    EXPECT_FALSE(p.release(7)) << "out of range";
    EXPECT_EQ(p.acquire(), 1 | 1 << 12) << "tag 1 again, in its next generation";
    EXPECT_FALSE(p.outstanding(1)) << "the old CID of a reused tag is not outstanding";
    EXPECT_TRUE(p.outstanding(1 | 1 << 12));
    EXPECT_EQ(p.tag_of(1 | 1 << 12), 1u);
}

TEST(CidPool, GenerationsWrapAndLargeQueuesUseEveryBitForTheTag) {
    CidPool p(1);
    for (uint32_t i = 0; i < 40; ++i) {
        const int32_t cid = p.acquire();
        EXPECT_EQ(cid, static_cast<int32_t>((i % 16) << 12));
        EXPECT_TRUE(p.release(static_cast<uint32_t>(cid)));
    }
    CidPool big(5000);
    for (uint32_t i = 0; i < 5000; ++i) EXPECT_EQ(big.acquire(), static_cast<int32_t>(i));
    EXPECT_TRUE(big.release(4999));
    EXPECT_EQ(big.acquire(), 4999) << "no generation bits above 4096 commands";
}

TEST(QueueEngine, ALateDuplicateDoesNotCompleteTheCommandThatReusedItsTag) {
    FakeDevice d(16, 16, 8);
    QueueEngine& e = d.engine;
    const int32_t a = submit(e);
    e.ring_sq();
    d.fetch();
    d.post(static_cast<uint16_t>(a));
    std::vector<uint16_t> delivered;
    e.poll(100, [&](uint16_t tag, const CqEntry& c) {
        delivered.push_back(tag);
        EXPECT_EQ(c.cid, a);
    });
    const int32_t b = submit(e);  // the same tag, the next generation
    e.ring_sq();
    d.fetch();
    EXPECT_EQ(e.tag_of(static_cast<uint16_t>(b)), e.tag_of(static_cast<uint16_t>(a)));
    EXPECT_NE(b, a);
    d.post(static_cast<uint16_t>(a));  // the card repeats a's completion
    e.poll(100, [&](uint16_t tag, const CqEntry&) { delivered.push_back(tag); });
    EXPECT_EQ(delivered.size(), 1u) << "b must not complete before the card ran it";
    EXPECT_EQ(e.outstanding(), 1u);
    EXPECT_EQ(e.counters().cid_not_outstanding, 1u);
    d.post(static_cast<uint16_t>(b));
    e.poll(100, [&](uint16_t tag, const CqEntry& c) {
        delivered.push_back(tag);
        EXPECT_EQ(c.cid, b);
    });
    EXPECT_EQ(delivered.size(), 2u);
}

TEST(QueueEngine, EmptyAndFullBoundaries) {
    for (uint32_t n : {2u, 3u, 4u, 17u, 4097u, 65536u}) {
        FakeDevice d(n, n, n - 1);
        QueueEngine& e = d.engine;
        EXPECT_EQ(e.poll(100, [](uint16_t, const CqEntry&) { FAIL() << "nothing was posted"; }), 0u);
        uint32_t k = 0;
        while (submit(e) >= 0) ++k;
        EXPECT_EQ(k, n - 1) << "ring of " << n;
        EXPECT_TRUE(e.sq_full());
        e.ring_sq();
        EXPECT_EQ(d.sq_tail_db, (n - 1) % n);
        // The device consumes everything; the SQ stays full until SQ heads come back.
        auto cids = d.fetch();
        ASSERT_EQ(cids.size(), n - 1);
        EXPECT_FALSE(e.can_submit());
        for (uint16_t c : cids) ASSERT_TRUE(d.post(c));
        uint32_t got = 0;
        while (e.poll(7, [&](uint16_t, const CqEntry&) { ++got; }) > 0) {
        }
        EXPECT_EQ(got, n - 1);
        EXPECT_TRUE(e.can_submit());
        EXPECT_EQ(e.outstanding(), 0u);
    }
}

TEST(QueueEngine, EveryWrapOfSeveralSizesWithOutOfOrderCompletion) {
    std::mt19937_64 rng(1);
    for (uint32_t n : {2u, 3u, 5u, 8u, 33u, 256u, 4097u}) {
        for (uint32_t cq_n : {n, n + 3, 2u}) {
            const uint32_t depth = n - 1;
            FakeDevice d(n, cq_n, depth);
            QueueEngine& e = d.engine;
            std::vector<int> completions(depth, 0);
            uint64_t submitted = 0, completed = 0;
            std::vector<uint16_t> fetched;
            const uint64_t rounds = 6ull * std::max(n, cq_n) + 50;
            for (uint64_t round = 0; round < rounds; ++round) {
                const uint32_t want = 1 + static_cast<uint32_t>(rng() % depth);
                for (uint32_t i = 0; i < want; ++i) {
                    const int32_t cid = submit(e);
                    if (cid < 0) break;
                    ++submitted;
                }
                e.ring_sq();
                auto more = d.fetch();
                fetched.insert(fetched.end(), more.begin(), more.end());
                std::shuffle(fetched.begin(), fetched.end(), rng);
                // Post what fits in the CQ; the rest waits, as the spec's device does.
                while (!fetched.empty() && d.post(fetched.back())) fetched.pop_back();
                completed += e.poll(1 + static_cast<uint32_t>(rng() % 9), [&](uint16_t cid, const CqEntry& c) {
                    ASSERT_LT(cid, depth);
                    ++completions[cid];
                    EXPECT_EQ(c.dw0, 0xABCu);
                });
            }
            // Drain.
            for (int guard = 0; guard < 100000 && completed < submitted; ++guard) {
                while (!fetched.empty() && d.post(fetched.back())) fetched.pop_back();
                completed += e.poll(64, [&](uint16_t cid, const CqEntry&) { ++completions[cid]; });
            }
            ASSERT_EQ(completed, submitted) << "ring " << n << " cq " << cq_n;
            EXPECT_EQ(e.outstanding(), 0u);
            EXPECT_EQ(e.counters().device_errors(), 0u);
            EXPECT_EQ(d.cq_head_db, e.cq_head());
        }
    }
}

TEST(QueueEngine, OneDoorbellPerBatchAndPollCap) {
    FakeDevice d(64, 64, 63);
    QueueEngine& e = d.engine;
    for (int i = 0; i < 10; ++i) submit(e);
    e.ring_sq();
    e.ring_sq();  // nothing new: no second write
    EXPECT_EQ(e.counters().sq_doorbells, 1u);
    for (uint16_t c : d.fetch()) d.post(c);
    uint32_t seen = 0;
    EXPECT_EQ(e.poll(3, [&](uint16_t, const CqEntry&) { ++seen; }), 3u);
    EXPECT_EQ(e.counters().cq_doorbells, 1u);
    EXPECT_EQ(d.cq_head_db, 3u);
    EXPECT_EQ(e.poll(100, [&](uint16_t, const CqEntry&) { ++seen; }), 7u);
    EXPECT_EQ(seen, 10u);
    EXPECT_EQ(e.counters().cq_doorbells, 2u);
}

// NVMe's shadow doorbells: the register is written only when the move from the
// last value to the new one passes the event index the device left.
TEST(Doorbell, AShadowDoorbellWritesTheRegisterOnlyWhenTheEventIndexAsks) {
    volatile uint32_t reg = 0, shadow = 0, event = 0;
    Doorbell d;
    d.mapped = &reg;
    d.shadow = &shadow;
    d.event_idx = &event;
    d.entries = 8;
    // The device caught up (its event index at the last value, 0): told.
    EXPECT_TRUE(d.ring(3));
    EXPECT_EQ(reg, 3u);
    EXPECT_EQ(shadow, 3u);
    // Still working from 0 (behind the last value 3): it reads the shadow again before
    // it stops, so the register is left alone.
    EXPECT_FALSE(d.ring(5));
    EXPECT_EQ(reg, 3u);
    EXPECT_EQ(shadow, 5u);
    // It reached 5 and asked to be told: 5 -> 7 passes it.
    event = 5;
    EXPECT_TRUE(d.ring(7));
    EXPECT_EQ(reg, 7u);
    // Across the wrap, 7 -> 2 steps onto 0 and 1: an event index of 0 is passed ...
    event = 0;
    EXPECT_TRUE(d.ring(2));
    EXPECT_EQ(reg, 2u);
    // ... and 2 -> 3 does not reach 4.
    event = 4;
    EXPECT_FALSE(d.ring(3));
    // 3 -> 1 goes nearly all the way round, past 4.
    EXPECT_TRUE(d.ring(1));
    EXPECT_EQ(reg, 1u);
    // An event index outside the ring is the device's mistake: the register is written.
    event = 8;
    EXPECT_TRUE(d.ring(2));
    EXPECT_EQ(reg, 2u);
    EXPECT_EQ(shadow, 2u);
}

TEST(Doorbell, AShadowWithNoEventIndexMirrorsTheRegister) {
    volatile uint32_t reg = 0, shadow = 0;
    Doorbell d;
    d.mapped = &reg;
    d.shadow = &shadow;
    d.entries = 8;
    for (uint32_t v : {1u, 2u, 7u, 0u}) {
        EXPECT_TRUE(d.ring(v));
        EXPECT_EQ(reg, v);
        EXPECT_EQ(shadow, v);
    }
}

TEST(QueueEngine, DoorbellsOnlyAShadowTookAreCounted) {
    FakeDevice dev(16, 16, 15);
    volatile uint32_t sq_shadow = 0, cq_shadow = 0, sq_event = 0, cq_event = 0;
    Doorbell sq, cq;
    sq.mapped = &dev.sq_tail_db;
    sq.shadow = &sq_shadow;
    sq.event_idx = &sq_event;
    sq.entries = 16;
    cq.mapped = &dev.cq_head_db;
    cq.shadow = &cq_shadow;
    cq.event_idx = &cq_event;
    cq.entries = 16;
    QueueEngine& e = dev.engine;
    e.set_doorbells(sq, cq);
    submit(e);
    e.ring_sq();  // 0 -> 1 passes event index 0
    EXPECT_EQ(dev.sq_tail_db, 1u);
    submit(e);
    e.ring_sq();  // the device has not moved its event index: shadow only
    EXPECT_EQ(dev.sq_tail_db, 1u);
    EXPECT_EQ(sq_shadow, 2u);
    EXPECT_EQ(e.counters().sq_doorbells, 2u);
    EXPECT_EQ(e.counters().doorbell_writes_skipped, 1u);
    // The device reads the shadow, as the event index lets it.
    dev.sq_tail_db = sq_shadow;
    for (uint16_t c : dev.fetch()) dev.post(c);
    EXPECT_EQ(e.poll(16, [](uint16_t, const CqEntry&) {}), 2u);
    EXPECT_EQ(dev.cq_head_db, 2u);  // 0 -> 2 passes event index 0
    EXPECT_EQ(cq_shadow, 2u);
    EXPECT_EQ(e.counters().doorbell_writes_skipped, 1u);
}

TEST(QueueEngine, BadCompletionsAreCountedAndTheQueueCarriesOn) {
    FakeDevice d(16, 16, 8);
    QueueEngine& e = d.engine;
    const int32_t a = submit(e), b = submit(e);
    e.ring_sq();
    d.fetch();
    d.post(200);                          // CID out of range
    d.post(static_cast<uint16_t>(a));     // good
    d.post(static_cast<uint16_t>(a));     // duplicate
    d.post(5);                            // in range, never submitted
    d.post(static_cast<uint16_t>(b), 0, -1, 9);  // another queue's SQ id
    std::vector<uint16_t> delivered;
    e.poll(100, [&](uint16_t cid, const CqEntry&) { delivered.push_back(cid); });
    EXPECT_EQ(delivered, std::vector<uint16_t>{static_cast<uint16_t>(a)});
    const auto& c = e.counters();
    EXPECT_EQ(c.cid_out_of_range, 1u);
    EXPECT_EQ(c.cid_not_outstanding, 2u);
    EXPECT_EQ(c.wrong_sqid, 1u);
    ASSERT_EQ(e.bad_count(), 4u);
    EXPECT_EQ(e.bad_history()[0].entry.cid, 200u);
    EXPECT_EQ(e.bad_history()[0].reason, BadCompletionReason::kCidOutOfRange);
    // A completion whose SQ head makes no sense is delivered (its CID is good) but its head is not used.
    d.post(static_cast<uint16_t>(b), 0, 15);
    e.poll(100, [&](uint16_t cid, const CqEntry&) { delivered.push_back(cid); });
    EXPECT_EQ(delivered.size(), 2u);
    EXPECT_EQ(e.counters().sq_head_invalid, 1u);
    EXPECT_EQ(e.sq_head(), 2u);
    // The queue keeps working.
    const int32_t c2 = submit(e);
    e.ring_sq();
    for (uint16_t cid : d.fetch()) d.post(cid);
    e.poll(100, [&](uint16_t cid, const CqEntry&) { delivered.push_back(cid); });
    EXPECT_EQ(delivered.back(), e.tag_of(static_cast<uint16_t>(c2)));
    EXPECT_EQ(e.outstanding(), 0u);
}

TEST(QueueEngine, ReclaimAllReportsEachOutstandingCommandOnce) {
    FakeDevice d(8, 8, 7);
    QueueEngine& e = d.engine;
    for (int i = 0; i < 5; ++i) submit(e);
    std::vector<uint16_t> lost;
    e.reclaim_all([&](uint16_t cid) { lost.push_back(cid); });
    EXPECT_EQ(lost.size(), 5u);
    EXPECT_EQ(e.outstanding(), 0u);
    e.reclaim_all([&](uint16_t) { FAIL(); });
}

}  // namespace
}  // namespace vfioq::engine
