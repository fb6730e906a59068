// SPDX-License-Identifier: MIT
// The model's registers against docs/device-interface.md, accessed directly.
#include <gtest/gtest.h>
#include <linux/pci_regs.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "../support/model_fixture.hpp"
#include "vfioq/sgq_commands.hpp"
#include "vfioq/sgq_registers.hpp"
#include "vfioq/transport.hpp"

namespace vfioq::model {
namespace {

using namespace vfioq::sgq;

constexpr uint32_t kConfig = static_cast<uint32_t>(PciRegion::kConfig);

std::unique_ptr<SgqDevice> make(ModelConfig config = {}) {
    auto d = SgqDevice::create(config);
    EXPECT_TRUE(d.has_value()) << (d ? "" : d.error().message);
    return std::move(*d);
}

void enable_controller(SgqDevice& d) {
    d.write32(kRegCtrl, kCtrlEn);
    ASSERT_TRUE(d.read32(kRegStatus) & kStatusRdy);
}

void program_queue(SgqDevice& d, uint32_t q, uint64_t sq, uint64_t cq, uint32_t sq_size, uint32_t cq_size) {
    d.write32(queue_register(q, kQRegSqBase), static_cast<uint32_t>(sq));
    d.write32(queue_register(q, kQRegSqBase + 4), static_cast<uint32_t>(sq >> 32));
    d.write32(queue_register(q, kQRegCqBase), static_cast<uint32_t>(cq));
    d.write32(queue_register(q, kQRegCqBase + 4), static_cast<uint32_t>(cq >> 32));
    d.write32(queue_register(q, kQRegSqSize), sq_size);
    d.write32(queue_register(q, kQRegCqSize), cq_size);
}

TEST(SgqDevice, IdentityRegistersHoldTheirSpecValues) {
    auto d = make();
    EXPECT_EQ(d->read32(kRegId), kIdValue);
    EXPECT_EQ(d->read32(kRegVersion), 0x00010000u);
    const Cap cap = Cap::decode(d->read64(kRegCap));
    EXPECT_EQ(cap.mqes, 0xFFFFu);
    EXPECT_EQ(cap.nqp, 15u);
    EXPECT_EQ(cap.timeout, 5u);
    EXPECT_EQ(cap.dstrd, 0u);
    EXPECT_EQ(cap.sge_align, 0u);
    EXPECT_EQ(cap.max_xfer, 24u);
    EXPECT_EQ(cap.max_sge, 1024u);
    EXPECT_EQ(d->read64(kRegDevmemSize), 64ull << 20);
}

TEST(SgqDevice, ConfiguredCapFieldsAppearInCap) {
    ModelConfig c;
    c.mqes = 4096;
    c.nqp = 3;
    c.dstrd = 2;
    c.sge_align = 3;
    c.max_xfer = 20;
    c.max_sge = 77;
    c.devmem_size = 1 << 20;
    auto d = make(c);
    const Cap cap = Cap::decode(d->read64(kRegCap));
    EXPECT_EQ(cap.mqes, 4096u);
    EXPECT_EQ(cap.nqp, 3u);
    EXPECT_EQ(cap.dstrd, 2u);
    EXPECT_EQ(cap.sge_align, 3u);
    EXPECT_EQ(cap.max_xfer, 20u);
    EXPECT_EQ(cap.max_sge, 77u);
    EXPECT_EQ(d->read64(kRegDevmemSize), 1u << 20);
}

TEST(SgqDevice, InvalidConfigurationIsRefusedWithAReason) {
    ModelConfig c;
    c.nqp = 255;
    c.dstrd = 4;  // 256 queue pairs * 2 * 64 bytes do not fit the doorbell page
    auto d = SgqDevice::create(c);
    ASSERT_FALSE(d.has_value());
    EXPECT_NE(d.error().message.find("doorbell page"), std::string::npos) << d.error().message;
}

TEST(SgqDevice, ReadOnlyRegistersIgnoreWrites) {
    auto d = make();
    const uint64_t cap = d->read64(kRegCap);
    for (uint64_t reg : {kRegId, kRegVersion, kRegCap, kRegCap + 4, kRegDevmemSize, kRegStatus, kRegErrQid,
                         kRegErrAddr, kRegStatCmds, kRegStatBytes})
        d->write32(reg, 0xA5A5A5A5);
    EXPECT_EQ(d->read32(kRegId), kIdValue);
    EXPECT_EQ(d->read32(kRegVersion), kVersionValue);
    EXPECT_EQ(d->read64(kRegCap), cap);
    EXPECT_EQ(d->read32(kRegStatus), 0u);
    EXPECT_EQ(d->read32(kRegErrQid), 0u);
    EXPECT_EQ(d->read64(kRegErrAddr), 0u);
    EXPECT_EQ(d->read64(kRegStatCmds), 0u);
}

TEST(SgqDevice, ScratchReadsBackAndClearsOnEveryKindOfReset) {
    auto d = make();
    d->write32(kRegScratch, 0x1234);
    EXPECT_EQ(d->read32(kRegScratch), 0x1234u);

    d->write32(kRegReset, kResetMagic);
    EXPECT_EQ(d->read32(kRegScratch), 0u);

    enable_controller(*d);
    d->write32(kRegScratch, 0xBEEF);
    d->write32(kRegCtrl, 0);  // EN 1 -> 0
    EXPECT_EQ(d->read32(kRegScratch), 0u);

    d->write32(kRegScratch, 0xCAFE);
    d->function_reset();
    EXPECT_EQ(d->read32(kRegScratch), 0u);
}

TEST(SgqDevice, ResetIsWriteOnlyAndNeedsTheMagicValue) {
    auto d = make();
    enable_controller(*d);
    d->write32(kRegScratch, 7);
    d->write32(kRegReset, 0x12345678);  // not "RSET": ignored
    EXPECT_EQ(d->read32(kRegScratch), 7u);
    EXPECT_TRUE(d->read32(kRegStatus) & kStatusRdy);
    EXPECT_EQ(d->read32(kRegReset), 0u);
    d->write32(kRegReset, kResetMagic);
    EXPECT_EQ(d->read32(kRegScratch), 0u);
    EXPECT_EQ(d->read32(kRegCtrl), 0u);
    EXPECT_EQ(d->read32(kRegStatus) & kStatusRdy, 0u);
}

TEST(SgqDevice, ReadyFollowsEnableAfterTheConfiguredDelay) {
    ModelConfig c;
    c.ready_delay = std::chrono::milliseconds(50);
    auto d = make(c);
    d->write32(kRegCtrl, kCtrlEn);
    EXPECT_EQ(d->read32(kRegCtrl) & kCtrlEn, kCtrlEn);
    EXPECT_EQ(d->read32(kRegStatus) & kStatusRdy, 0u);
    std::this_thread::sleep_for(std::chrono::milliseconds(80));
    EXPECT_EQ(d->read32(kRegStatus) & kStatusRdy, kStatusRdy);
    d->write32(kRegCtrl, 0);
    EXPECT_EQ(d->read32(kRegStatus) & kStatusRdy, 0u);
}

TEST(SgqDevice, CtrlKeepsOnlyDefinedBits) {
    auto d = make();
    d->write32(kRegCtrl, 0xFFFFFFFF);
    EXPECT_EQ(d->read32(kRegCtrl), kCtrlEn | kCtrlShnMask);
}

TEST(SgqDevice, NormalShutdownCompletes) {
    auto d = make();
    enable_controller(*d);
    d->write32(kRegCtrl, kCtrlEn | kCtrlShnNormal);
    EXPECT_TRUE(test::eventually(
        [&] { return (d->read32(kRegStatus) & kStatusShstMask) >> kStatusShstShift == kShstComplete; }));
    d->write32(kRegReset, kResetMagic);
    EXPECT_EQ(d->read32(kRegStatus) & kStatusShstMask, 0u);
}

TEST(SgqDevice, ErrStatusIsWriteOneToClear) {
    auto d = make();
    std::array<std::byte, 8> buf{};
    DmaSpace::Reader reader(d->dma());
    ASSERT_FALSE(d->dma_read(reader, 3, 0x42, 0x7000, buf).has_value());
    EXPECT_EQ(d->read32(kRegErrStatus), kErrDmaFault);
    d->write32(kRegErrStatus, 0);  // writing 0 clears nothing
    EXPECT_EQ(d->read32(kRegErrStatus), kErrDmaFault);
    d->write32(kRegErrStatus, kErrSgl);  // another bit: nothing to clear
    EXPECT_EQ(d->read32(kRegErrStatus), kErrDmaFault);
    d->write32(kRegErrStatus, kErrDmaFault);
    EXPECT_EQ(d->read32(kRegErrStatus), 0u);
}

TEST(SgqDevice, DmaFaultRecordsQueueCommandAndAddress) {
    auto d = make();
    std::array<std::byte, 16> buf{};
    DmaSpace::Reader reader(d->dma());
    auto r = d->dma_write(reader, 5, 0x1234, 0xDEAD000, buf);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, EFAULT);
    EXPECT_NE(r.error().message.find("0xdead000"), std::string::npos) << r.error().message;
    EXPECT_EQ(d->read32(kRegErrQid), 5u | 0x1234u << 16);
    EXPECT_EQ(d->read64(kRegErrAddr), 0xDEAD000u);
}

TEST(SgqDevice, FatalErrorSetsCfsUntilReset) {
    auto d = make();
    enable_controller(*d);
    d->inject_fatal_error();
    EXPECT_TRUE(d->read32(kRegStatus) & kStatusCfs);
    d->write32(kRegCtrl, 0);
    EXPECT_FALSE(d->read32(kRegStatus) & kStatusCfs);
}

TEST(SgqDevice, QueueEnableNeedsReadyController) {
    auto d = make();
    program_queue(*d, 0, 0x10000, 0x20000, 15, 15);
    d->write32(queue_register(0, kQRegCtrl), kQCtrlEnable | kQCtrlIen | 3u << 16);
    EXPECT_EQ(d->read32(queue_register(0, kQRegStatus)), 0u);
    EXPECT_EQ(d->read32(queue_register(0, kQRegCtrl)), kQCtrlIen | 3u << 16);  // ENABLE ignored, rest kept
    enable_controller(*d);
    d->write32(queue_register(0, kQRegCtrl), kQCtrlEnable);
    EXPECT_EQ(d->read32(queue_register(0, kQRegStatus)), kQStatusEnabled);
}

TEST(SgqDevice, BaseAndSizeAreFixedWhileTheQueueIsEnabled) {
    auto d = make();
    enable_controller(*d);
    program_queue(*d, 2, 0x10000, 0x20000, 15, 31);
    d->write32(queue_register(2, kQRegCtrl), kQCtrlEnable);
    program_queue(*d, 2, 0x90000, 0xA0000, 7, 7);
    EXPECT_EQ(d->read64(queue_register(2, kQRegSqBase)), 0x10000u);
    EXPECT_EQ(d->read64(queue_register(2, kQRegCqBase)), 0x20000u);
    EXPECT_EQ(d->read32(queue_register(2, kQRegSqSize)), 15u);
    EXPECT_EQ(d->read32(queue_register(2, kQRegCqSize)), 31u);
    d->write32(queue_register(2, kQRegCoal), 0x00100004);  // Q_COAL stays writable
    EXPECT_EQ(d->read32(queue_register(2, kQRegCoal)), 0x00100004u);
    d->write32(queue_register(2, kQRegCtrl), 0);
    // The card clears ENABLED once it has completed what it fetched.
    EXPECT_TRUE(test::eventually([&] { return d->read32(queue_register(2, kQRegStatus)) == 0u; }));
    program_queue(*d, 2, 0x90000, 0xA0000, 7, 7);
    EXPECT_EQ(d->read64(queue_register(2, kQRegSqBase)), 0x90000u);
}

TEST(SgqDevice, BadEnableSetsQueueErrorAndRaisesVectorZero) {
    struct Case {
        const char* what;
        uint64_t sq, cq;
        uint32_t sq_size, cq_size;
    };
    ModelConfig c;
    c.mqes = 1023;
    for (const Case& k : {Case{"misaligned SQ", 0x10010, 0x20000, 7, 7}, Case{"misaligned CQ", 0x10000, 0x20100, 7, 7},
                          Case{"SQ size 0", 0x10000, 0x20000, 0, 7}, Case{"CQ size 0", 0x10000, 0x20000, 7, 0},
                          Case{"SQ size above MQES", 0x10000, 0x20000, 1024, 7},
                          Case{"CQ size above MQES", 0x10000, 0x20000, 7, 1024}}) {
        SCOPED_TRACE(k.what);
        auto d = make(c);
        auto efd = test::make_eventfd();
        std::vector<UniqueFd> fds;
        fds.emplace_back(::dup(efd.get()));
        d->msix().assign(0, std::move(fds));
        enable_controller(*d);
        program_queue(*d, 1, k.sq, k.cq, k.sq_size, k.cq_size);
        d->write32(queue_register(1, kQRegCtrl), kQCtrlEnable);
        EXPECT_EQ(d->read32(queue_register(1, kQRegStatus)), kQStatusError);
        EXPECT_EQ(test::wait_eventfd(efd.get()), 1u);
        // Disabling clears the halt; a good configuration then enables.
        d->write32(queue_register(1, kQRegCtrl), 0);
        EXPECT_EQ(d->read32(queue_register(1, kQRegStatus)), 0u);
        program_queue(*d, 1, 0x10000, 0x20000, 7, 7);
        d->write32(queue_register(1, kQRegCtrl), kQCtrlEnable);
        EXPECT_EQ(d->read32(queue_register(1, kQRegStatus)), kQStatusEnabled);
    }
}

TEST(SgqDevice, DoorbellsReadZeroAfterEnableAndResetClearsQueues) {
    auto d = make();
    enable_controller(*d);
    d->write32(sq_tail_doorbell(4, 0), 9);
    d->write32(cq_head_doorbell(4, 0), 3);
    EXPECT_EQ(d->read32(sq_tail_doorbell(4, 0)), 9u);
    program_queue(*d, 4, 0x10000, 0x20000, 15, 15);
    d->write32(queue_register(4, kQRegCtrl), kQCtrlEnable);
    EXPECT_EQ(d->read32(sq_tail_doorbell(4, 0)), 0u);
    EXPECT_EQ(d->read32(cq_head_doorbell(4, 0)), 0u);
    d->write32(sq_tail_doorbell(4, 0), 5);
    d->write32(kRegReset, kResetMagic);
    EXPECT_EQ(d->read32(queue_register(4, kQRegStatus)), 0u);
    EXPECT_EQ(d->read64(queue_register(4, kQRegSqBase)), 0u);
    EXPECT_EQ(d->read32(sq_tail_doorbell(4, 0)), 0u);
}

// A controller reset stops the card at once (device interface, section 5): once the write
// that clears EN has returned, a command the card was running moves no more data and posts no
// completion. The card is held inside the command's first segment, whose window the client
// serves and this test answers only after the reset; the second segment is plain memory.
TEST(SgqDevice, AResetDuringACommandLeavesNoCompletionAndMovesNoMoreData) {
    std::mutex m;
    std::condition_variable cv;
    bool inside = false, answer = false;
    ModelConfig config;
    config.thread_time = std::make_shared<QueueThreadTime>();
    auto d = make(config);
    constexpr uint64_t kRings = 0x10000, kCq = kRings + 0x1000, kPlain = 0x20000, kServed = 0x40000;
    test::MemfdBuffer rings(0x2000), plain(0x1000);
    std::memset(plain.data, 0x5A, plain.size);
    ASSERT_TRUE(d->dma().map(kRings, rings.size, true, true, std::move(rings.fd), 0, 64));
    ASSERT_TRUE(d->dma().map(kPlain, plain.size, true, true, std::move(plain.fd), 0, 64));
    ASSERT_TRUE(d->dma().map(kServed, 0x1000, true, true, UniqueFd{}, 0, 64));
    d->dma().set_client_access([&](bool, uint64_t, std::span<std::byte>) -> Result<void> {
        std::unique_lock lock(m);
        inside = true;
        cv.notify_all();
        cv.wait(lock, [&] { return answer; });
        return {};
    });
    enable_controller(*d);
    program_queue(*d, 0, kRings, kCq, 3, 3);
    d->write32(queue_register(0, kQRegCtrl), kQCtrlEnable);
    ASSERT_EQ(d->read32(queue_register(0, kQRegStatus)) & kQStatusEnabled, kQStatusEnabled);

    SubmissionEntry read{};
    read.opcode = kOpRead;
    read.cid = 7;
    read.length = 1024;
    read.dptr1 = SglDescriptor::make(kSglData, kServed, 512);
    read.dptr2 = SglDescriptor::make(kSglData, kPlain, 512);
    std::memcpy(rings.data, &read, sizeof(read));
    d->write32(sq_tail_doorbell(0, 0), 1);
    {
        std::unique_lock lock(m);
        ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(60), [&] { return inside; }))
            << "the card never reached the command's first segment";
    }
    d->write32(kRegCtrl, 0);
    EXPECT_EQ(d->read32(kRegStatus) & kStatusRdy, 0u);
    const int64_t answered = QueueThreadTime::ns(std::chrono::steady_clock::now());
    {
        std::lock_guard lock(m);
        answer = true;
        cv.notify_all();
    }
    // The card's thread is done with the command once it starts an idle spell after the answer.
    ASSERT_TRUE(test::eventually([&] { return config.thread_time->idle_since_ns.load() > answered; }, 60000));
    const std::vector<std::byte> zero(kCqEntrySize), untouched(512, std::byte{0x5A});
    EXPECT_EQ(std::memcmp(rings.data + (kCq - kRings), zero.data(), zero.size()), 0)
        << "a completion was posted after the reset";
    EXPECT_EQ(std::memcmp(plain.data, untouched.data(), untouched.size()), 0)
        << "the second segment moved after the reset";
}

