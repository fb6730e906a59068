// SPDX-License-Identifier: MIT
// Microbenchmarks of the fast-path pieces on plain memory, with no device:
// the driver's floor (a whole queue pair against a card played in the same
// thread) beside an io_uring NOP, the queue engine's submit and complete, the
// SGL builder, a registration-cache hit, the IOVA allocator and the model's
// DMA lookup. Figures, not tests: run them with
// `meson test -C build --benchmark` or the executable itself.
#include <benchmark/benchmark.h>
#include <liburing.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <vector>

#include "../tests/support/fake_transport.hpp"
#include "dma/iova_allocator.hpp"
#include "dma/registration_cache.hpp"
#include "dma/sgl_builder.hpp"
#include "engine/queue_engine.hpp"
#include "io/engine_queue_pair.hpp"
#include "model/dma_space.hpp"
#include "sgq/sgq_codec.hpp"

namespace vfioq {
namespace {

// Rings in memory and a device that completes in order what the SQ doorbell offers.
struct Rings {
    explicit Rings(uint32_t entries) : sq(uint64_t{entries} * engine::kSqEntrySize), cq(entries), n(entries) {
        engine::RingConfig c;
        c.qid = 1;
        c.sq = sq.data();
        c.sq_entries = entries;
        c.cq = cq.data();
        c.cq_entries = entries;
        c.max_outstanding = entries - 1;
        c.sq_tail.mapped = &sq_tail_db;
        c.cq_head.mapped = &cq_head_db;
        engine = engine::QueueEngine(c);
    }
    void device_completes() {
        while (sq_head != sq_tail_db) {
            uint16_t cid;
            std::memcpy(&cid, sq.data() + uint64_t{sq_head} * engine::kSqEntrySize + 2, 2);
            sq_head = sq_head + 1 == n ? 0 : sq_head + 1;
            engine::CqEntry e{};
            e.sqhd = static_cast<uint16_t>(sq_head);
            e.sqid = 1;
            e.cid = cid;
            e.status_phase = phase ? 1 : 0;
            cq[cq_tail] = e;
            if (++cq_tail == n) {
                cq_tail = 0;
                phase = !phase;
            }
        }
    }
    std::vector<std::byte> sq;
    std::vector<engine::CqEntry> cq;
    uint32_t n;
    volatile uint32_t sq_tail_db = 0, cq_head_db = 0;
    uint32_t sq_head = 0, cq_tail = 0;
    bool phase = true;
    engine::QueueEngine engine;
};

// The driver's floor: a queue pair (trackers, SGL, entry, doorbell, completion
// check, callback) against a card played in the same thread, which completes
// what an SQ doorbell offers before the write returns. No second core, no
// cache line crossing: the figure is the driver's software alone.
class SameThreadCard final : public engine::DoorbellWriter, public io::QueueOwner {
public:
    static constexpr uint64_t kSqDoorbell = 0x1000;
    static constexpr uint16_t kQid = 1;

    void attach(std::byte* sq, engine::CqEntry* cq, uint32_t entries) {
        sq_ = sq;
        cq_ = cq;
        entries_ = entries;
    }
    void write_doorbell(uint64_t offset, uint32_t tail) override {
        if (offset != kSqDoorbell) return;
        while (sq_head_ != tail) {
            // The two fields a null card answers with, not the whole entry: the card's share of the figure is small.
            const auto* e =
                reinterpret_cast<const sgq::SubmissionEntry*>(sq_ + uint64_t{sq_head_} * engine::kSqEntrySize);
            const uint32_t length = e->length;
            const uint16_t cid = e->cid;
            sq_head_ = sq_head_ + 1 == entries_ ? 0 : sq_head_ + 1;
            cq_[cq_tail_] = engine::CqEntry{length, 0,   static_cast<uint16_t>(sq_head_),
                                            kQid,   cid, static_cast<uint16_t>(phase_ ? 1 : 0)};
            if (++cq_tail_ == entries_) {
                cq_tail_ = 0;
                phase_ = !phase_;
            }
        }
    }

