// SPDX-License-Identifier: MIT
// The queue pair alone: a queue owner, a codec and a card all played by the
// test, with the rings in ordinary memory. Submission and completion, a
// command past its timeout, a disable that never finishes, a reset another
// queue pair caused, a reset that fails, a device that goes away, and the
// interrupt wait. Every command is reported exactly once, with the status
// that says what happened. Timeouts are a millisecond and the test waits
// past them before it polls: how fast the machine runs changes nothing.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>
#include <vector>

#include "../support/fake_transport.hpp"
#include "io/engine_queue_pair.hpp"

namespace vfioq {
namespace {

using namespace std::chrono_literals;

// The card's side of the contract the queue pair relies on: what a profile does.
class FakeOwner final : public io::QueueOwner {
public:
    FakeOwner() { health_.device_gone = &gone; }
    const std::string& name() const override { return name_; }

    // What disable_queue does: finish (after draining), never finish, or find the device gone.
    enum class Disable { kFinishes, kNeverFinishes, kDeviceGone };
    Disable disable = Disable::kFinishes;
    bool reset_works = true;

    Result<void> disable_queue(uint16_t qid, const std::function<void()>& drain) override {
        ++disables;
        if (drain) drain();
        switch (disable) {
            case Disable::kFinishes: return {};
            case Disable::kNeverFinishes:
                return make_error(ETIMEDOUT, fmt::format("queue {} never cleared ENABLED", qid));
            case Disable::kDeviceGone: gone = true; return make_error(ENODEV, "gone");
        }
        return {};
    }
    Result<void> enable_queue(uint16_t) override {
        ++enables;
        return {};
    }
    Result<void> reset_controller(const std::string& why) override {
        ++resets;
        last_reset_why = why;
        health_.resets.fetch_add(1);
        if (!reset_works) return make_error(EIO, "the card did not come back from the reset");
        return {};
    }
    void release_queue(uint16_t qid, QueuePair*) override { released.push_back(qid); }
    const io::ControllerHealth& health() const override { return health_; }

    // Another queue pair reset the controller.
    void reset_by_someone_else() { health_.resets.fetch_add(1); }

    std::atomic<bool> gone{false};
    int disables = 0, enables = 0, resets = 0;
    std::string last_reset_why;
    std::vector<uint16_t> released;

private:
    std::string name_ = "fake-card";
    io::ControllerHealth health_;
};

// Byte 0 the opcode, bytes 4-7 the length; status 0 is SUCCESS, anything else the card's error.
class FakeCodec final : public io::CommandCodec {
public:
    Result<int32_t> encode(const IoRequest& r, std::byte* sqe, dma::SglPagePool&) override {
        if (r.segments.empty() && r.op != Opcode::kNop) return make_error(EINVAL, "no data segment");
        uint32_t length = 0;
        for (const auto& s : r.segments) length += s.len;
        sqe[0] = static_cast<std::byte>(r.op);
        std::memcpy(sqe + 4, &length, sizeof(length));
        return -1;
    }
    uint32_t length(const std::byte* sqe) const override {
        uint32_t v;
        std::memcpy(&v, sqe + 4, sizeof(v));
        return v;
    }
    IoStatus decode(uint16_t status) const override {
        return status == 0 ? IoStatus::kSuccess : IoStatus::kUnknownDeviceStatus;
    }
    uint32_t bytes(uint32_t, IoStatus status, uint32_t requested) const override {
        return status == IoStatus::kSuccess ? requested : 0;
    }
};

// Doorbells unmapped: every write is seen here.
struct DoorbellLog final : engine::DoorbellWriter {
    void write_doorbell(uint64_t offset, uint32_t value) override { writes.emplace_back(offset, value); }
    std::vector<std::pair<uint64_t, uint32_t>> writes;
};

constexpr uint64_t kSqDoorbell = 0x2000, kCqDoorbell = 0x2004;
constexpr uint16_t kQid = 3;

// What each command came back as, by its context (a number the test gives).
struct Reports {
    static void callback(const Completion& c) {
        auto* self = current;
        self->by_command[reinterpret_cast<uintptr_t>(c.context)].push_back(c.status);
    }
    [[nodiscard]] IoStatus only(uintptr_t command) const {
        auto it = by_command.find(command);
        if (it == by_command.end()) return IoStatus::kUnknownDeviceStatus;
        EXPECT_EQ(it->second.size(), 1u) << "command " << command << " reported " << it->second.size() << " times";
        return it->second.front();
    }
    std::map<uintptr_t, std::vector<IoStatus>> by_command;
    static Reports* current;
};
Reports* Reports::current = nullptr;

class QueuePairAlone : public ::testing::Test {
protected:
    void SetUp() override { Reports::current = &reports; }

