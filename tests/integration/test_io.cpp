// SPDX-License-Identifier: MIT
// The I/O path end to end: Controller and QueuePair over the vfio-user
// client against the reference model, with its queue processing.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/mman.h>

#include <cstring>
#include <map>
#include <numeric>
#include <random>
#include <set>

#include "../support/model_card.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/sgq_commands.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

using Card = test::ModelCard;

// Counts completions per context (a command's number) and keeps the last status of each.
struct Tally {
    std::map<uintptr_t, int> count;
    std::map<uintptr_t, IoStatus> status;
    std::vector<uintptr_t> order;
    static void callback(const Completion& c) {
        auto* t = static_cast<Tally*>(current);
        const auto key = reinterpret_cast<uintptr_t>(c.context);
        t->count[key]++;
        t->status[key] = c.status;
        t->bytes[key] = c.bytes;
        t->order.push_back(key);
    }
    std::map<uintptr_t, uint32_t> bytes;
    static inline Tally* current = nullptr;
    Tally() { current = this; }
};

void* key(uintptr_t n) { return reinterpret_cast<void*>(n); }

void drain(QueuePair& qp, int ms = 10000) {
    EXPECT_TRUE(test::eventually(
        [&] {
            qp.poll();
            return qp.outstanding() == 0;
        },
        ms))
        << qp.outstanding() << " still outstanding";
}

IoStatus run_one(QueuePair& qp, const IoRequest& req) {
    Tally t;
    IoRequest r = req;
    r.callback = Tally::callback;
    r.context = key(1);
    auto s = qp.submit(r);
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    drain(qp);
    return t.status.count(1) ? t.status[1] : IoStatus::kCancelled;
}

void fill(DmaBuffer& b, uint32_t seed) {
    std::mt19937 rng(seed);
    for (size_t i = 0; i < b.size(); ++i) b.data()[i] = static_cast<std::byte>(rng());
}

TEST(Io, WriteAndReadBackThroughEveryDescriptorLayout) {
    Card card;
    auto qp = card.queue_pair({.depth = 16});
    auto out = card.buffer(1 << 20), in = card.buffer(1 << 20);
    fill(out, 1);
    for (uint32_t pieces : {1u, 2u, 3u, 257u, 300u, 1024u}) {
        // `pieces` segments of 7 bytes at odd offsets, 9 bytes apart: none merge.
        std::vector<DmaSegment> wsegs, rsegs;
        for (uint32_t i = 0; i < pieces; ++i) {
            wsegs.push_back(out.segment(1 + i * 16, 7));
            rsegs.push_back(in.segment(3 + i * 16, 7));
        }
        std::memset(in.data(), 0, in.size());
        ASSERT_EQ(run_one(*qp, {Opcode::kWrite, 0x5001, wsegs}), IoStatus::kSuccess) << pieces;
        ASSERT_EQ(run_one(*qp, {Opcode::kRead, 0x5001, rsegs}), IoStatus::kSuccess) << pieces;
        for (uint32_t i = 0; i < pieces; ++i)
            ASSERT_EQ(std::memcmp(out.data() + 1 + i * 16, in.data() + 3 + i * 16, 7), 0) << pieces << " " << i;
    }
}

TEST(Io, FourThousandNinetySixOutstandingEachCompletedExactlyOnce) {
    Card card;
    auto qp = card.queue_pair({.depth = 4096});
    ASSERT_EQ(qp->capacity(), 4096u);
    auto buf = card.buffer(4096 * 64);
    fill(buf, 2);
    std::vector<DmaSegment> segs(4096);
    std::vector<IoRequest> reqs(4096);
    Tally t;
    for (uintptr_t i = 0; i < 4096; ++i) {
        segs[i] = buf.segment(i * 64, 64);
        reqs[i] = {Opcode::kWrite, i * 64, {&segs[i], 1}, Tally::callback, key(i)};
    }
    auto n = qp->submit_batch(reqs);
    ASSERT_TRUE(n);
    EXPECT_EQ(*n, 4096u);
    EXPECT_EQ(qp->outstanding(), 4096u);
    EXPECT_EQ(qp->stats().sq_doorbells, 1u) << "one doorbell for the batch";
    // Full: back-pressure, not a block and not a drop.
    auto extra = qp->submit({Opcode::kNop, 0, {}, Tally::callback, key(9999)});
    ASSERT_FALSE(extra);
    EXPECT_EQ(extra.error().code, EAGAIN);
    // Back-pressure is said with a static reason: nothing formatted or allocated on the fast path.
    EXPECT_TRUE(extra.error().message.empty()) << extra.error().message;
    ASSERT_NE(extra.error().reason, nullptr);
    EXPECT_NE(extra.error().text().find("full"), std::string::npos) << extra.error().text();
    drain(*qp);
    ASSERT_EQ(t.count.size(), 4096u);
    for (auto& [k, c] : t.count) {
        EXPECT_EQ(c, 1) << "command " << k;
        EXPECT_EQ(t.status[k], IoStatus::kSuccess);
        EXPECT_EQ(t.bytes[k], 64u);
    }
    EXPECT_EQ(qp->stats().device_errors, 0u);
    EXPECT_EQ(*card.device->read64(sgq::kRegisterBar, sgq::kRegStatCmds), 4096u);
    EXPECT_EQ(std::memcmp(card.model.device->devmem().data(), buf.data(), buf.size()), 0);
}

