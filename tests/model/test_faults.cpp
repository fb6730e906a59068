// SPDX-License-Identifier: MIT
// The model's fault injection, seen through the driver: each kind of bad
// completion happens where it was asked for, the driver's completion checks
// count what they must, and every command still reaches the application
// exactly once (closing the queue pair reports the ones the card lost).
#include <gtest/gtest.h>

#include <chrono>
#include <set>

#include "../support/model_card.hpp"
#include "../support/reported.hpp"
#include "model/fault_plan.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

using model::FaultConfig;
using model::FaultKind;
using test::Seen;
using test::with_faults;

// A card with a buffer and a queue pair of depth 64.
struct Card : test::ModelCard {
    explicit Card(model::ModelConfig config = {}) : ModelCard(config, "faulty-card") {
        buf = buffer(1 << 16);
        qp = queue_pair({.depth = 64});
    }
    DmaBuffer buf;
    std::unique_ptr<QueuePair> qp;
};

// Submits `n` writes of 512 bytes and polls until `expect` of them are back, then a little
// longer for anything extra. The model posts in fetch order, so its Nth completion is command N's.
void write_each(Card& card, uintptr_t n, size_t expect, Seen& seen) {
    for (uintptr_t i = 1; i <= n; ++i) {
        const DmaSegment s = card.buf.segment(i * 512, 512);
        ASSERT_TRUE(card.qp->submit({Opcode::kWrite, i * 512, {&s, 1}, Seen::callback, reinterpret_cast<void*>(i)}));
    }
    ASSERT_TRUE(test::eventually([&] {
        card.qp->poll();
        return seen.by_command.size() >= expect;
    })) << seen.by_command.size() << " of " << expect << " came back";
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(50);
    while (std::chrono::steady_clock::now() < until) card.qp->poll();
}

void expect_each_once(const Seen& seen, uintptr_t n) { test::expect_each_once(seen, 1, n); }

TEST(ModelFaults, AnErrorStatusLandsOnTheCommandItWasScriptedFor) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:status"}));
    write_each(card, 4, 4, seen);
    expect_each_once(seen, 4);
    EXPECT_EQ(seen.by_command[2][0], IoStatus::kInternal);
    for (uintptr_t i : {1u, 3u, 4u}) EXPECT_EQ(seen.by_command[i][0], IoStatus::kSuccess) << i;
    EXPECT_EQ(card.qp->stats().device_errors, 0u);
}

TEST(ModelFaults, ADuplicateCompletionIsCountedAndDeliveredOnce) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:duplicate"}));
    write_each(card, 4, 4, seen);
    expect_each_once(seen, 4);
    EXPECT_EQ(card.qp->stats().device_errors, 1u) << "the second copy is a CID not outstanding";
    for (auto& [cmd, statuses] : seen.by_command) EXPECT_EQ(statuses[0], IoStatus::kSuccess) << cmd;
}

TEST(ModelFaults, AWrongCidIsCountedAndTheLostCommandIsReportedAtClose) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:wrong-cid"}));
    write_each(card, 4, 3, seen);
    EXPECT_EQ(card.qp->stats().device_errors, 1u);
    EXPECT_EQ(card.qp->outstanding(), 1u) << "command 2's completion never came";
    EXPECT_EQ(seen.by_command.count(2), 0u);
    ASSERT_TRUE(card.qp->close());
    expect_each_once(seen, 4);
    EXPECT_EQ(seen.by_command[2][0], IoStatus::kCancelled);
}

TEST(ModelFaults, ADroppedCompletionIsReportedAtCloseAndNothingElseIsLost) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"3:drop"}));
    write_each(card, 5, 4, seen);
    EXPECT_EQ(card.qp->outstanding(), 1u);
    EXPECT_EQ(card.qp->stats().device_errors, 0u) << "a dropped completion leaves nothing to check";
    ASSERT_TRUE(card.qp->close());
    expect_each_once(seen, 5);
    EXPECT_EQ(seen.by_command[3][0], IoStatus::kCancelled);
}

TEST(ModelFaults, AStalePhaseHidesThatEntryAndEveryOneAfterIt) {
    Seen seen;  // outlives the card: closing reports to it
    Card card(with_faults({"2:stale-phase"}));
    write_each(card, 4, 1, seen);
    // The card posted 3 and 4 behind the stale entry; the host stops at it.
    ASSERT_TRUE(test::eventually([&] { return card.model.device->read32(sgq::kRegStatCmds) >= 4; }));
    card.qp->poll();
    EXPECT_EQ(seen.by_command.size(), 1u);
    EXPECT_EQ(card.qp->outstanding(), 3u);
    ASSERT_TRUE(card.qp->close());
    expect_each_once(seen, 4);
}

