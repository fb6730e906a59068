// SPDX-License-Identifier: MIT
// Recovery, through the real driver against a faulty model: for every kind of
// fault the application gets every command back exactly once with the status
// that says what happened, and the queue pair keeps working afterwards (or
// the device is reported gone and every call says so without hanging).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "../support/model_card.hpp"
#include "../support/reported.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

using namespace std::chrono_literals;

using test::expect_each_once;
using test::Seen;
using test::with_faults;

// Long enough that a command the card does answer is never late for it on a loaded machine
// (sanitizers, both cores busy): only the commands a fault withholds time out.
constexpr auto kTimeout = 1s;

struct Card : test::ModelCard {
    explicit Card(model::ModelConfig config = {}, QueuePairOptions o = {.depth = 64, .command_timeout = kTimeout})
        : ModelCard(config, "faulty-card") {
        buf = buffer(1 << 16);
        qp = queue_pair(o);
    }

    // Submits writes numbered first .. last (512 bytes each) and polls until all are reported.
    void write_all(uintptr_t first, uintptr_t last, Seen& seen, int ms = 5000) {
        for (uintptr_t i = first; i <= last; ++i) {
            const DmaSegment s = buf.segment(i % 64 * 512, 512);
            auto r = qp->submit({Opcode::kWrite, i % 64 * 512, {&s, 1}, Seen::callback, reinterpret_cast<void*>(i)});
            ASSERT_TRUE(r) << r.error().message;
        }
        ASSERT_TRUE(test::eventually(
            [&] {
                qp->poll();
                return seen.by_command.size() >= last - first + 1 + before_;
            },
            ms))
            << seen.by_command.size() - before_ << " of " << last - first + 1 << " came back";
        before_ = seen.by_command.size();
    }

    // Data written by the card's DMA is read back intact: the queue works.
    void expect_working() {
        std::memset(static_cast<std::byte*>(buf.data()) + 32768, 0x5A, 4096);
        static IoStatus last;
        last = IoStatus::kUnknownDeviceStatus;
        auto cb = [](const Completion& c) { last = c.status; };
        const DmaSegment out = buf.segment(32768, 4096);
        ASSERT_TRUE(qp->submit({Opcode::kWrite, 1 << 20, {&out, 1}, cb, nullptr}));
        ASSERT_TRUE(test::eventually([&] { return qp->poll() != 0 || last != IoStatus::kUnknownDeviceStatus; }));
        ASSERT_EQ(last, IoStatus::kSuccess);
        last = IoStatus::kUnknownDeviceStatus;
        const DmaSegment in = buf.segment(40960, 4096);
        ASSERT_TRUE(qp->submit({Opcode::kRead, 1 << 20, {&in, 1}, cb, nullptr}));
        ASSERT_TRUE(test::eventually([&] { return qp->poll() != 0 || last != IoStatus::kUnknownDeviceStatus; }));
        ASSERT_EQ(last, IoStatus::kSuccess);
        const auto* b = static_cast<const std::byte*>(buf.data());
        EXPECT_EQ(std::memcmp(b + 32768, b + 40960, 4096), 0);
    }

    DmaBuffer buf;
    std::unique_ptr<QueuePair> qp;
    size_t before_ = 0;
};

TEST(Recovery, ADroppedCompletionTimesOutAndTheQueueIsBroughtBack) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"3:drop"}));
    card.write_all(1, 5, seen);
    expect_each_once(seen, 1, 5);
    EXPECT_EQ(seen.first(3), IoStatus::kTimeout);
    for (uintptr_t i : {1u, 2u, 4u, 5u}) EXPECT_EQ(seen.first(i), IoStatus::kSuccess) << i;
    const auto st = card.qp->stats();
    EXPECT_EQ(st.timeouts, 1u);
    EXPECT_EQ(st.queue_recoveries, 1u);
    EXPECT_EQ(st.controller_resets, 0u);
    EXPECT_EQ(card.qp->outstanding(), 0u);
    card.expect_working();
    card.write_all(6, 60, seen);
    card.write_all(61, 100, seen);  // past the end of the ring after the restart
    expect_each_once(seen, 1, 100);
}