TEST(Io, OutOfOrderCompletionFromWorkerThreads) {
    model::ModelConfig cfg;
    cfg.out_of_order = true;
    cfg.workers = 2;
    cfg.latency = std::chrono::microseconds(100);
    Card card(cfg);
    auto qp = card.queue_pair({.depth = 512});
    auto out = card.buffer(512 * 256), in = card.buffer(512 * 256);
    fill(out, 3);
    for (Opcode op : {Opcode::kWrite, Opcode::kRead}) {
        Tally t;
        std::vector<DmaSegment> segs(512);
        std::vector<IoRequest> reqs(512);
        for (uintptr_t i = 0; i < 512; ++i) {
            segs[i] = (op == Opcode::kWrite ? out : in).segment(i * 256, 256);
            reqs[i] = {op, i * 256, {&segs[i], 1}, Tally::callback, key(i)};
        }
        ASSERT_EQ(*qp->submit_batch(reqs), 512u);
        drain(*qp);
        ASSERT_EQ(t.count.size(), 512u);
        for (auto& [k, c] : t.count) ASSERT_EQ(c, 1);
        std::vector<uintptr_t> sorted(t.order);
        std::sort(sorted.begin(), sorted.end());
        EXPECT_NE(sorted, t.order) << "completions came in submission order";
    }
    EXPECT_EQ(std::memcmp(out.data(), in.data(), out.size()), 0);
}

// A raw submission entry for the status tests.
sgq::SubmissionEntry raw(uint8_t opc, uint32_t length, uint64_t devaddr, sgq::SglDescriptor d1 = {},
                         sgq::SglDescriptor d2 = {}) {
    sgq::SubmissionEntry e{};
    e.opcode = opc;
    e.length = length;
    e.devaddr = devaddr;
    e.dptr1 = d1;
    e.dptr2 = d2;
    return e;
}

IoStatus run_raw(QueuePair& qp, const sgq::SubmissionEntry& e) {
    Tally t;
    auto s = qp.submit_raw(std::as_bytes(std::span(&e, 1)), Tally::callback, key(1));
    EXPECT_TRUE(s) << (s ? "" : s.error().message);
    drain(qp);
    return t.status.count(1) ? t.status[1] : IoStatus::kCancelled;
}