    const std::string& name() const override { return name_; }
    Result<void> disable_queue(uint16_t, const std::function<void()>& drain) override {
        if (drain) drain();
        return {};
    }
    Result<void> enable_queue(uint16_t) override { return {}; }
    Result<void> reset_controller(const std::string&) override { return {}; }
    void release_queue(uint16_t, QueuePair*) override {}
    const io::ControllerHealth& health() const override { return health_; }

private:
    std::string name_ = "same-thread card";
    io::ControllerHealth health_;
    std::byte* sq_ = nullptr;
    engine::CqEntry* cq_ = nullptr;
    uint32_t entries_ = 0, sq_head_ = 0, cq_tail_ = 0;
    bool phase_ = true;
};

void BM_DriverFloor(benchmark::State& state) {
    const auto depth = static_cast<uint32_t>(state.range(0));
    const auto segments = static_cast<uint32_t>(state.range(1));
    test::FakeTransport transport(true);
    DmaContext dma(transport, "same-thread card");
    SameThreadCard card;
    volatile uint32_t cq_head_word = 0;
    io::QueuePairResources res;
    res.qid = SameThreadCard::kQid;
    res.depth = depth;
    res.sq_entries = res.cq_entries = depth + 1;
    res.sgl_page_count = depth;
    res.poll_batch = depth;
    res.command_timeout = std::chrono::seconds(30);  // as the default: the timeout bookkeeping is in the figure
    auto sq = dma.allocate(uint64_t{res.sq_entries} * engine::kSqEntrySize);
    auto cq = dma.allocate(uint64_t{res.cq_entries} * sizeof(engine::CqEntry));
    auto pages = dma.allocate(uint64_t{depth} * dma::kSglPageSize);
    auto data = dma.allocate(uint64_t{depth} * 8192);
    if (!sq || !cq || !pages || !data) {
        state.SkipWithError("DMA memory");
        return;
    }
    res.sq = std::move(*sq);
    res.cq = std::move(*cq);
    res.sgl_pages = std::move(*pages);
    std::memset(res.cq.data(), 0, res.cq.size());
    card.attach(res.sq.data(), reinterpret_cast<engine::CqEntry*>(res.cq.data()), res.sq_entries);
    res.sq_doorbell = engine::Doorbell{nullptr, &card, SameThreadCard::kSqDoorbell};
    res.cq_doorbell = engine::Doorbell{&cq_head_word, nullptr, 0};
    const dma::SglLimits limits{.max_sge = 1024, .sge_align_log2 = 0, .max_xfer_log2 = 24};
    io::EngineQueuePair qp(card, std::make_unique<sgq::SgqCodec>(limits, uint64_t{1} << 30), std::move(res), 64, dma);

    // 4 KiB per command in `segments` pieces kept apart, so that none merge.
    const uint32_t piece = 4096 / segments;
    std::vector<DmaSegment> segs(uint64_t{depth} * segments);
    std::vector<IoRequest> requests(depth);
    static uint64_t completed = 0;
    for (uint32_t i = 0; i < depth; ++i) {
        for (uint32_t k = 0; k < segments; ++k)
            segs[uint64_t{i} * segments + k] = data->segment(uint64_t{i} * 8192 + uint64_t{k} * (piece + 64), piece);
        requests[i] =
            IoRequest{Opcode::kRead, uint64_t{i} * 4096, std::span(segs).subspan(uint64_t{i} * segments, segments),
                      [](const Completion&) { ++completed; }, nullptr};
    }
    completed = 0;
    for (auto _ : state) {
        auto n = qp.submit_batch(requests);
        if (!n || *n != depth) {
            state.SkipWithError("submit_batch took less than the depth");
            break;
        }
        while (qp.outstanding() != 0) qp.poll(0);
    }
    state.SetItemsProcessed(static_cast<int64_t>(completed));
    (void)qp.close();
}
BENCHMARK(BM_DriverFloor)->ArgNames({"depth", "segments"})->ArgsProduct({{1, 256}, {1, 4, 16}});

// The reference beside it: io_uring NOPs in batches, submitted and reaped.
void BM_IoUringNop(benchmark::State& state) {
    const auto batch = static_cast<uint32_t>(state.range(0));
    io_uring ring{};
    if (::io_uring_queue_init(batch, &ring, 0) < 0) {
        state.SkipWithError("io_uring_queue_init");
        return;
    }
    uint64_t ops = 0;
    for (auto _ : state) {
        for (uint32_t i = 0; i < batch; ++i) ::io_uring_prep_nop(::io_uring_get_sqe(&ring));
        if (::io_uring_submit_and_wait(&ring, batch) < 0) {
            state.SkipWithError("io_uring_submit_and_wait");
            break;
        }
        unsigned head, seen = 0;
        io_uring_cqe* cqe;
        io_uring_for_each_cqe(&ring, head, cqe)++ seen;
        ::io_uring_cq_advance(&ring, seen);
        ops += seen;
    }
    state.SetItemsProcessed(static_cast<int64_t>(ops));
    ::io_uring_queue_exit(&ring);
}
BENCHMARK(BM_IoUringNop)->Arg(1)->Arg(256);

// Submit a batch, let the device complete it, reap it: per command.
void BM_RingSubmitComplete(benchmark::State& state) {
    const auto batch = static_cast<uint32_t>(state.range(0));
    Rings r(4097);
    uint64_t done = 0;
    for (auto _ : state) {
        for (uint32_t i = 0; i < batch; ++i) {
            const int32_t cid = r.engine.acquire_cid();
            auto* slot = static_cast<std::byte*>(r.engine.sq_slot());
            std::memset(slot, 0, engine::kSqEntrySize);
            const auto cid16 = static_cast<uint16_t>(cid);
            std::memcpy(slot + 2, &cid16, 2);
            r.engine.push();
        }
        r.engine.ring_sq();
        r.device_completes();
        done += r.engine.poll(batch, [](uint16_t, const engine::CqEntry&) {});
    }
    benchmark::DoNotOptimize(done);
    state.SetItemsProcessed(static_cast<int64_t>(done));
}
BENCHMARK(BM_RingSubmitComplete)->Arg(1)->Arg(32)->Arg(256)->Arg(4096 - 1);

void BM_SglBuild(benchmark::State& state) {
    const auto n = static_cast<uint32_t>(state.range(0));
    std::vector<std::byte> pages(64 * dma::kSglPageSize);
    dma::SglPagePool pool(pages.data(), 0x7000000, 64);
    std::vector<DmaSegment> segs;
    for (uint32_t i = 0; i < n; ++i) segs.push_back({0x100000 + uint64_t{i} * 0x2000, 512});
    const dma::SglLimits limits{.max_sge = 1024};
    sgq::SglDescriptor d1{}, d2{};
    for (auto _ : state) {
        auto r = dma::build_sgl(segs, limits, pool, d1, d2);
        pool.give_chain(r.first_page);
        benchmark::DoNotOptimize(d1);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SglBuild)->Arg(1)->Arg(2)->Arg(16)->Arg(256);

// The no-IOMMU SGL: every segment translated to physical pages through the map.
void BM_SglBuildPhysical(benchmark::State& state) {
    const auto n = static_cast<uint32_t>(state.range(0));
    std::vector<std::byte> pages(64 * dma::kSglPageSize);
    dma::BusAddressMap bus;
    std::vector<uint64_t> phys;
    for (uint64_t i = 0; i < 2 * n + 64; ++i) phys.push_back(0x40000000 + i * 0x1000);
    (void)bus.set(dma::BusAddressMap::kBase, phys);
    dma::SglPagePool pool(pages.data(), dma::BusAddressMap::kBase + 2 * uint64_t{n} * 0x1000, 64, &bus);
    std::vector<DmaSegment> segs;
    for (uint32_t i = 0; i < n; ++i) segs.push_back({dma::BusAddressMap::kBase + uint64_t{i} * 0x2000, 512});
    sgq::SglDescriptor d1{}, d2{};
    for (auto _ : state) {
        auto r = dma::build_sgl(segs, {.max_sge = 1024}, pool, d1, d2, &bus);
        pool.give_chain(r.first_page);
        benchmark::DoNotOptimize(d1);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_SglBuildPhysical)->Arg(1)->Arg(16);

class NullMapper : public dma::RegistrationCache::Mapper {
public:
    Result<uint64_t> map(uintptr_t, uint64_t size, bool) override {
        const uint64_t iova = next_;
        next_ += size + 0x1000;
        return iova;
    }
    void unmap(uint64_t, uint64_t) override {}

private:
    uint64_t next_ = 0x100000;
};

// A hit: the range is mapped already; acquire and release it.
void BM_RegistrationCacheHit(benchmark::State& state) {
    NullMapper m;
    dma::RegistrationCache cache(m, {});
    std::vector<char> memory(1 << 20);
    // Many mappings, so that the lookup searches.
    for (int i = 0; i < 1000; ++i) {
        const auto* p = reinterpret_cast<const void*>(0x10000000 + uint64_t(i) * 0x10000);
        auto e = cache.acquire(p, 4096);
        cache.release(*e, p, 4096);
    }
    auto held = cache.acquire(memory.data(), memory.size());
    for (auto _ : state) {
        auto e = cache.acquire(memory.data() + 8192, 4096);
        cache.release(*e, memory.data() + 8192, 4096);
        benchmark::DoNotOptimize(e);
    }
    cache.release(*held, memory.data(), memory.size());
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_RegistrationCacheHit);

// The same hit as the application has it: DmaContext::register_memory() and the
// Registration's release, with the context's thread safety.
void BM_DmaContextRegistrationHit(benchmark::State& state) {
    test::FakeTransport transport(true);
    DmaContext dma(transport, "registration benchmark");
    std::vector<char> memory(1 << 20);
    auto held = dma.register_memory(memory.data(), memory.size());
    if (!held) {
        state.SkipWithError("register_memory");
        return;
    }
    for (auto _ : state) {
        auto r = dma.register_memory(memory.data() + 8192, 4096);
        benchmark::DoNotOptimize(r);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_DmaContextRegistrationHit);

void BM_IovaAllocateFree(benchmark::State& state) {
    const std::vector<IovaRange> usable{{0, (uint64_t{1} << 48) - 1}};
    dma::IovaAllocator a(usable);
    // A fragmented space: every other 4 KiB held.
    std::vector<uint64_t> held;
    for (int i = 0; i < 2000; ++i) held.push_back(*a.allocate(4096, 4096));
    for (size_t i = 0; i < held.size(); i += 2) a.free(held[i], 4096);
    const auto size = static_cast<uint64_t>(state.range(0));
    for (auto _ : state) {
        auto iova = a.allocate(size, size >= (2u << 20) ? (2u << 20) : 4096);
        a.free(*iova, size);
        benchmark::DoNotOptimize(iova);
    }
    state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
}
BENCHMARK(BM_IovaAllocateFree)->Arg(4096)->Arg(2 << 20);

// The model fetching one 64-byte submission entry, with one window or with a guest
// IOMMU's tens of thousands of 4 KiB windows into one file (QEMU's vfio-user client
// behind intel-iommu maps guest RAM page by page): the lookup must stay cheap, in
// ring order above all.
void BM_ModelDmaFetch(benchmark::State& state) {
    const auto windows = static_cast<uint64_t>(state.range(0));
    constexpr uint64_t kPage = 4096;
    const uint64_t bytes = 32768 * kPage;
    UniqueFd ram(::memfd_create("bench-ram", MFD_CLOEXEC));
    if (!ram || ::ftruncate(ram.get(), static_cast<off_t>(bytes)) != 0) {
        state.SkipWithError("memfd");
        return;
    }
    model::DmaSpace dma;
    const uint64_t window = bytes / windows;
    for (uint64_t i = 0; i < windows; ++i)
        if (!dma.map(0x100000000ull + i * window, window, true, true, UniqueFd(::dup(ram.get())), i * window, 1 << 20)) {
            state.SkipWithError("map");
            return;
        }
    std::array<std::byte, 64> entry{};
    const bool scattered = state.range(1) != 0;
    const uint64_t ring = 4096 * 64;  // a 4096-entry submission ring: 64 pages
    uint64_t at = 0;
    for (auto _ : state) {
        // In ring order (what the card does), or a new page each time, all over the space.
        at = scattered ? (at + 40503 * kPage + 64) % bytes : (at + 64) % ring;
        if (!dma.read(0x100000000ull + (at & ~uint64_t{63}), entry)) state.SkipWithError("read");
        benchmark::DoNotOptimize(entry);
    }
}
BENCHMARK(BM_ModelDmaFetch)->ArgNames({"windows", "scattered"})->ArgsProduct({{1, 32768}, {0, 1}});

}  // namespace
}  // namespace vfioq

BENCHMARK_MAIN();