TEST(ModelFaults, ALateCompletionComesLateAndSucceeds) {
    auto config = with_faults({"1:late"});
    config.faults.late_by_us = 50000;
    Seen seen;  // outlives the card: closing reports to it
    Card card(config);
    const auto start = std::chrono::steady_clock::now();
    write_each(card, 1, 1, seen);
    EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(50));
    expect_each_once(seen, 1);
    EXPECT_EQ(seen.by_command[1][0], IoStatus::kSuccess);
}

TEST(ModelFaults, DmaToThePoisonedIovaFaultsAndIsNamedInTheErrorRegisters) {
    model::ModelConfig config;
    Card probe;  // where the first buffer lands
    const uint64_t iova = probe.buf.iova() + 3 * 512 + 7;
    config.faults.dma_fault_iova = iova;
    Seen seen;  // outlives the card: closing reports to it
    Card card(config);
    ASSERT_EQ(card.buf.iova() + 3 * 512 + 7, iova) << "the same allocation order gives the same IOVA";
    write_each(card, 4, 4, seen);
    expect_each_once(seen, 4);
    EXPECT_EQ(seen.by_command[3][0], IoStatus::kDmaFault) << "command 3's buffer holds the IOVA";
    EXPECT_EQ(seen.by_command[2][0], IoStatus::kSuccess);
    EXPECT_EQ(*card.device->read64(sgq::kRegisterBar, sgq::kRegErrAddr), iova);
}

TEST(ModelFaults, RatesAreSeededSoARunRepeatsExactly) {
    auto failed_set = [](uint64_t seed) {
        model::ModelConfig config;
        EXPECT_TRUE(config.faults.add("status=0.2"));
        config.faults.seed = seed;
        Seen seen;  // outlives the card: closing reports to it
        Card card(config);
        // 300 commands, 50 at a time (the queue pair holds 64).
        for (uintptr_t i = 1; i <= 300; ++i) {
            const DmaSegment seg = card.buf.segment(i % 100 * 512, 512);
            EXPECT_TRUE(card.qp->submit({Opcode::kWrite, i % 100 * 512, {&seg, 1}, Seen::callback,
                                         reinterpret_cast<void*>(i)}));
            if (i % 50 == 0) {
                EXPECT_TRUE(test::eventually([&] {
                    card.qp->poll();
                    return seen.by_command.size() == i;
                }));
            }
        }
        expect_each_once(seen, 300);
        std::set<uintptr_t> failed;
        for (auto& [cmd, s] : seen.by_command)
            if (s[0] != IoStatus::kSuccess) failed.insert(cmd);
        return failed;
    };
    const auto a = failed_set(7), b = failed_set(7), c = failed_set(8);
    EXPECT_EQ(a, b) << "the same seed, the same faults";
    EXPECT_NE(a, c);
    EXPECT_GT(a.size(), 30u);  // about 60 of 300
    EXPECT_LT(a.size(), 100u);
}

TEST(FaultConfig, SpecsAreParsedAndBadOnesSayWhatIsExpected) {
    FaultConfig c;
    EXPECT_TRUE(c.add("drop=0.25"));
    EXPECT_DOUBLE_EQ(c.drop, 0.25);
    EXPECT_TRUE(c.add("17:wrong-cid"));
    ASSERT_EQ(c.script.size(), 1u);
    EXPECT_EQ(c.script[0], std::make_pair(uint64_t{17}, FaultKind::kWrongCid));
    for (auto [spec, kind] : {std::pair{"3:cfs", FaultKind::kFatal}, std::pair{"4:hang", FaultKind::kHang},
                              std::pair{"5:all-ones", FaultKind::kAllOnes},
                              std::pair{"6:disconnect", FaultKind::kDisconnect}}) {
        EXPECT_TRUE(c.add(spec)) << spec;
        EXPECT_EQ(c.script.back().second, kind) << spec;
    }
    for (const char* bad : {"drop", "drop=2", "drop=-1", "0:drop", "x:drop", "5:explode", "explode=0.1", "=0.1"}) {
        auto r = c.add(bad);
        ASSERT_FALSE(r) << bad;
        EXPECT_NE(r.error().message.find("KIND=RATE"), std::string::npos) << r.error().message;
    }
    c.duplicate = 0.9;
    EXPECT_FALSE(c.validate()) << "0.25 + 0.9 > 1";
    model::FaultPlan none(FaultConfig{});
    for (int i = 0; i < 100; ++i) EXPECT_EQ(none.next(), FaultKind::kNone);
    EXPECT_EQ(none.completions(), 0u) << "nothing configured: nothing is drawn or counted";
}

}  // namespace
}  // namespace vfioq