TEST(Recovery, AWrongCidIsRecordedAndItsCommandTimesOut) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:wrong-cid"}));
    card.write_all(1, 4, seen);
    expect_each_once(seen, 1, 4);
    EXPECT_EQ(seen.first(2), IoStatus::kTimeout);
    const auto st = card.qp->stats();
    EXPECT_EQ(st.cid_out_of_range, 1u);
    EXPECT_EQ(st.device_errors, 1u);
    auto bad = card.qp->bad_completions();
    ASSERT_EQ(bad.size(), 1u);
    EXPECT_EQ(bad[0].dwords[3] & 0xFFFF, 0xFFFFu) << "the raw entry as the card wrote it";
    EXPECT_NE(std::string(bad[0].reason).find("CID"), std::string::npos);
    card.expect_working();
}

TEST(Recovery, ADuplicateIsRecordedAndNothingTimesOut) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:duplicate"}));
    card.write_all(1, 4, seen);
    expect_each_once(seen, 1, 4);
    for (uintptr_t i = 1; i <= 4; ++i) EXPECT_EQ(seen.first(i), IoStatus::kSuccess);
    EXPECT_EQ(card.qp->stats().cid_not_outstanding, 1u);
    EXPECT_EQ(card.qp->stats().timeouts, 0u);
    card.expect_working();
}

TEST(Recovery, AStalePhaseHidesTheRestUntilTheTimeoutRestartsTheRings) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:stale-phase"}));
    card.write_all(1, 4, seen);
    expect_each_once(seen, 1, 4);
    EXPECT_EQ(seen.first(1), IoStatus::kSuccess);
    // 3 and 4 were posted behind the hidden entry: their outcome is unknown too.
    for (uintptr_t i : {2u, 3u, 4u}) EXPECT_EQ(seen.first(i), IoStatus::kTimeout) << i;
    EXPECT_EQ(card.qp->stats().queue_recoveries, 1u);
    card.expect_working();
}

TEST(Recovery, AnErrorStatusIsTheCardsAndNeedsNoRecovery) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:status"}));
    card.write_all(1, 3, seen);
    expect_each_once(seen, 1, 3);
    EXPECT_EQ(seen.first(2), IoStatus::kInternal);
    EXPECT_EQ(card.qp->stats().error_statuses, 1u);
    EXPECT_EQ(card.qp->stats().queue_recoveries, 0u);
    card.expect_working();
}

TEST(Recovery, ALateCompletionIsDeliveredWhenTheDisableFlushesIt) {
    Seen seen;  // outlives the card: closing reports to it
    auto config = with_faults({"1:late"});
    config.faults.late_by_us = 20000000;  // far beyond the timeout, so a busy machine cannot blur the two
    Card card(config);
    const auto start = std::chrono::steady_clock::now();
    card.write_all(1, 1, seen);
    expect_each_once(seen, 1, 1);
    // Disabling the queue makes the card complete what it holds: its own status, not a guess.
    EXPECT_EQ(seen.first(1), IoStatus::kSuccess);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 10s) << "recovered at the timeout, not the late post";
    EXPECT_EQ(card.qp->stats().queue_recoveries, 1u);
    card.expect_working();
}

TEST(Recovery, ADmaFaultIsTheCardsStatusAndTheQueueCarriesOn) {
    Seen seen;  // outlives the card: closing reports to it
    model::ModelConfig config;
    Card probe;
    config.faults.dma_fault_iova = probe.buf.iova() + 2 * 512;
    Card card(config);
    card.write_all(1, 3, seen);
    expect_each_once(seen, 1, 3);
    EXPECT_EQ(seen.first(2), IoStatus::kDmaFault);
    EXPECT_EQ(card.qp->stats().queue_recoveries, 0u);
    card.expect_working();
}

TEST(Recovery, FatalStatusResetsTheControllerAndTheQueueComesBack) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"3:cfs"}));
    card.write_all(1, 5, seen);
    expect_each_once(seen, 1, 5);
    EXPECT_EQ(seen.first(1), IoStatus::kSuccess);
    EXPECT_EQ(seen.first(2), IoStatus::kSuccess);
    for (uintptr_t i : {3u, 4u, 5u}) EXPECT_EQ(seen.first(i), IoStatus::kTimeout) << i;
    EXPECT_EQ(card.qp->stats().controller_resets, 1u);
    EXPECT_EQ(*card.device->read32(sgq::kRegisterBar, sgq::kRegStatus) & sgq::kStatusCfs, 0u);
    card.expect_working();
}