// The write that resets the controller returns only once the card's thread has left the pass it
// was in: the card is held inside its pass by the interrupt it raises after a completion, on an
// eventfd whose count is full, so that the write blocks until this test reads it.
TEST(SgqDevice, AResetReturnsOnlyOnceTheCardHasLeftThePassItWasIn) {
    auto d = make();
    constexpr uint64_t kRings = 0x10000, kCq = kRings + 0x1000;
    test::MemfdBuffer rings(0x2000);
    ASSERT_TRUE(d->dma().map(kRings, rings.size, true, true, std::move(rings.fd), 0, 64));
    UniqueFd full(::eventfd(0, EFD_CLOEXEC));  // blocking
    const uint64_t most = 0xFFFFFFFFFFFFFFFEull;
    ASSERT_EQ(::write(full.get(), &most, sizeof(most)), static_cast<ssize_t>(sizeof(most)));
    std::vector<UniqueFd> fds;
    fds.emplace_back(::dup(full.get()));
    d->msix().assign(1, std::move(fds));
    enable_controller(*d);
    program_queue(*d, 0, kRings, kCq, 3, 3);
    d->write32(queue_register(0, kQRegCtrl), kQCtrlEnable | kQCtrlIen | 1u << kQCtrlVectorShift);

    SubmissionEntry nop{};
    nop.opcode = kOpNop;
    nop.cid = 3;
    std::memcpy(rings.data, &nop, sizeof(nop));
    d->write32(sq_tail_doorbell(0, 0), 1);
    CompletionEntry cqe{};
    ASSERT_TRUE(test::eventually(
        [&] {
            std::memcpy(&cqe, rings.data + (kCq - kRings), sizeof(cqe));
            return cqe.phase();
        },
        60000))
        << "the NOP was not completed";
    EXPECT_EQ(cqe.cid, 3u);
    std::atomic<bool> returned{false};
    std::thread reset([&] {
        d->write32(kRegCtrl, 0);
        returned = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    EXPECT_FALSE(returned.load()) << "the reset returned while the card was still in its pass";
    uint64_t count = 0;
    ASSERT_EQ(::read(full.get(), &count, sizeof(count)), static_cast<ssize_t>(sizeof(count)));
    reset.join();
    EXPECT_TRUE(returned.load());
    EXPECT_EQ(d->read32(kRegStatus) & kStatusRdy, 0u);
}

TEST(SgqDevice, ReservedSpaceReadsZeroAndQueuesBeyondNqpAreAbsent) {
    ModelConfig c;
    c.nqp = 1;
    auto d = make(c);
    d->write32(0x3000, 0xFFFFFFFF);
    EXPECT_EQ(d->read32(0x3000), 0u);
    EXPECT_EQ(d->read32(0x0FF0), 0u);
    d->write32(queue_register(5, kQRegSqSize), 77);
    EXPECT_EQ(d->read32(queue_register(5, kQRegSqSize)), 0u);
}

TEST(SgqDevice, RegionAccessRulesAreEnforced) {
    auto d = make();
    std::array<std::byte, 8> buf{};
    EXPECT_FALSE(d->region_read(0, 0x21, std::span(buf).first(4)).has_value());  // misaligned
    EXPECT_FALSE(d->region_read(0, kBar0Size - 4, buf).has_value());             // beyond the BAR
    EXPECT_FALSE(d->region_write(0, 0x20, std::span(buf).first(2)).has_value()); // registers take 4 or 8
    EXPECT_FALSE(d->region_read(1, 0, std::span(buf).first(4)).has_value());     // BAR1 does not exist
    EXPECT_TRUE(d->region_read(0, 0, std::span(buf).first(2)).has_value());      // 16-bit read of ID
    EXPECT_EQ(static_cast<uint8_t>(buf[0]), 0x53);
    EXPECT_EQ(static_cast<uint8_t>(buf[1]), 0x47);
}

// Config space: identity, BAR sizing, capabilities, FLR.
uint32_t config32(SgqDevice& d, uint32_t off) {
    uint32_t v = 0;
    EXPECT_TRUE(d.region_read(kConfig, off, {reinterpret_cast<std::byte*>(&v), 4}).has_value());
    return v;
}
void config_write32(SgqDevice& d, uint32_t off, uint32_t v) {
    EXPECT_TRUE(d.region_write(kConfig, off, {reinterpret_cast<const std::byte*>(&v), 4}).has_value());
}

TEST(SgqConfigSpace, IdentityAndClass) {
    auto d = make();
    EXPECT_EQ(config32(*d, PCI_VENDOR_ID), 0x51471234u);
    EXPECT_EQ(config32(*d, PCI_CLASS_REVISION) >> 8, kClassCode);
    config_write32(*d, PCI_VENDOR_ID, 0);
    EXPECT_EQ(config32(*d, PCI_VENDOR_ID), 0x51471234u);
}

TEST(SgqConfigSpace, BarSizingReportsSizeAndType) {
    auto d = make();
    config_write32(*d, PCI_BASE_ADDRESS_0, 0xFFFFFFFF);
    config_write32(*d, PCI_BASE_ADDRESS_1, 0xFFFFFFFF);
    EXPECT_EQ(config32(*d, PCI_BASE_ADDRESS_0), 0xFFFFC004u);  // 16 KiB, 64-bit memory
    EXPECT_EQ(config32(*d, PCI_BASE_ADDRESS_1), 0xFFFFFFFFu);
    config_write32(*d, PCI_BASE_ADDRESS_2, 0xFFFFFFFF);
    EXPECT_EQ(config32(*d, PCI_BASE_ADDRESS_2), 0xFFFFE004u);  // 8 KiB
    config_write32(*d, PCI_BASE_ADDRESS_4, 0xFFFFFFFF);
    EXPECT_EQ(config32(*d, PCI_BASE_ADDRESS_4), 0u);  // not implemented
}

TEST(SgqConfigSpace, CapabilityListHasPmMsixAndPcie) {
    ModelConfig c;
    c.nqp = 7;
    c.link_speed = 3;
    c.link_width = 4;
    auto d = make(c);
    EXPECT_TRUE(config32(*d, PCI_COMMAND) >> 16 & PCI_STATUS_CAP_LIST);
    std::vector<uint8_t> ids;
    uint32_t at = config32(*d, PCI_CAPABILITY_LIST) & 0xFF;
    while (at != 0 && ids.size() < 8) {
        const uint32_t hdr = config32(*d, at);
        ids.push_back(hdr & 0xFF);
        if ((hdr & 0xFF) == PCI_CAP_ID_MSIX) {
            EXPECT_EQ((hdr >> 16 & PCI_MSIX_FLAGS_QSIZE) + 1, 8u);
            EXPECT_EQ(config32(*d, at + PCI_MSIX_TABLE), 2u);
            EXPECT_EQ(config32(*d, at + PCI_MSIX_PBA), 0x1002u);
        }
        if ((hdr & 0xFF) == PCI_CAP_ID_EXP) {
            const uint32_t lnksta = config32(*d, at + PCI_EXP_LNKCTL) >> 16;
            EXPECT_EQ(lnksta & PCI_EXP_LNKSTA_CLS, 3u);
            EXPECT_EQ((lnksta & PCI_EXP_LNKSTA_NLW) >> 4, 4u);
        }
        at = hdr >> 8 & 0xFF;
    }
    EXPECT_EQ(ids, (std::vector<uint8_t>{PCI_CAP_ID_PM, PCI_CAP_ID_MSIX, PCI_CAP_ID_EXP}));
}

TEST(SgqConfigSpace, FunctionLevelResetThroughDeviceControl) {
    auto d = make();
    enable_controller(*d);
    d->write32(kRegScratch, 0x55);
    const uint32_t devctl = 0x60 + PCI_EXP_DEVCTL;
    config_write32(*d, devctl, config32(*d, devctl) | PCI_EXP_DEVCTL_BCR_FLR);
    EXPECT_EQ(d->read32(kRegScratch), 0u);
    EXPECT_EQ(d->read32(kRegCtrl), 0u);
    EXPECT_EQ(config32(*d, devctl) & PCI_EXP_DEVCTL_BCR_FLR, 0u);  // reads as 0
}

// MSI-X: delivery rules.
TEST(SgqMsix, MaskedVectorsPendAndFireOnUnmask) {
    auto d = make();
    auto efd = test::make_eventfd();
    std::vector<UniqueFd> fds;
    fds.emplace_back(::dup(efd.get()));
    d->msix().assign(2, std::move(fds));
    d->msix().raise(2);
    EXPECT_EQ(test::wait_eventfd(efd.get()), 1u);

    // Mask through the table entry's vector control: the PBA bit shows it pending.
    uint32_t one = 1;
    ASSERT_TRUE(d->region_write(2, 2 * 16 + 12, {reinterpret_cast<std::byte*>(&one), 4}).has_value());
    d->msix().raise(2);
    EXPECT_EQ(test::wait_eventfd(efd.get(), 50), 0u);
    uint32_t pba = 0;
    ASSERT_TRUE(d->region_read(2, kMsixPbaOffset, {reinterpret_cast<std::byte*>(&pba), 4}).has_value());
    EXPECT_EQ(pba, 1u << 2);
    uint32_t zero = 0;
    ASSERT_TRUE(d->region_write(2, 2 * 16 + 12, {reinterpret_cast<std::byte*>(&zero), 4}).has_value());
    EXPECT_EQ(test::wait_eventfd(efd.get()), 1u);
    EXPECT_FALSE(d->msix().pending(2));

    // Mask through SET_IRQS' mask action.
    d->msix().set_masked(2, 1, {}, true);
    d->msix().raise(2);
    EXPECT_EQ(test::wait_eventfd(efd.get(), 50), 0u);
    d->msix().set_masked(2, 1, {}, false);
    EXPECT_EQ(test::wait_eventfd(efd.get()), 1u);
    EXPECT_EQ(d->msix().delivered(2), 3u);
}

TEST(SgqMsix, VectorWithoutEventfdStaysPending) {
    auto d = make();
    d->msix().raise(5);
    EXPECT_TRUE(d->msix().pending(5));
    auto efd = test::make_eventfd();
    std::vector<UniqueFd> fds;
    fds.emplace_back(::dup(efd.get()));
    d->msix().assign(5, std::move(fds));
    EXPECT_EQ(test::wait_eventfd(efd.get()), 1u);
}

}  // namespace
}  // namespace vfioq::model
