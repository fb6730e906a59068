// SPDX-License-Identifier: MIT
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "dma/registration_cache.hpp"

namespace vfioq::dma {
namespace {

// Records what is mapped; IOVAs are handed out upwards.
class FakeMapper : public RegistrationCache::Mapper {
public:
    Result<uint64_t> map(uintptr_t vaddr, uint64_t size, bool writable) override {
        if (fail_next) {
            fail_next = false;
            return make_error(ENOMEM, "refused");
        }
        ++maps;
        const uint64_t iova = next;
        next += size + 0x1000;
        live[iova] = {vaddr, size};
        writable_at[iova] = writable;
        return iova;
    }
    Result<HostProtection> protection(uintptr_t a, uintptr_t b) override {
        for (uintptr_t page = a; page < b; page += 4096) {
            if (unmapped.count(page)) return make_error(EFAULT, "not mapped");
            if (read_only.count(page)) return HostProtection{false};
        }
        return HostProtection{true};
    }
    void unmap(uint64_t iova, uint64_t size) override {
        ++unmaps;
        auto it = live.find(iova);
        ASSERT_NE(it, live.end());
        EXPECT_EQ(it->second.second, size);
        live.erase(it);
    }
    uint64_t next = 0x100000;
    int maps = 0, unmaps = 0;
    bool fail_next = false;
    std::map<uint64_t, std::pair<uintptr_t, uint64_t>> live;
    std::map<uint64_t, bool> writable_at;
    std::set<uintptr_t> read_only, unmapped;  // pages
};

constexpr uint64_t kPage = 4096;
const void* at(uintptr_t a) { return reinterpret_cast<const void*>(a); }

TEST(RegistrationCache, CoveredRangeIsAHitWithoutMapping) {
    FakeMapper m;
    RegistrationCache c(m, {});
    auto e = c.acquire(at(0x10010), 100);
    ASSERT_TRUE(e);
    EXPECT_EQ((*e)->start, 0x10000u);
    EXPECT_EQ((*e)->end, 0x11000u);
    EXPECT_EQ((*e)->iova_of(at(0x10010)), (*e)->iova + 0x10);
    auto again = c.acquire(at(0x10800), 0x800);
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *e);
    EXPECT_EQ((*e)->refs, 2u);
    EXPECT_EQ(m.maps, 1);
    EXPECT_EQ(c.stats().hits, 1u);
}

TEST(RegistrationCache, OverlappingAndTouchingRangesMergeIntoOneMapping) {
    FakeMapper m;
    RegistrationCache c(m, {});
    auto a = c.acquire(at(0x10000), kPage);
    ASSERT_TRUE(a);
    c.release(*a, at(0x10000), kPage);  // cached, unheld
    auto b = c.acquire(at(0x12000), kPage);
    ASSERT_TRUE(b);  // held
    auto merged = c.acquire(at(0x11000), kPage);  // touches both
    ASSERT_TRUE(merged);
    EXPECT_EQ((*merged)->start, 0x10000u);
    EXPECT_EQ((*merged)->end, 0x13000u);
    EXPECT_EQ(c.stats().merges, 1u);
    // The unheld one went at once; the held one stays mapped until released.
    EXPECT_EQ(m.live.size(), 2u);
    c.release(*b, at(0x12000), kPage);
    EXPECT_EQ(m.live.size(), 1u);
    // The whole span is now one hit.
    auto hit = c.acquire(at(0x10000), 3 * kPage);
    ASSERT_TRUE(hit);
    EXPECT_EQ(*hit, *merged);
}

TEST(RegistrationCache, LeastRecentlyUsedUnheldMappingIsEvictedUnderTheMappingBudget) {
    FakeMapper m;
    RegistrationCache c(m, {.max_mappings = 3, .max_bytes = ~0ull});
    std::vector<RegistrationCache::Entry*> e;
    for (uintptr_t i = 0; i < 3; ++i) {
        auto r = c.acquire(at(0x100000 + i * 0x10000), kPage);
        ASSERT_TRUE(r);
        e.push_back(*r);
    }
    c.release(e[0], at(0x100000), kPage);
    c.release(e[1], at(0x110000), kPage);
    // Touch entry 0 again: entry 1 is now the least recently used.
    auto again = c.acquire(at(0x100000), kPage);
    ASSERT_TRUE(again);
    c.release(*again, at(0x100000), kPage);
    auto fourth = c.acquire(at(0x200000), kPage);
    ASSERT_TRUE(fourth);
    EXPECT_EQ(c.stats().evictions, 1u);
    EXPECT_EQ(c.find_held(at(0x110000), 1), nullptr);
    auto back = c.acquire(at(0x100000), kPage);  // entry 0 survived: a hit
    ASSERT_TRUE(back);
    EXPECT_EQ(c.stats().hits, 2u);
}

TEST(RegistrationCache, BudgetUsedUpByHeldMappingsIsAClearError) {
    FakeMapper m;
    RegistrationCache c(m, {.max_mappings = 100, .max_bytes = 2 * kPage});
    auto a = c.acquire(at(0x100000), 2 * kPage);
    ASSERT_TRUE(a);
    auto b = c.acquire(at(0x200000), kPage);
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error().code, ENOSPC);
    EXPECT_NE(b.error().message.find("still held"), std::string::npos) << b.error().message;
    c.release(*a, at(0x100000), 2 * kPage);
    EXPECT_TRUE(c.acquire(at(0x200000), kPage));  // the unheld one makes room
}