TEST(Recovery, AHungCardThatNeverFinishesTheDisableIsReset) {
    Seen seen;  // outlives the card: closing reports to it
    auto config = with_faults({"2:hang"});
    config.timeout = 2;  // CAP.TO: the disable may take 200 ms
    Card card(config);
    const auto start = std::chrono::steady_clock::now();
    card.write_all(1, 3, seen);
    expect_each_once(seen, 1, 3);
    EXPECT_EQ(seen.first(1), IoStatus::kSuccess);
    for (uintptr_t i : {2u, 3u}) EXPECT_EQ(seen.first(i), IoStatus::kTimeout) << i;
    EXPECT_GE(std::chrono::steady_clock::now() - start, kTimeout + 200ms) << "the disable was waited for";
    const auto st = card.qp->stats();
    EXPECT_EQ(st.queue_recoveries, 1u);
    EXPECT_EQ(st.controller_resets, 1u);
    card.expect_working();
}

TEST(Recovery, AResetReportsTheOtherQueuePairsCommandsAsReset) {
    Seen seen;  // outlives the card: closing reports to it
    model::ModelConfig config;
    config.latency = std::chrono::microseconds(200000);  // a slow card: commands stay outstanding
    Card card(config, {.depth = 64, .command_timeout = 500ms});
    auto other = card.queue_pair({.depth = 16, .command_timeout = 0ms});
    for (uintptr_t i = 101; i <= 104; ++i) {
        const DmaSegment s = card.buf.segment(i % 64 * 512, 512);
        ASSERT_TRUE(other->submit({Opcode::kWrite, i * 512, {&s, 1}, Seen::callback, reinterpret_cast<void*>(i)}));
    }
    const DmaSegment s = card.buf.segment(0, 512);
    ASSERT_TRUE(card.qp->submit({Opcode::kWrite, 0, {&s, 1}, Seen::callback, reinterpret_cast<void*>(1)}));
    card.model.device->inject_fatal_error();
    ASSERT_TRUE(test::eventually([&] {
        card.qp->poll();
        return seen.by_command.count(1) != 0;
    }));
    EXPECT_EQ(seen.first(1), IoStatus::kTimeout);
    EXPECT_EQ(other->outstanding(), 4u) << "the other queue pair learns of the reset on its own thread's next call";
    other->poll();
    expect_each_once(seen, 101, 104);
    for (uintptr_t i = 101; i <= 104; ++i) EXPECT_EQ(seen.first(i), IoStatus::kReset) << i;
    EXPECT_EQ(other->stats().controller_resets, 1u);
    // Both queues work again (slowly).
    static int done;
    done = 0;
    auto cb = [](const Completion& c) { done += c.status == IoStatus::kSuccess; };
    ASSERT_TRUE(other->submit({Opcode::kWrite, 0, {&s, 1}, cb, nullptr}));
    ASSERT_TRUE(card.qp->submit({Opcode::kWrite, 0, {&s, 1}, cb, nullptr}));
    EXPECT_TRUE(test::eventually([&] {
        other->poll();
        card.qp->poll();
        return done == 2;
    }));
}

TEST(Recovery, RegistersReadingAllOnesMeanTheDeviceIsGone) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"3:all-ones"}));
    card.write_all(1, 5, seen);
    expect_each_once(seen, 1, 5);
    EXPECT_EQ(seen.first(1), IoStatus::kSuccess);
    for (uintptr_t i : {3u, 4u, 5u}) EXPECT_EQ(seen.first(i), IoStatus::kDeviceGone) << i;
    EXPECT_TRUE(card.qp->device_gone());
    EXPECT_TRUE(card.device->gone());
    const DmaSegment s = card.buf.segment(0, 512);
    auto r = card.qp->submit({Opcode::kWrite, 0, {&s, 1}, nullptr, nullptr});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENODEV);
    auto again = card.ctrl->create_queue_pair({.depth = 8});
    ASSERT_FALSE(again);
    EXPECT_EQ(again.error().code, ENODEV) << again.error().message;
    EXPECT_NE(again.error().message.find("all-ones"), std::string::npos) << again.error().message;
    EXPECT_TRUE(card.qp->close());
}