    void open(std::chrono::nanoseconds timeout = 0ns, bool interrupts = false, uint32_t depth = 8) {
        io::QueuePairResources res;
        res.qid = kQid;
        res.depth = depth;
        res.sq_entries = depth + 1;
        res.cq_entries = depth + 1;
        res.sgl_page_count = 1;
        res.command_timeout = timeout;
        res.sq = must(dma.allocate(uint64_t{res.sq_entries} * engine::kSqEntrySize));
        res.cq = must(dma.allocate(uint64_t{res.cq_entries} * sizeof(engine::CqEntry)));
        res.sgl_pages = must(dma.allocate(dma::kSglPageSize));
        std::memset(res.cq.data(), 0, res.cq.size());
        res.sq_doorbell = engine::Doorbell{nullptr, &doorbells, kSqDoorbell};
        res.cq_doorbell = engine::Doorbell{nullptr, &doorbells, kCqDoorbell};
        if (interrupts) {
            event_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
            ASSERT_GE(event_fd, 0);
            res.event_fd.reset(::dup(event_fd));
            res.vector = kQid + 1;
        }
        sq = static_cast<const std::byte*>(res.sq.data());
        cq = reinterpret_cast<engine::CqEntry*>(res.cq.data());
        entries = res.cq_entries;
        qp = std::make_unique<io::EngineQueuePair>(owner, std::make_unique<FakeCodec>(), std::move(res), 4, dma);
    }
    void TearDown() override {
        qp.reset();
        if (event_fd >= 0) ::close(event_fd);
    }

    static DmaBuffer must(Result<DmaBuffer> b) {
        EXPECT_TRUE(b) << b.error().message;
        return b ? std::move(*b) : DmaBuffer{};
    }

    // Submits a 512-byte WRITE numbered `n`; returns its CID.
    uint16_t submit(uintptr_t n) {
        const DmaSegment s = buf.segment(0, 512);
        auto cid = qp->submit({Opcode::kWrite, 0, {&s, 1}, Reports::callback, reinterpret_cast<void*>(n)});
        EXPECT_TRUE(cid) << cid.error().message;
        return cid ? *cid : 0xFFFF;
    }