TEST(Io, EveryStatusCodeOfTheSpecSurfacesByName) {
    Card card;
    auto qp = card.queue_pair({.depth = 8});
    auto buf = card.buffer(4096);
    const auto data = [&](uint32_t len, uint64_t off = 0) {
        return sgq::SglDescriptor::make(sgq::kSglData, buf.iova() + off, len);
    };
    const uint64_t devmem = card.ctrl->info().devmem_size;
    std::map<std::string, IoStatus> seen;
    auto expect = [&](const char* name, IoStatus got) {
        EXPECT_STREQ(io_status_name(got), name);
        seen[name] = got;
    };
    expect("SUCCESS", run_raw(*qp, raw(sgq::kOpWrite, 100, 0, data(100))));
    expect("INVALID_OPCODE", run_raw(*qp, raw(0x7F, 100, 0, data(100))));
    auto flagged = raw(sgq::kOpWrite, 100, 0, data(100));
    flagged.flags = 1;
    expect("INVALID_FIELD", run_raw(*qp, flagged));
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpNop, 5, 0)), IoStatus::kInvalidField) << "a NOP with a length";
    expect("DEVADDR_RANGE", run_raw(*qp, raw(sgq::kOpRead, 100, devmem - 50, data(100))));
    expect("LENGTH_INVALID", run_raw(*qp, raw(sgq::kOpWrite, 0, 0, data(100))));
    expect("SGL_INVALID", run_raw(*qp, raw(sgq::kOpWrite, 100, 0, sgq::SglDescriptor::make(0x5, buf.iova(), 100))));
    expect("SGL_LENGTH_MISMATCH", run_raw(*qp, raw(sgq::kOpWrite, 100, 0, data(50))));
    expect("DMA_FAULT",
           run_raw(*qp, raw(sgq::kOpRead, 100, 0, sgq::SglDescriptor::make(sgq::kSglData, 0xDEAD0000, 100))));
    EXPECT_EQ(*card.device->read64(sgq::kRegisterBar, sgq::kRegErrAddr), 0xDEAD0000u);
    EXPECT_TRUE(*card.device->read32(sgq::kRegisterBar, sgq::kRegErrStatus) & sgq::kErrDmaFault);
    card.model.device->inject_command_status(static_cast<uint16_t>(sgq::Status::kInternal), 1);
    expect("INTERNAL", run_raw(*qp, raw(sgq::kOpWrite, 100, 0, data(100))));
    card.model.device->inject_command_status(0x33, 1);
    Tally t;
    auto e = raw(sgq::kOpWrite, 100, 0, data(100));
    ASSERT_TRUE(qp->submit_raw(std::as_bytes(std::span(&e, 1)), Tally::callback, key(1)));
    drain(*qp);
    EXPECT_EQ(t.status[1], IoStatus::kUnknownDeviceStatus);
    qp.reset();

    // ABORTED: a slow card whose queue is disabled with commands fetched.
    model::ModelConfig slow;
    slow.latency = std::chrono::seconds(30);  // fetched, and still waiting when the queue is disabled
    Card slow_card(slow);
    auto sqp = slow_card.queue_pair({.depth = 8});
    auto sbuf = slow_card.buffer(4096);
    const DmaSegment seg = sbuf.segment(0, 64);
    Tally aborted;
    for (uintptr_t i = 0; i < 4; ++i) ASSERT_TRUE(sqp->submit({Opcode::kWrite, 0, {&seg, 1}, Tally::callback, key(i)}));
    ASSERT_TRUE(test::eventually([&] { return *slow_card.device->read64(sgq::kRegisterBar, sgq::kRegStatCmds) == 0 &&
                                              slow_card.model.device->queue_config(0).status != 0; }));
    ASSERT_TRUE(test::eventually([&] { return slow_card.model.device->commands_fetched() >= 4; }));
    ASSERT_TRUE(sqp->close());
    ASSERT_EQ(aborted.count.size(), 4u);
    for (auto& [k, s] : aborted.status) expect("ABORTED", s);
    EXPECT_EQ(seen.size(), 10u) << "the spec defines ten status codes";
}

TEST(Io, NullDataModeCompletesReadsAndWritesWithoutMovingData) {
    model::ModelConfig config;
    config.null_data = true;
    config.cpu = 0;  // pinning the model's thread is only a placement
    Card card(config);
    auto qp = card.queue_pair({.depth = 8});
    auto out = card.buffer(8192), in = card.buffer(8192);
    fill(out, 3);
    std::memset(in.data(), 0xAB, in.size());
    const DmaSegment w[] = {out.segment(0, 4096), out.segment(5000, 100)};
    const DmaSegment r[] = {in.segment(0, 4196)};
    Tally t;
    ASSERT_TRUE(qp->submit({Opcode::kWrite, 0x1000, w, Tally::callback, key(1)}));
    ASSERT_TRUE(qp->submit({Opcode::kRead, 0x1000, r, Tally::callback, key(2)}));
    drain(*qp);
    EXPECT_EQ(t.status[1], IoStatus::kSuccess);
    EXPECT_EQ(t.status[2], IoStatus::kSuccess);
    EXPECT_EQ(t.bytes[1], 4196u) << "the card reports the length as moved";
    EXPECT_EQ(t.bytes[2], 4196u);
    for (size_t i = 0; i < in.size(); ++i) ASSERT_EQ(in.data()[i], std::byte{0xAB}) << "byte " << i << " was written";
    // Every check still runs: a card address out of range, a length the SGL does not add up to.
    const auto d = sgq::SglDescriptor::make(sgq::kSglData, in.iova(), 16);
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpRead, 16, (64ull << 20) - 8, d)), IoStatus::kDevaddrRange);
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpRead, 32, 0, d)), IoStatus::kSglLengthMismatch);
}