TEST(RegistrationCache, ExplicitUnregisterAndFlush) {
    FakeMapper m;
    RegistrationCache c(m, {});
    auto a = c.acquire(at(0x100000), kPage);
    ASSERT_TRUE(a);
    EXPECT_EQ(c.unregister(at(0x100000), kPage).error().code, EBUSY);
    EXPECT_EQ(c.unregister(at(0x900000), kPage).error().code, ENOENT);
    c.release(*a, at(0x100000), kPage);
    EXPECT_TRUE(c.unregister(at(0x100000), kPage));
    EXPECT_TRUE(m.live.empty());
    auto b = c.acquire(at(0x300000), kPage);
    auto d = c.acquire(at(0x500000), kPage);
    ASSERT_TRUE(b && d);
    c.release(*b, at(0x300000), kPage);
    c.flush();
    EXPECT_EQ(m.live.size(), 1u);  // the held one stays
    EXPECT_NE(c.find_held(at(0x500000), 10), nullptr);
    EXPECT_EQ(c.find_held(at(0x300000), 10), nullptr);
}

TEST(RegistrationCache, BadInputAndMapperFailureLoseNothing) {
    FakeMapper m;
    RegistrationCache c(m, {});
    EXPECT_EQ(c.acquire(nullptr, 10).error().code, EINVAL);
    EXPECT_EQ(c.acquire(at(0x1000), 0).error().code, EINVAL);
    EXPECT_EQ(c.acquire(at(~uintptr_t{0} - 4), 100).error().code, EINVAL);
    auto held = c.acquire(at(0x100000), kPage);
    ASSERT_TRUE(held);
    m.fail_next = true;
    auto r = c.acquire(at(0x101000), kPage);  // would merge with the held one
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENOMEM);
    // The held registration is untouched and still found.
    EXPECT_EQ(c.find_held(at(0x100000), kPage), *held);
    EXPECT_EQ(m.live.size(), 1u);
}

TEST(RegistrationCache, EverythingIsUnmappedAtTheEnd) {
    FakeMapper m;
    {
        RegistrationCache c(m, {});
        auto a = c.acquire(at(0x100000), kPage);
        auto b = c.acquire(at(0x101000), kPage);  // merges; a is superseded but held
        ASSERT_TRUE(a && b);
        EXPECT_EQ(m.live.size(), 2u);
    }
    EXPECT_TRUE(m.live.empty());
    EXPECT_EQ(m.maps, m.unmaps);
}

TEST(RegistrationCache, ADroppedRegistrationIsUnreachableThoughItsNeighbourKeepsTheMapping) {
    FakeMapper m;
    RegistrationCache c(m, {});
    auto x = c.acquire(at(0x10000), 2 * kPage);
    auto y = c.acquire(at(0x12000), 2 * kPage);  // touches x: merged into one mapping
    ASSERT_TRUE(x && y);
    EXPECT_EQ(c.stats().merges, 1u);
    c.release(*x, at(0x10000), 2 * kPage);
    EXPECT_EQ(c.find_held(at(0x10000), 2 * kPage), nullptr) << "x was given up";
    EXPECT_EQ(c.find_held(at(0x11fff), 2), nullptr) << "straddling x and y";
    EXPECT_NE(c.find_held(at(0x12000), 2 * kPage), nullptr);
    EXPECT_TRUE(c.unregister(at(0x10000), 2 * kPage)) << "nothing holds x";
    EXPECT_EQ(m.live.size(), 1u) << "the mapping stays while y holds it";
    c.release(*y, at(0x12000), 2 * kPage);
    EXPECT_TRUE(m.live.empty()) << "unregistered: not cached once y lets go";
}

TEST(RegistrationCache, WithinAPageOnlyTheRegisteredBytesAreReachable) {
    FakeMapper m;
    RegistrationCache c(m, {});
    auto a = c.acquire(at(0x10000), 100);
    ASSERT_TRUE(a);
    EXPECT_NE(c.find_held(at(0x10000), 100), nullptr);
    EXPECT_EQ(c.find_held(at(0x10000 + 200), 100), nullptr);
    EXPECT_EQ(c.find_held(at(0x10000 + 50), 51), nullptr);
    EXPECT_EQ(c.first_unheld(at(0x10000 + 50), 100), 0x10000u + 100);
    EXPECT_EQ(c.unregister(at(0x10000 + 50), 10).error().code, EBUSY);
    EXPECT_TRUE(c.unregister(at(0x10000 + 200), 10)) << "not held, so it may go; the hold keeps the mapping";
    EXPECT_NE(c.find_held(at(0x10000), 100), nullptr);
    // Two registrations side by side reach across the seam, as one buffer.
    auto b = c.acquire(at(0x10000 + 100), 100);
    ASSERT_TRUE(b);
    EXPECT_EQ(*b, *a) << "a hit on the same page";
    EXPECT_NE(c.find_held(at(0x10000), 200), nullptr);
    c.release(*a, at(0x10000), 100);
    EXPECT_EQ(c.find_held(at(0x10000), 200), nullptr);
    EXPECT_NE(c.find_held(at(0x10000 + 100), 100), nullptr);
}