TEST(Recovery, AClosedConnectionIsSeenAtOnceAndNothingHangsOrFaults) {
    Seen seen;  // outlives the card: closing reports to it
    // A long timeout: the removal must be noticed from the connection, not from a timeout.
    Card card(with_faults({"3:disconnect"}), {.depth = 64, .command_timeout = 120s});
    card.write_all(1, 5, seen);
    EXPECT_EQ(card.qp->stats().timeouts, 0u) << "seen from the connection, not waited out";
    expect_each_once(seen, 1, 5);
    // What the card posted before it went is its answer, even if the host had not reaped it yet.
    for (uintptr_t i : {1u, 2u}) EXPECT_EQ(seen.first(i), IoStatus::kSuccess) << i;
    for (uintptr_t i : {3u, 4u, 5u}) EXPECT_EQ(seen.first(i), IoStatus::kDeviceGone) << i;
    EXPECT_TRUE(card.device->gone());
    // A doorbell store that races the removal lands in memory that reads all-ones.
    auto* doorbell = static_cast<volatile uint32_t*>(card.device->mapped(sgq::kRegisterBar, sgq::kDoorbellBase, 4));
    ASSERT_NE(doorbell, nullptr);
    *doorbell = 7;
    auto r = card.device->read32(sgq::kRegisterBar, sgq::kRegId);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENODEV);
    EXPECT_NE(r.error().message.find("faulty-card"), std::string::npos) << r.error().message;
    const DmaSegment s = card.buf.segment(0, 512);
    EXPECT_EQ(card.qp->submit({Opcode::kWrite, 0, {&s, 1}, nullptr, nullptr}).error().code, ENODEV);
    EXPECT_TRUE(card.qp->close());
    EXPECT_TRUE(card.ctrl->shutdown());
}

TEST(Recovery, ARemovalSeenBeforeTheFirstPollStillHandsBackWhatTheCardPosted) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"3:disconnect"}), {.depth = 64, .command_timeout = 120s});
    for (uintptr_t i = 1; i <= 5; ++i) {
        const DmaSegment s = card.buf.segment(i * 512, 512);
        ASSERT_TRUE(card.qp->submit({Opcode::kWrite, i * 512, {&s, 1}, Seen::callback, reinterpret_cast<void*>(i)}));
    }
    // Waited for with a relaxed load, which orders nothing: the queue pair's own look at the
    // flag must be what makes the swapped register pages visible before it rings a doorbell
    // for the completions it reaps (ThreadSanitizer tells when it is not).
    ASSERT_TRUE(test::eventually([&] { return card.device->gone_flag().load(std::memory_order_relaxed); }, 60000));
    EXPECT_EQ(card.qp->poll(), 5u);
    expect_each_once(seen, 1, 5);
    for (uintptr_t i : {1u, 2u}) EXPECT_EQ(seen.first(i), IoStatus::kSuccess) << i;
    for (uintptr_t i : {3u, 4u, 5u}) EXPECT_EQ(seen.first(i), IoStatus::kDeviceGone) << i;
    EXPECT_TRUE(card.qp->close());
}

TEST(Recovery, WaitingForAnInterruptSeesTheTimeoutWithoutWaitingItOut) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"1:drop"}), {.depth = 16, .interrupts = true, .command_timeout = kTimeout});
    const DmaSegment s = card.buf.segment(0, 512);
    ASSERT_TRUE(card.qp->submit({Opcode::kWrite, 0, {&s, 1}, Seen::callback, reinterpret_cast<void*>(1)}));
    const auto start = std::chrono::steady_clock::now();
    while (seen.by_command.empty() && std::chrono::steady_clock::now() - start < 60s) {
        auto n = card.qp->wait(120s);
        ASSERT_TRUE(n) << n.error().message;
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 60s) << "the wait of 120 s was waited out";
    EXPECT_EQ(seen.first(1), IoStatus::kTimeout);
    static bool ok;
    ok = false;
    ASSERT_TRUE(card.qp->submit({Opcode::kWrite, 0, {&s, 1}, [](const Completion& c) { ok = c.status == IoStatus::kSuccess; },
                                 nullptr}));
    EXPECT_TRUE(test::eventually([&] {
        (void)card.qp->wait(100ms);
        return ok;
    }));
}

TEST(Recovery, ASlowCardWithinTheTimeoutIsNotAFault) {
    Seen seen;  // outlives the card: closing reports to it
    model::ModelConfig config;
    config.latency = std::chrono::microseconds(20000);
    Card card(config, {.depth = 64, .command_timeout = 1s});
    card.write_all(1, 20, seen);
    for (uintptr_t i = 1; i <= 20; ++i) EXPECT_EQ(seen.first(i), IoStatus::kSuccess);
    EXPECT_EQ(card.qp->stats().timeouts, 0u);
    EXPECT_EQ(card.qp->stats().queue_recoveries, 0u);
}

}  // namespace
}  // namespace vfioq