TEST(Io, MalformedSglsAreRefusedBeforeAnyDataMoves) {
    Card card;
    auto qp = card.queue_pair({.depth = 8});
    auto buf = card.buffer(64 * 1024);
    fill(buf, 9);
    auto* arrays = reinterpret_cast<sgq::SglDescriptor*>(buf.data());  // segment arrays at the buffer's start
    const uint64_t arr_iova = buf.iova();
    const uint64_t data_iova = buf.iova() + 0x8000;
    using D = sgq::SglDescriptor;
    auto data = [&](uint32_t len, uint64_t off = 0) { return D::make(sgq::kSglData, data_iova + off, len); };
    auto devmem = card.model.device->devmem();
    std::memset(devmem.data(), 0, 4096);
    auto untouched = [&] {
        return std::all_of(devmem.begin(), devmem.begin() + 4096, [](std::byte b) { return b == std::byte{0}; });
    };
    // A SEGMENT array whose chain descriptor is not last.
    arrays[0] = D::make(sgq::kSglSegment, arr_iova + 0x1000, 16);
    arrays[1] = data(100);
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 100, 0, D::make(sgq::kSglSegment, arr_iova, 32))), IoStatus::kSglInvalid);
    // A LAST_SEGMENT array that chains.
    arrays[0] = data(50);
    arrays[1] = D::make(sgq::kSglLastSegment, arr_iova + 0x1000, 16);
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 100, 0, D::make(sgq::kSglLastSegment, arr_iova, 32))),
              IoStatus::kSglInvalid);
    // DPTR1 a segment and DPTR2 used too.
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 100, 0, D::make(sgq::kSglLastSegment, arr_iova, 16), data(50))),
              IoStatus::kSglInvalid);
    // A segment array that is not 16-byte aligned, or not a multiple of 16 long.
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 50, 0, D::make(sgq::kSglLastSegment, arr_iova + 8, 16))),
              IoStatus::kSglInvalid);
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 50, 0, D::make(sgq::kSglLastSegment, arr_iova, 24))),
              IoStatus::kSglInvalid);
    // A chain that loops back on itself ends in SGL_INVALID, not a hang.
    arrays[0] = data(1);
    arrays[1] = D::make(sgq::kSglSegment, arr_iova, 32);
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 100, 0, D::make(sgq::kSglSegment, arr_iova, 32))), IoStatus::kSglInvalid);
    // More DATA descriptors than MAX_SGE (1024).
    for (int i = 0; i < 1025; ++i) arrays[i] = data(1, static_cast<uint64_t>(i));
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 1025, 0, D::make(sgq::kSglLastSegment, arr_iova, 1025 * 16))),
              IoStatus::kSglInvalid);
    // Reserved bytes set inside an array descriptor.
    arrays[0] = data(100);
    arrays[0].reserved[1] = 1;
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 100, 0, D::make(sgq::kSglLastSegment, arr_iova, 16))),
              IoStatus::kInvalidField);
    // An array the IOMMU refuses.
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 100, 0, D::make(sgq::kSglLastSegment, 0xBAD000, 16))),
              IoStatus::kDmaFault);
    // The last DATA descriptor is refused by the IOMMU: bytes before it land, none after.
    arrays[0] = data(100);
    arrays[1] = D::make(sgq::kSglData, 0xBAD000, 100);
    EXPECT_TRUE(untouched()) << "no malformed command moved data";
    Tally t;
    auto e = raw(sgq::kOpWrite, 200, 0, D::make(sgq::kSglLastSegment, arr_iova, 32));
    ASSERT_TRUE(qp->submit_raw(std::as_bytes(std::span(&e, 1)), Tally::callback, key(1)));
    drain(*qp);
    EXPECT_EQ(t.status[1], IoStatus::kDmaFault);
    EXPECT_EQ(t.bytes[1], 100u);
    EXPECT_EQ(std::memcmp(devmem.data(), buf.data() + 0x8000, 100), 0);
    EXPECT_TRUE(std::all_of(devmem.begin() + 100, devmem.begin() + 4096, [](std::byte b) { return b == std::byte{0}; }));
    // A well-formed chain across two arrays works.
    arrays[0] = data(10);
    arrays[1] = D::make(sgq::kSglLastSegment, arr_iova + 0x1000, 32);
    arrays[256] = data(20, 10);
    arrays[257] = data(30, 30);
    EXPECT_EQ(run_raw(*qp, raw(sgq::kOpWrite, 60, 0, D::make(sgq::kSglSegment, arr_iova, 32))), IoStatus::kSuccess);
}

TEST(Io, ACompletionDoorbellReleasingUnpostedEntriesHaltsTheQueue) {
    Card card;
    auto qp = card.queue_pair({.depth = 8});
    EXPECT_EQ(run_one(*qp, {Opcode::kNop, 0, {}}), IoStatus::kSuccess);
    // One entry was posted and released (head 1); releasing up to 5 is a lie.
    ASSERT_TRUE(card.device->write32(sgq::kRegisterBar, sgq::cq_head_doorbell(0, 0), 5));
    ASSERT_TRUE(test::eventually([&] {
        return (*card.device->read32(sgq::kRegisterBar, sgq::queue_register(0, sgq::kQRegStatus)) &
                sgq::kQStatusError) != 0;
    }));
    EXPECT_TRUE(*card.device->read32(sgq::kRegisterBar, sgq::kRegErrStatus) & sgq::kErrDoorbell);
    ASSERT_TRUE(qp->close());
    // Disabling clears the halt; a new queue pair on the same id works.
    auto again = card.queue_pair({.depth = 8});
    EXPECT_EQ(run_one(*again, {Opcode::kNop, 0, {}}), IoStatus::kSuccess);
}