    // The card: the CID of SQ slot `slot`, and a completion posted for it (after the SQ head moved to `sqhd`).
    [[nodiscard]] uint16_t cid_in_slot(uint32_t slot) const {
        uint16_t cid;
        std::memcpy(&cid, sq + uint64_t{slot} * engine::kSqEntrySize + 2, sizeof(cid));
        return cid;
    }
    void post(uint16_t cid, uint16_t status, uint16_t sqhd) {
        engine::CqEntry e{0, 0, sqhd, kQid, cid, static_cast<uint16_t>(status << 1 | (phase ? 1 : 0))};
        std::memcpy(&cq[cq_tail], &e, sizeof(e));
        if (++cq_tail == entries) {
            cq_tail = 0;
            phase = !phase;
        }
    }
    // The card after the queue was enabled again: its completion ring starts over, as the host's does.
    void card_restarted() {
        cq_tail = 0;
        phase = true;
    }
    // The queue after a recovery: back at slot 0 of fresh rings, and command `n` comes back SUCCESS.
    void expect_back_in_service(uintptr_t n) {
        card_restarted();
        submit(n);
        post(cid_in_slot(0), 0, 1);
        EXPECT_EQ(qp->poll(), 1u);
        EXPECT_EQ(reports.only(n), IoStatus::kSuccess);
    }
    // The error a submission of command `n` is refused with.
    Error refused_submission(uintptr_t n) {
        const DmaSegment s = buf.segment(0, 512);
        auto r = qp->submit({Opcode::kWrite, 0, {&s, 1}, Reports::callback, reinterpret_cast<void*>(n)});
        EXPECT_FALSE(r) << "command " << n << " was accepted";
        return r ? Error{0, "accepted"} : r.error();
    }
    // One command on a queue with a 1 ms timeout that the card never answers, its queue
    // disabled `how` when recovery comes; returns what the command was reported as.
    IoStatus time_out_one_command(FakeOwner::Disable how) {
        open(1ms);
        submit(1);
        owner.disable = how;
        past_the_timeout();
        EXPECT_EQ(poll_all(), 1u);
        return reports.only(1);
    }
    // Lets a millisecond timeout pass for certain, however slow the machine.
    static void past_the_timeout() { std::this_thread::sleep_for(20ms); }
    // Polls until nothing more is reported; returns how many were. The clock is read once
    // every 64 polls, empty or not, so an expired timeout is seen within that many.
    uint32_t poll_all() {
        uint32_t n = 0;
        for (int empty = 0; empty < 2 * 64;) {
            const uint32_t got = qp->poll();
            n += got;
            empty = got ? 0 : empty + 1;
        }
        return n;
    }