TEST(RegistrationCache, AHoldStaysReachableAfterTheMappingThatMergedItGoes) {
    FakeMapper m;
    RegistrationCache c(m, {});
    auto x = c.acquire(at(0x10000), kPage);
    auto y = c.acquire(at(0x11000), kPage);  // x's mapping is superseded, still held
    ASSERT_TRUE(x && y);
    c.release(*y, at(0x11000), kPage);
    c.flush();  // the merged mapping, unheld now, goes
    const auto* found = c.find_held(at(0x10000), kPage);
    ASSERT_NE(found, nullptr);
    EXPECT_EQ(found, *x) << "x's own mapping, which x's hold keeps mapped";
    c.release(*x, at(0x10000), kPage);
    EXPECT_TRUE(m.live.empty());
}

TEST(RegistrationCache, ReadOnlyMemoryGetsAReadOnlyMappingOfItsOwn) {
    FakeMapper m;
    m.read_only.insert(0x11000);
    RegistrationCache c(m, {});
    auto w = c.acquire(at(0x10000), kPage);
    auto r = c.acquire(at(0x11000), kPage);
    ASSERT_TRUE(w && r);
    EXPECT_NE(*w, *r);
    EXPECT_EQ(c.stats().merges, 0u);
    EXPECT_TRUE((*w)->writable);
    EXPECT_FALSE((*r)->writable);
    EXPECT_FALSE(m.writable_at.at((*r)->iova));
    // The pages change protection while cached: the stale mapping is dropped, not reused.
    c.release(*r, at(0x11000), kPage);
    m.read_only.clear();
    auto again = c.acquire(at(0x11000), 2 * kPage);
    ASSERT_TRUE(again);
    EXPECT_TRUE((*again)->writable);
    // Held with the old protection: a clear refusal.
    m.read_only.insert(0x20000);
    auto ro = c.acquire(at(0x20000), kPage);
    ASSERT_TRUE(ro);
    m.read_only.clear();
    auto clash = c.acquire(at(0x1f000), 2 * kPage);
    ASSERT_FALSE(clash);
    EXPECT_EQ(clash.error().code, EBUSY);
    EXPECT_NE(clash.error().message.find("protection changed"), std::string::npos) << clash.error().message;
}

TEST(RegistrationCache, MemoryThatIsNotMappedIsRefusedBeforeAnythingIsMapped) {
    FakeMapper m;
    m.unmapped.insert(0x31000);
    RegistrationCache c(m, {});
    auto r = c.acquire(at(0x30000), 3 * kPage);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EFAULT);
    EXPECT_EQ(m.maps, 0);
    EXPECT_EQ(c.find_held(at(0x30000), 1), nullptr);
}

// The last mapping found is tried before the index; once it is unmapped, evicted or
// merged away, a registration must find what is live now, never that entry.
TEST(RegistrationCache, TheLastHitIsForgottenWhenItsMappingGoes) {
    FakeMapper m;
    RegistrationCache c(m, {2, ~0ull});
    auto a = c.acquire(at(0x10000), kPage);
    ASSERT_TRUE(a);
    c.release(*a, at(0x10000), kPage);
    ASSERT_TRUE(c.unregister(at(0x10000), kPage));
    auto again = c.acquire(at(0x10000), kPage);
    ASSERT_TRUE(again);
    EXPECT_EQ(m.maps, 2) << "unregistered: mapped anew";
    EXPECT_EQ(c.stats().hits, 0u);
    // Merged away while held: the next registration inside it finds the merged mapping.
    auto b = c.acquire(at(0x11000), kPage);
    ASSERT_TRUE(b);
    EXPECT_EQ((*b)->start, 0x10000u);
    EXPECT_EQ((*b)->end, 0x12000u);
    auto inside = c.acquire(at(0x10000), 16);
    ASSERT_TRUE(inside);
    EXPECT_EQ(*inside, *b);
    EXPECT_TRUE((*b)->live);
    c.release(*inside, at(0x10000), 16);
    c.release(*again, at(0x10000), kPage);
    c.release(*b, at(0x11000), kPage);
    // Evicted by the budget of two mappings: a later hit cannot be the evicted entry.
    for (uintptr_t base : {0x40000u, 0x50000u, 0x60000u}) {
        auto e = c.acquire(at(base), kPage);
        ASSERT_TRUE(e);
        c.release(*e, at(base), kPage);
    }
    EXPECT_GE(c.stats().evictions, 2u);
    auto first = c.acquire(at(0x10000), kPage);
    ASSERT_TRUE(first);
    EXPECT_TRUE((*first)->live);
    EXPECT_EQ(m.live.count((*first)->iova), 1u) << "the entry found is mapped";
    c.release(*first, at(0x10000), kPage);
}

}  // namespace
}  // namespace vfioq::dma