TEST(Io, InterruptModeWaitsAndTheEventfdWorksInAnEventLoop) {
    Card card;
    auto qp = card.queue_pair({.depth = 64, .interrupts = true});
    ASSERT_GE(qp->event_fd(), 0);
    Tally t;
    ASSERT_TRUE(qp->submit({Opcode::kNop, 0, {}, Tally::callback, key(1)}));
    uint32_t got = 0;
    for (int i = 0; i < 20 && got == 0; ++i) {
        auto n = qp->wait(std::chrono::milliseconds(1000));
        ASSERT_TRUE(n) << n.error().message;
        got += *n;
    }
    EXPECT_EQ(got, 1u);
    EXPECT_GE(qp->stats().interrupts, 1u);
    // With nothing outstanding, a wait times out with nothing.
    auto none = qp->wait(std::chrono::milliseconds(30));
    ASSERT_TRUE(none);
    EXPECT_EQ(*none, 0u);

    // The application's own loop: poll(2) on the eventfd, then poll the queue.
    auto qp2 = card.queue_pair({.depth = 64, .interrupts = true});
    ASSERT_TRUE(qp2->submit({Opcode::kNop, 0, {}, Tally::callback, key(2)}));
    pollfd p{qp2->event_fd(), POLLIN, 0};
    ASSERT_EQ(::poll(&p, 1, 5000), 1);
    uint64_t v;
    ASSERT_EQ(::read(qp2->event_fd(), &v, sizeof(v)), static_cast<ssize_t>(sizeof(v)));
    EXPECT_EQ(qp2->poll(), 1u);
    EXPECT_EQ(t.count[2], 1);
}

TEST(Io, CoalescingRaisesFewerInterruptsThanCompletions) {
    Card card;
    auto qp = card.queue_pair({.depth = 256, .interrupts = true, .coalesce_entries = 32});
    Tally t;
    std::vector<IoRequest> reqs(256, IoRequest{Opcode::kNop, 0, {}, Tally::callback, key(1)});
    ASSERT_EQ(*qp->submit_batch(reqs), 256u);
    uint32_t got = 0;
    for (int i = 0; i < 100 && got < 256; ++i) got += *qp->wait(std::chrono::milliseconds(200));
    EXPECT_EQ(got, 256u);
    const uint64_t raised = card.model.device->msix().delivered(1);
    EXPECT_GE(raised, 1u);
    EXPECT_LE(raised, 256u / 32 + 2) << "threshold 32 must coalesce";
}

TEST(Io, PollingWorksWhenTheCompletionRingIsSmallerThanTheDepth) {
    Card card;
    auto qp = card.queue_pair({.depth = 64, .cq_entries = 4});
    Tally t;
    std::vector<IoRequest> reqs;
    for (uintptr_t i = 0; i < 64; ++i) reqs.push_back({Opcode::kNop, 0, {}, Tally::callback, key(i)});
    ASSERT_EQ(*qp->submit_batch(reqs), 64u);
    drain(*qp);
    EXPECT_EQ(t.count.size(), 64u);
    EXPECT_EQ(qp->stats().device_errors, 0u);
}

TEST(Io, BadRequestsGetClearErrorsAndLoseNothing) {
    model::ModelConfig cfg;
    cfg.sge_align = 2;
    cfg.max_sge = 8;
    cfg.max_xfer = 16;
    Card card(cfg);
    auto qp = card.queue_pair({.depth = 4});
    auto buf = card.buffer(1 << 20);
    Tally t;
    // One good command stays outstanding throughout, to show nothing is lost.
    const DmaSegment good = buf.segment(0, 64);
    ASSERT_TRUE(qp->submit({Opcode::kWrite, 0, {&good, 1}, Tally::callback, key(100)}));
    auto refused = [&](IoRequest r, int code, const char* words) {
        r.callback = Tally::callback;
        auto s = qp->submit(r);
        ASSERT_FALSE(s);
        EXPECT_EQ(s.error().code, code) << s.error().message;
        EXPECT_NE(s.error().message.find(words), std::string::npos) << s.error().message;
        EXPECT_NE(s.error().message.find("test-card: queue pair 0"), std::string::npos) << s.error().message;
    };
    const DmaSegment empty = buf.segment(0, 0);
    refused({Opcode::kWrite, 0, {&empty, 1}}, EINVAL, "is empty");
    refused({Opcode::kWrite, 0, {}}, EINVAL, "no segments");
    const DmaSegment huge = buf.segment(0, (1 << 16) + 4);
    refused({Opcode::kRead, 0, {&huge, 1}}, EINVAL, "MAX_XFER");
    std::vector<DmaSegment> many;
    for (int i = 0; i < 9; ++i) many.push_back(buf.segment(i * 64, 4));
    refused({Opcode::kRead, 0, many}, EINVAL, "MAX_SGE");
    const DmaSegment odd = buf.segment(2, 8);
    refused({Opcode::kWrite, 0, {&odd, 1}}, EINVAL, "SGE_ALIGN");
    const DmaSegment fine = buf.segment(0, 64);
    refused({Opcode::kWrite, card.ctrl->info().devmem_size - 32, {&fine, 1}}, EINVAL, "beyond the card's");
    refused({Opcode::kNop, 0, {&fine, 1}}, EINVAL, "NOP carries no segments");
    // Host memory that nobody registered.
    std::vector<std::byte> plain(4096);
    const HostSegment host{plain.data(), 64};
    auto h = qp->submit_host(Opcode::kWrite, 0, {&host, 1}, Tally::callback, key(7));
    ASSERT_FALSE(h);
    EXPECT_EQ(h.error().code, EFAULT);
    EXPECT_NE(h.error().message.find("register it first"), std::string::npos) << h.error().message;
    const HostSegment null_segment{nullptr, 64};
    auto n = qp->submit_host(Opcode::kRead, 0, {&null_segment, 1}, Tally::callback, key(8));
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error().code, EFAULT);
    EXPECT_NE(n.error().message.find("segment 0"), std::string::npos) << n.error().message;
    // Full.
    for (int i = 0; i < 3; ++i) ASSERT_TRUE(qp->submit({Opcode::kNop, 0, {}, Tally::callback, key(200 + i)}));
    auto full = qp->submit({Opcode::kNop, 0, {}, Tally::callback, key(300)});
    ASSERT_FALSE(full);
    EXPECT_EQ(full.error().code, EAGAIN);
    EXPECT_EQ(qp->stats().queue_full, 1u);
    drain(*qp);
    EXPECT_EQ(t.count.size(), 4u) << "the good command and the three NOPs, nothing else";
    EXPECT_EQ(t.status[100], IoStatus::kSuccess);
    ASSERT_TRUE(qp->close());
    auto after = qp->submit({Opcode::kNop, 0, {}, Tally::callback, key(400)});
    ASSERT_FALSE(after);
    EXPECT_EQ(after.error().code, EPIPE);
}