    test::FakeTransport transport{false};
    DmaContext dma{transport, "fake-card"};
    DmaBuffer buf = must(dma.allocate(4096));
    FakeOwner owner;
    DoorbellLog doorbells;
    Reports reports;
    std::unique_ptr<QueuePair> qp;  // driven through the public interface
    const std::byte* sq = nullptr;
    engine::CqEntry* cq = nullptr;
    uint32_t entries = 0, cq_tail = 0;
    bool phase = true;
    int event_fd = -1;
};

TEST_F(QueuePairAlone, CommandsComeBackOnceEachInAnyOrderWithOneDoorbellPerBatchAndPoll) {
    open();
    const DmaSegment s = buf.segment(0, 512);
    std::vector<IoRequest> batch;
    for (uintptr_t n = 1; n <= 3; ++n)
        batch.push_back({Opcode::kWrite, 0, {&s, 1}, Reports::callback, reinterpret_cast<void*>(n)});
    auto queued = qp->submit_batch(batch);
    ASSERT_TRUE(queued) << queued.error().message;
    EXPECT_EQ(*queued, 3u);
    ASSERT_EQ(doorbells.writes.size(), 1u) << "one SQ doorbell for the batch";
    EXPECT_EQ(doorbells.writes[0], std::pair(kSqDoorbell, 3u));
    // The card answers the third first, then the other two, one with an error status.
    post(cid_in_slot(2), 0, 3);
    post(cid_in_slot(0), 0, 3);
    post(cid_in_slot(1), 5, 3);
    EXPECT_EQ(qp->poll(), 3u);
    EXPECT_EQ(doorbells.writes.back(), std::pair(kCqDoorbell, 3u)) << "one CQ doorbell for the poll";
    EXPECT_EQ(reports.only(1), IoStatus::kSuccess);
    EXPECT_EQ(reports.only(2), IoStatus::kUnknownDeviceStatus);
    EXPECT_EQ(reports.only(3), IoStatus::kSuccess);
    EXPECT_EQ(qp->outstanding(), 0u);
    const auto st = qp->stats();
    EXPECT_EQ(st.submitted, 3u);
    EXPECT_EQ(st.completed, 3u);
    EXPECT_EQ(st.error_statuses, 1u);
    // A completion for a CID nobody holds is the card's error, counted and not delivered.
    post(cid_in_slot(0), 0, 3);
    EXPECT_EQ(qp->poll(), 0u);
    EXPECT_EQ(qp->stats().cid_not_outstanding, 1u);
    EXPECT_EQ(reports.by_command.size(), 3u);
}

TEST_F(QueuePairAlone, AFullQueueRefusesWithEagainAndWorksOnceReaped) {
    open(0ns, false, 2);
    submit(1);
    submit(2);
    const Error full = refused_submission(3);
    EXPECT_EQ(full.code, EAGAIN);
    // A static reason, nothing formatted: back-pressure is on the fast path.
    EXPECT_TRUE(full.message.empty()) << full.message;
    EXPECT_NE(full.text().find("full; poll and submit again"), std::string::npos) << full.text();
    post(cid_in_slot(0), 0, 1);
    EXPECT_EQ(qp->poll(), 1u);
    submit(3);
    EXPECT_EQ(qp->stats().queue_full, 1u);
}

TEST_F(QueuePairAlone, ACommandPastItsTimeoutIsReportedAndTheQueueComesBack) {
    open(1ms);
    submit(1);
    submit(2);
    // The card answers the first only.
    post(cid_in_slot(0), 0, 1);
    past_the_timeout();
    EXPECT_EQ(poll_all(), 2u);
    EXPECT_EQ(reports.only(1), IoStatus::kSuccess);
    EXPECT_EQ(reports.only(2), IoStatus::kTimeout);
    EXPECT_EQ(owner.disables, 1);
    EXPECT_EQ(owner.enables, 1) << "the queue is enabled again on fresh rings";
    EXPECT_EQ(owner.resets, 0);
    EXPECT_EQ(qp->stats().timeouts, 1u);
    EXPECT_EQ(qp->stats().queue_recoveries, 1u);
    expect_back_in_service(3);
}

// A command queued behind one the card has answered but the host has not yet reaped, after a
// pause longer than the timeout, is as old as its own submission: before, it took the stamp of
// the last clock reading and was reported TIMEOUT as soon as it was polled.
TEST_F(QueuePairAlone, ACommandQueuedAfterAPauseIsNotOverdueAtOnce) {
    open(1s);
    submit(1);
    post(cid_in_slot(0), 0, 1);
    std::this_thread::sleep_for(1500ms);
    submit(2);
    EXPECT_EQ(poll_all(), 1u);
    EXPECT_EQ(reports.only(1), IoStatus::kSuccess);
    EXPECT_EQ(reports.by_command.count(2), 0u) << "command 2 was reported " << int(reports.only(2));
    EXPECT_EQ(qp->stats().timeouts, 0u);
    post(cid_in_slot(1), 0, 2);
    EXPECT_EQ(poll_all(), 1u);
    EXPECT_EQ(reports.only(2), IoStatus::kSuccess);
}

// A batch's clock reading is kept in its first command, and each of the others is as old as the
// one queued before it: the stamp must stay with the batch whichever of its commands is answered
// first, and recovery must judge each command by its own age.
TEST_F(QueuePairAlone, TheCommandsOfABatchKeepItsAgeWhicheverOfThemIsAnsweredFirst) {
    open(1s);
    const DmaSegment s = buf.segment(0, 512);
    std::vector<IoRequest> batch;
    for (uintptr_t n = 1; n <= 4; ++n)
        batch.push_back({Opcode::kWrite, 0, {&s, 1}, Reports::callback, reinterpret_cast<void*>(n)});
    ASSERT_EQ(qp->submit_batch(batch).value_or(0), 4u);
    // The second, then the first, which holds the batch's stamp.
    post(cid_in_slot(1), 0, 0);
    post(cid_in_slot(0), 0, 2);
    EXPECT_EQ(qp->poll(), 2u);
    std::this_thread::sleep_for(1500ms);
    submit(5);  // after the pause: not overdue
    EXPECT_EQ(poll_all(), 3u);
    EXPECT_EQ(reports.only(1), IoStatus::kSuccess);
    EXPECT_EQ(reports.only(2), IoStatus::kSuccess);
    EXPECT_EQ(reports.only(3), IoStatus::kTimeout);
    EXPECT_EQ(reports.only(4), IoStatus::kTimeout);
    EXPECT_EQ(reports.only(5), IoStatus::kAborted) << "queued after the pause, it was not overdue";
    EXPECT_EQ(qp->stats().timeouts, 2u);
}

// Recovery reports the outstanding commands by tag, which is not the order they were queued in
// once tags come back out of order: each is still judged by its batch's age.
TEST_F(QueuePairAlone, RecoveryJudgesEachCommandOfABatchByItsAgeInWhateverOrderItReportsThem) {
    open(1s);
    const DmaSegment s = buf.segment(0, 512);
    auto batch_of = [&](uintptr_t first, uintptr_t count) {
        std::vector<IoRequest> batch;
        for (uintptr_t n = first; n < first + count; ++n)
            batch.push_back({Opcode::kWrite, 0, {&s, 1}, Reports::callback, reinterpret_cast<void*>(n)});
        EXPECT_EQ(qp->submit_batch(batch).value_or(0), count);
    };
    batch_of(1, 2);
    post(cid_in_slot(0), 0, 1);
    post(cid_in_slot(1), 0, 2);
    EXPECT_EQ(qp->poll(), 2u);
    // The tags come back last freed first: command 3 takes the second's tag and 4 the first's.
    batch_of(3, 3);
    std::this_thread::sleep_for(1500ms);
    submit(6);
    EXPECT_EQ(poll_all(), 4u);
    for (uintptr_t n = 3; n <= 5; ++n) EXPECT_EQ(reports.only(n), IoStatus::kTimeout) << "command " << n;
    EXPECT_EQ(reports.only(6), IoStatus::kAborted);
}

TEST_F(QueuePairAlone, ADisableThatNeverFinishesResetsTheController) {
    EXPECT_EQ(time_out_one_command(FakeOwner::Disable::kNeverFinishes), IoStatus::kTimeout);
    ASSERT_EQ(owner.resets, 1);
    EXPECT_NE(owner.last_reset_why.find("queue 3 did not go down after command"), std::string::npos)
        << owner.last_reset_why;
    EXPECT_EQ(owner.enables, 1);
    EXPECT_EQ(qp->stats().controller_resets, 1u);
    owner.disable = FakeOwner::Disable::kFinishes;
    expect_back_in_service(2);
}

TEST_F(QueuePairAlone, AResetThatFailsLeavesTheQueueBrokenSayingWhy) {
    owner.reset_works = false;
    EXPECT_EQ(time_out_one_command(FakeOwner::Disable::kNeverFinishes), IoStatus::kTimeout);
    const Error refused = refused_submission(2);
    EXPECT_EQ(refused.code, EIO);
    EXPECT_NE(refused.message.find("did not come back from the reset"), std::string::npos) << refused.message;
    // Closing tries the disable once more and says that it failed; the slot is given back all the same.
    auto closed = qp->close();
    ASSERT_FALSE(closed);
    EXPECT_EQ(closed.error().code, ETIMEDOUT);
    EXPECT_EQ(owner.released, std::vector<uint16_t>{kQid});
    EXPECT_EQ(reports.by_command.size(), 1u);
}

TEST_F(QueuePairAlone, AResetSomeoneElseDidReportsTheOutstandingCommandsAsReset) {
    open();  // no timeout: only the reset can bring the command back
    submit(1);
    owner.reset_by_someone_else();
    EXPECT_EQ(qp->poll(), 1u);
    EXPECT_EQ(reports.only(1), IoStatus::kReset);
    EXPECT_EQ(owner.enables, 1);
    EXPECT_EQ(owner.disables, 0) << "the reset took every queue down already";
    expect_back_in_service(2);
}

TEST_F(QueuePairAlone, ADeviceThatGoesAwayHandsBackWhatItPostedAndTheRestAsGone) {
    open();
    submit(1);
    submit(2);
    post(cid_in_slot(0), 0, 1);  // posted before it went, not yet reaped
    owner.gone = true;
    EXPECT_EQ(qp->poll(), 2u);
    EXPECT_EQ(reports.only(1), IoStatus::kSuccess);
    EXPECT_EQ(reports.only(2), IoStatus::kDeviceGone);
    EXPECT_TRUE(qp->device_gone());
    EXPECT_EQ(refused_submission(3).code, ENODEV);
    EXPECT_TRUE(qp->close());
    EXPECT_EQ(owner.disables, 0) << "nothing to take down on a device that is gone";
    EXPECT_EQ(owner.released, std::vector<uint16_t>{kQid});
}

TEST_F(QueuePairAlone, ADeviceFoundGoneWhileRecoveringReportsGoneNotTimeout) {
    EXPECT_EQ(time_out_one_command(FakeOwner::Disable::kDeviceGone), IoStatus::kDeviceGone);
    EXPECT_EQ(owner.resets, 0);
}

TEST_F(QueuePairAlone, ClosingReportsWhatTheCardNeverAnsweredAsCancelled) {
    open();
    submit(1);
    submit(2);
    post(cid_in_slot(1), 0, 2);
    EXPECT_TRUE(qp->close());
    EXPECT_EQ(reports.only(1), IoStatus::kCancelled);
    EXPECT_EQ(reports.only(2), IoStatus::kSuccess) << "the disable's drain reaps what the card answered";
    EXPECT_EQ(owner.disables, 1);
    EXPECT_EQ(owner.released, std::vector<uint16_t>{kQid});
    EXPECT_EQ(refused_submission(3).code, EPIPE);
}

TEST_F(QueuePairAlone, WaitingEndsOnTheInterruptAndCountsIt) {
    open(0ns, true);
    EXPECT_GE(qp->event_fd(), 0);
    submit(1);
    // The interrupt comes before the completion is looked for: the wait ends at once and polls.
    post(cid_in_slot(0), 0, 1);
    const uint64_t one = 1;
    ASSERT_EQ(::write(event_fd, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    auto n = qp->wait(60s);
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_EQ(*n, 1u);
    EXPECT_EQ(reports.only(1), IoStatus::kSuccess);
    // An interrupt with nothing new: the wait reads it and finds nothing.
    ASSERT_EQ(::write(event_fd, &one, sizeof(one)), static_cast<ssize_t>(sizeof(one)));
    n = qp->wait(60s);
    ASSERT_TRUE(n) << n.error().message;
    EXPECT_EQ(*n, 0u);
    EXPECT_EQ(qp->stats().interrupts, 1u);
}

TEST_F(QueuePairAlone, WaitingSeesATimeoutWithoutWaitingItOut) {
    open(1ms, true);
    submit(1);
    const auto start = std::chrono::steady_clock::now();
    while (reports.by_command.empty() && std::chrono::steady_clock::now() - start < 60s) {
        auto n = qp->wait(120s);
        ASSERT_TRUE(n) << n.error().message;
    }
    EXPECT_EQ(reports.only(1), IoStatus::kTimeout);
}

TEST_F(QueuePairAlone, WaitingNeedsInterruptMode) {
    open();
    auto n = qp->wait(1ms);
    ASSERT_FALSE(n);
    EXPECT_EQ(n.error().code, ENOTSUP);
}

}  // namespace
}  // namespace vfioq
