// SPDX-License-Identifier: MIT
// The model's queue processor seen through the driver: it finds each ring once
// per pass in its own mapping of host memory, yet DMA that faults inside a ring
// is still met entry by entry, named in the error registers and halts the
// queue; and its doorbell thread reports how long it was idle, for a benchmark
// to lay beside the driver's thread.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <thread>

#include "../support/model_card.hpp"
#include "../support/reported.hpp"
#include "vfioq/sgq_commands.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

using test::Seen;

constexpr int kPatientMs = 60000;  // the model's threads may be slow to run on a loaded machine

struct Card : test::ModelCard {
    explicit Card(model::ModelConfig config = {}) : ModelCard(config, "ring-card") {
        buf = buffer(1 << 16);
        qp = queue_pair({.depth = 16});
    }
    [[nodiscard]] uint64_t queue_register(uint64_t reg) const {
        auto v = device->read64(sgq::kRegisterBar, sgq::queue_register(qp->id(), reg));
        EXPECT_TRUE(v) << (v ? "" : v.error().message);
        return v ? *v : 0;
    }
    [[nodiscard]] uint64_t reg64(uint64_t reg) const {
        auto v = device->read64(sgq::kRegisterBar, reg);
        return v ? *v : 0;
    }
    void write(uintptr_t i) {
        const DmaSegment s = buf.segment(i * 512, 512);
        ASSERT_TRUE(qp->submit({Opcode::kWrite, i * 512, {&s, 1}, Seen::callback, reinterpret_cast<void*>(i)}));
    }
    DmaBuffer buf;
    std::unique_ptr<QueuePair> qp;
};

// Where a card made the same way puts its ring (the same allocations in the same order give the
// same IOVAs), plus `offset`.
uint64_t ring_iova(uint64_t base_register, uint64_t offset) {
    Card probe;
    return probe.queue_register(base_register) + offset;
}

// Two writes on a card whose DMA faults at `iova`, inside the second entry of a ring: the second
// never completes, the queue halts with ERR_STATUS.QUEUE_FETCH and ERR_ADDR names the IOVA;
// closing the queue pair reports each command once. A halted queue posts nothing more, so the
// first completes only if it was posted before the fault (always so when the fault is in the CQ).
void second_entry_faults(uint64_t base_register, uint64_t iova, bool first_completes) {
    model::ModelConfig config;
    config.faults.dma_fault_iova = iova;
    Seen seen;  // outlives the card: closing reports to it
    Card card(config);
    ASSERT_EQ(ring_iova(base_register, 0), card.queue_register(base_register)) << "the same layout as the probe";
    card.write(1);
    card.write(2);
    ASSERT_TRUE(test::eventually(
        [&] {
            card.qp->poll();
            return (card.reg64(sgq::kRegErrStatus) & sgq::kErrQueueFetch) != 0;
        },
        kPatientMs));
    card.qp->poll();
    EXPECT_EQ(card.reg64(sgq::kRegErrAddr), iova);
    if (first_completes) {
        ASSERT_EQ(seen.by_command.count(1), 1u);
        EXPECT_EQ(seen.by_command[1][0], IoStatus::kSuccess);
    }
    EXPECT_EQ(seen.by_command.count(2), 0u) << "its entry could not be handled";
    ASSERT_TRUE(card.qp->close());
    test::expect_each_once(seen, 1, 2);
    EXPECT_NE(seen.by_command[2][0], IoStatus::kSuccess);
}

TEST(QueueProcessor, AFaultInsideTheSubmissionRingHaltsTheQueueAtThatEntry) {
    second_entry_faults(sgq::kQRegSqBase, ring_iova(sgq::kQRegSqBase, sgq::kSqEntrySize + 8), false);
}

TEST(QueueProcessor, AFaultInsideTheCompletionRingHaltsTheQueueAtThatEntry) {
    second_entry_faults(sgq::kQRegCqBase, ring_iova(sgq::kQRegCqBase, sgq::kCqEntrySize + 4), true);
}

int64_t steady_ns() { return model::QueueThreadTime::ns(std::chrono::steady_clock::now()); }

TEST(QueueProcessor, TheDoorbellThreadCountsItsIdleTimeAndNotItsWork) {
    model::ModelConfig config;
    config.thread_time = std::make_shared<model::QueueThreadTime>();
    const auto& time = *config.thread_time;
    Seen seen;  // outlives the card: closing reports to it
    Card card(config);
    ASSERT_TRUE(test::eventually([&] { return time.started_ns.load() >= 0; }, kPatientMs));
    for (uintptr_t i = 1; i <= 12; ++i) card.write(i);
    ASSERT_TRUE(test::eventually(
        [&] {
            card.qp->poll();
            return seen.by_command.size() == 12;
        },
        kPatientMs));
    // Nothing more to do (once the last CQ doorbell is seen): an idle spell goes on, and the idle
    // time grows as the clock does.
    ASSERT_TRUE(test::eventually(
        [&] {
            const int64_t since = time.idle_since_ns.load();
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
            return since >= 0 && time.idle_since_ns.load() == since;
        },
        kPatientMs));
    const int64_t t1 = steady_ns();
    const uint64_t idle1 = time.idle_until(t1);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const int64_t t2 = steady_ns();
    const uint64_t idle2 = time.idle_until(t2);
    EXPECT_EQ(idle2 - idle1, static_cast<uint64_t>(t2 - t1)) << "the same idle spell, still going on";
    EXPECT_LE(idle2, static_cast<uint64_t>(t2 - time.started_ns.load())) << "never more idle than it ran";
    ASSERT_TRUE(card.qp->close());
}

}  // namespace
}  // namespace vfioq