TEST(Io, RegisteredApplicationMemoryMovesData) {
    Card card;
    auto qp = card.queue_pair({.depth = 8});
    // Two areas of plain memory with unregistered pages between them (neighbours would merge).
    constexpr size_t kArea = 200000, kApart = 512 * 1024;
    void* base = ::mmap(nullptr, 2 * kApart, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(base, MAP_FAILED);
    auto* out = static_cast<std::byte*>(base);
    auto* in = out + kApart;
    for (size_t i = 0; i < kArea; ++i) out[i] = static_cast<std::byte>(i * 13);
    {
        auto rout = card.device->dma().register_memory(out, kArea);
        auto rin = card.device->dma().register_memory(in, kArea);
        ASSERT_TRUE(rout && rin);
        Tally t;
        const HostSegment w[] = {{out + 1, 5000}, {out + 9001, 90999}};
        const HostSegment r[] = {{in + 1, 50000}, {in + 60000, 45999}};
        ASSERT_TRUE(qp->submit_host(Opcode::kWrite, 77, w, Tally::callback, key(1)));
        drain(*qp);
        ASSERT_TRUE(qp->submit_host(Opcode::kRead, 77, r, Tally::callback, key(2)));
        drain(*qp);
        EXPECT_EQ(t.status[1], IoStatus::kSuccess);
        EXPECT_EQ(t.status[2], IoStatus::kSuccess);
        std::vector<std::byte> sent(out + 1, out + 5001), back(in + 1, in + 50001);
        sent.insert(sent.end(), out + 9001, out + 100000);
        back.insert(back.end(), in + 60000, in + 105999);
        EXPECT_TRUE(sent == back);
        // A dropped registration: the memory is no longer usable for commands.
        rout = Registration{};
        auto gone = qp->submit_host(Opcode::kWrite, 0, {&w[0], 1}, Tally::callback, key(3));
        ASSERT_FALSE(gone);
        EXPECT_EQ(gone.error().code, EFAULT);
        EXPECT_EQ(card.device->dma().stats().cache_hits, 0u);
        auto again = card.device->dma().register_memory(out, kArea);
        ASSERT_TRUE(again);
        EXPECT_EQ(card.device->dma().stats().cache_hits, 1u) << "the cached mapping is reused";
    }
    ::munmap(base, 2 * kApart);
}

TEST(Io, MemoryGivenUpOrReadOnlyIsNeverWrittenByTheCard) {
    Card card;
    auto qp = card.queue_pair({.depth = 8});
    void* base = ::mmap(nullptr, 6 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(base, MAP_FAILED);
    auto* p = static_cast<std::byte*>(base);
    Tally t;
    {
        // x and y side by side: one mapping. Once x is dropped the card may not write it.
        auto x = card.device->dma().register_memory(p, 2 * 4096);
        auto y = card.device->dma().register_memory(p + 2 * 4096, 2 * 4096);
        ASSERT_TRUE(x && y);
        *x = Registration{};
        const HostSegment into_x{p, 4096};
        auto r = qp->submit_host(Opcode::kRead, 0, {&into_x, 1}, Tally::callback, key(1));
        ASSERT_FALSE(r) << "the card would write memory the application gave up";
        EXPECT_EQ(r.error().code, EFAULT);
        // Within a page: only the bytes registered.
        auto small = card.device->dma().register_memory(p, 100);
        ASSERT_TRUE(small);
        const HostSegment beside{p + 200, 100};
        auto b = qp->submit_host(Opcode::kRead, 0, {&beside, 1}, Tally::callback, key(2));
        ASSERT_FALSE(b);
        EXPECT_EQ(b.error().code, EFAULT);
        const HostSegment into_y{p + 2 * 4096, 4096};
        ASSERT_TRUE(qp->submit_host(Opcode::kRead, 0, {&into_y, 1}, Tally::callback, key(3)));
        drain(*qp);
        EXPECT_EQ(t.status[3], IoStatus::kSuccess);
    }
    {
        // Read-only memory: the card may read it (a WRITE), never write it (a READ), and the process lives.
        ASSERT_EQ(::mprotect(p + 4 * 4096, 2 * 4096, PROT_READ), 0);
        auto ro = card.device->dma().register_memory(p + 4 * 4096, 2 * 4096);
        ASSERT_TRUE(ro) << ro.error().message;
        const HostSegment seg{p + 4 * 4096, 4096};
        ASSERT_TRUE(qp->submit_host(Opcode::kWrite, 0, {&seg, 1}, Tally::callback, key(4)));
        drain(*qp);
        EXPECT_EQ(t.status[4], IoStatus::kSuccess);
        auto r = qp->submit_host(Opcode::kRead, 0, {&seg, 1}, Tally::callback, key(5));
        ASSERT_FALSE(r);
        EXPECT_EQ(r.error().code, EACCES);
        EXPECT_NE(r.error().message.find("read-only"), std::string::npos) << r.error().message;
    }
    EXPECT_EQ(qp->outstanding(), 0u);
    ::munmap(base, 6 * 4096);
}

TEST(Io, HostSegmentsAreMergedBeforeTheCardsSegmentLimitApplies) {
    model::ModelConfig cfg;
    cfg.max_sge = 2;
    Card card(cfg);
    auto qp = card.queue_pair({.depth = 4});
    std::vector<std::byte> mem(8192);
    auto reg = card.device->dma().register_memory(mem.data(), mem.size());
    ASSERT_TRUE(reg);
    // Four neighbours are one run of memory to the card; as submit() does, so does submit_host().
    const HostSegment four[] = {{mem.data(), 100}, {mem.data() + 100, 100}, {mem.data() + 200, 100},
                                {mem.data() + 300, 100}};
    Tally t;
    auto ok = qp->submit_host(Opcode::kWrite, 0, four, Tally::callback, key(1));
    ASSERT_TRUE(ok) << ok.error().message;
    drain(*qp);
    EXPECT_EQ(t.status[1], IoStatus::kSuccess);
    EXPECT_EQ(t.bytes[1], 400u);
    // Three runs apart are three descriptors: more than the card takes.
    const HostSegment apart[] = {{mem.data(), 100}, {mem.data() + 200, 100}, {mem.data() + 400, 100}};
    auto refused = qp->submit_host(Opcode::kWrite, 0, apart, Tally::callback, key(2));
    ASSERT_FALSE(refused);
    EXPECT_NE(refused.error().message.find("MAX_SGE"), std::string::npos) << refused.error().message;
}

TEST(Io, QueuePairsUpToTheCardsLimit) {
    model::ModelConfig cfg;
    cfg.nqp = 3;
    Card card(cfg);
    std::vector<std::unique_ptr<QueuePair>> qps;
    for (int i = 0; i < 4; ++i) qps.push_back(card.queue_pair({.depth = 16}));
    auto more = card.ctrl->create_queue_pair({.depth = 16});
    ASSERT_FALSE(more);
    EXPECT_EQ(more.error().code, EBUSY);
    auto buf = card.buffer(4096);
    fill(buf, 5);
    for (size_t i = 0; i < qps.size(); ++i) {
        const DmaSegment s = buf.segment(i * 100, 100);
        EXPECT_EQ(run_one(*qps[i], {Opcode::kWrite, i * 100, {&s, 1}}), IoStatus::kSuccess);
        EXPECT_EQ(qps[i]->id(), i);
    }
    EXPECT_EQ(std::memcmp(card.model.device->devmem().data(), buf.data(), 400), 0);
    // Interrupt mode needs a vector of its own: queue 3 would take vector 4 of 4.
    qps[3].reset();
    auto last = card.ctrl->create_queue_pair({.depth = 16, .interrupts = true});
    ASSERT_FALSE(last);
    EXPECT_EQ(last.error().code, ENOSPC);
    qps[1].reset();  // a freed id is reused
    auto reused = card.queue_pair({.depth = 16, .interrupts = true});
    EXPECT_EQ(reused->id(), 1u);
}

TEST(Io, ADoorbellErrorHaltsTheQueueAndCloseReportsEveryCommand) {
    model::ModelConfig cfg;
    cfg.latency = std::chrono::milliseconds(5000);  // nothing completes by itself
    Card card(cfg);
    auto qp = card.queue_pair({.depth = 8});
    Tally t;
    for (uintptr_t i = 0; i < 3; ++i) ASSERT_TRUE(qp->submit({Opcode::kNop, 0, {}, Tally::callback, key(i)}));
    // A bogus tail (beyond the 9-entry ring) from a confused host.
    ASSERT_TRUE(card.device->write32(sgq::kRegisterBar, sgq::sq_tail_doorbell(0, 0), 50));
    ASSERT_TRUE(test::eventually([&] {
        return (*card.device->read32(sgq::kRegisterBar, sgq::queue_register(0, sgq::kQRegStatus)) &
                sgq::kQStatusError) != 0;
    }));
    EXPECT_TRUE(*card.device->read32(sgq::kRegisterBar, sgq::kRegErrStatus) & sgq::kErrDoorbell);
    EXPECT_EQ(test::wait_eventfd(card.ctrl->event_fd()), 1u) << "vector 0 signals the queue error";
    ASSERT_TRUE(qp->close());
    EXPECT_EQ(t.count.size(), 3u);
    for (auto& [k, s] : t.status) EXPECT_EQ(s, IoStatus::kCancelled);
}

TEST(Io, ShutdownClosesOpenQueuePairsAndAControllerLeftRunningIsReset) {
    Card card;
    auto qp = card.queue_pair({.depth = 8});
    Tally t;
    ASSERT_TRUE(qp->submit({Opcode::kNop, 0, {}, Tally::callback, key(1)}));
    ASSERT_TRUE(card.ctrl->shutdown());
    EXPECT_TRUE(qp->closed());
    EXPECT_EQ(t.count[1], 1);
    auto refused = card.ctrl->create_queue_pair({});
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, EPIPE);
    // Leave the controller enabled, as a crashed program would; the next open resets it.
    ASSERT_TRUE(card.device->write32(sgq::kRegisterBar, sgq::kRegCtrl, sgq::kCtrlEn));
    card.ctrl.reset();
    auto again = Controller::open(*card.device);
    ASSERT_TRUE(again) << again.error().message;
    auto qp2 = (*again)->create_queue_pair({});
    ASSERT_TRUE(qp2);
    EXPECT_EQ(run_one(**qp2, {Opcode::kNop, 0, {}}), IoStatus::kSuccess);
}

TEST(Io, AQueueLeftEnabledOnTheCardIsDisabledBeforeItsIdIsReused) {
    Card card;
    auto buf = card.buffer(1 << 16);
    // Queue 0 enabled behind the library's back, pointing at memory the library knows nothing of.
    for (auto [reg, v] : {std::pair{sgq::kQRegSqBase, buf.iova()}, std::pair{sgq::kQRegCqBase, buf.iova() + 0x8000}})
        ASSERT_TRUE(card.device->write64(sgq::kRegisterBar, sgq::queue_register(0, reg), v));
    ASSERT_TRUE(card.device->write32(sgq::kRegisterBar, sgq::queue_register(0, sgq::kQRegSqSize), 15));
    ASSERT_TRUE(card.device->write32(sgq::kRegisterBar, sgq::queue_register(0, sgq::kQRegCqSize), 15));
    ASSERT_TRUE(card.device->write32(sgq::kRegisterBar, sgq::queue_register(0, sgq::kQRegCtrl), sgq::kQCtrlEnable));
    auto qp = card.queue_pair({.depth = 8});
    ASSERT_EQ(qp->id(), 0u);
    EXPECT_NE(*card.device->read64(sgq::kRegisterBar, sgq::queue_register(0, sgq::kQRegSqBase)), buf.iova());
    EXPECT_EQ(run_one(*qp, {Opcode::kNop, 0, {}}), IoStatus::kSuccess);
}

TEST(Io, BringUpRefusesSomethingThatIsNotAnSgqCard) {
    test::ServedModel model;
    auto t = open_vfio_user(model.connect(), "not-a-card");
    ASSERT_TRUE(t);
    auto d = Device::from_transport(std::move(*t));
    ASSERT_TRUE(d);
    // The model's ID register cannot be changed; a device that is gone reads all-ones.
    model.stop();
    auto c = Controller::open(**d);
    ASSERT_FALSE(c);
    EXPECT_NE(c.error().message.find("not-a-card"), std::string::npos) << c.error().message;
}

}  // namespace
}  // namespace vfioq
