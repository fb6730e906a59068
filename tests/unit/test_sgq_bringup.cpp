// SPDX-License-Identifier: MIT
// SGQ bring-up (spec section 5) against a register file played by the test:
// a card that is not an SGQ card, a newer interface, CAP fields out of range,
// one that never gets ready or reports a fatal status, and one that is gone;
// and the NVMe profile's checks of CAP before it builds its admin queue.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <map>

#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

using namespace sgq;

class RegisterFile : public Transport {
public:
    RegisterFile() {
        info_.is_pci = true;
        info_.num_regions = 9;
        info_.num_irqs = 5;
        regs[kRegId] = kIdValue;
        regs[kRegVersion] = kVersionValue;
        regs[kRegCap] = 0x0000FFFF | 15u << 16 | 1u << 24;  // MQES 0xffff, NQP 15, TO 1 (100 ms)
        regs[kRegCap + 4] = 24u << 8 | 1024u << 16;          // MAX_XFER 24, MAX_SGE 1024
        regs[kRegDevmemSize] = 1 << 20;
        on_ctrl = [this](uint32_t v) {
            regs[kRegStatus] = ((v & kCtrlEn) ? kStatusRdy : 0) |
                               ((v & kCtrlShnMask) == kCtrlShnNormal ? kShstComplete << kStatusShstShift : 0);
        };
    }
    const std::string& name() const override { return name_; }
    const DeviceInfo& device_info() const override { return info_; }
    uint64_t bar0_size = kBar0Size;
    Result<RegionInfo> region_info(uint32_t index) override {
        RegionInfo r;
        r.index = index;
        r.size = index == kRegisterBar ? bar0_size : 0;
        r.readable = r.writable = r.size != 0;
        return r;
    }
    Result<IrqInfo> irq_info(uint32_t index) override {
        IrqInfo i;
        i.index = index;
        i.count = index == static_cast<uint32_t>(PciIrq::kMsix) ? 16 : 0;
        i.eventfd = true;
        return i;
    }
    Result<void> region_read(uint32_t index, uint64_t offset, std::span<std::byte> data) override {
        if (gone) {
            std::memset(data.data(), 0xFF, data.size());
            return {};
        }
        if (index != kRegisterBar && index != kConfigSpace) {
            std::memset(data.data(), 0, data.size());
            return {};
        }
        auto& file = index == kConfigSpace ? config : regs;
        for (size_t i = 0; i < data.size(); i += 4) {
            const uint32_t v = file[offset + i];
            std::memcpy(data.data() + i, &v, std::min<size_t>(4, data.size() - i));
        }
        return {};
    }
    Result<void> region_write(uint32_t index, uint64_t offset, std::span<const std::byte> data) override {
        if (index != kRegisterBar) return {};
        for (size_t i = 0; i < data.size(); i += 4) {
            uint32_t v;
            std::memcpy(&v, data.data() + i, 4);
            if (offset + i == ctrl_offset) {
                regs[ctrl_offset] = v;
                on_ctrl(v);
            }
        }
        return {};
    }
    Result<RegionMapping> map_region(uint32_t, const MmapArea&) override { return make_error(ENOTSUP, "no mmap"); }
    Result<void> set_irq_eventfds(uint32_t, uint32_t, std::span<const int>) override { return {}; }
    Result<void> disable_irqs(uint32_t) override { return {}; }
    const DmaLimits& dma_limits() const override { return limits_; }
    Result<void> dma_map(const DmaMapping&) override { return {}; }
    Result<void> dma_unmap(uint64_t, uint64_t) override { return {}; }
    Result<void> reset() override { return {}; }

    static constexpr uint32_t kConfigSpace = static_cast<uint32_t>(PciRegion::kConfig);
    std::map<uint64_t, uint32_t> regs;
    std::map<uint64_t, uint32_t> config;  // config space by dword; zero but for what a test sets
    uint64_t ctrl_offset = kRegCtrl;      // the register whose writes on_ctrl sees
    std::function<void(uint32_t)> on_ctrl;
    bool gone = false;

private:
    std::string name_ = "bench-card";
    DeviceInfo info_;
    DmaLimits limits_;
};

Result<std::unique_ptr<Controller>> bring_up(std::function<void(RegisterFile&)> tweak) {
    auto rf = std::make_unique<RegisterFile>();
    tweak(*rf);
    auto d = Device::from_transport(std::move(rf));
    EXPECT_TRUE(d);
    static std::vector<std::unique_ptr<Device>> keep;  // the device outlives the controller
    keep.push_back(std::move(*d));
    return Controller::open(*keep.back());
}

void expect_error(const Result<std::unique_ptr<Controller>>& r, int code, const char* words) {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, code) << r.error().message;
    EXPECT_NE(r.error().message.find("bench-card"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(words), std::string::npos) << r.error().message;
}

TEST(SgqBringUp, AHealthyCardComesUpWithItsCapabilitiesDecoded) {
    auto c = bring_up([](RegisterFile&) {});
    ASSERT_TRUE(c) << c.error().message;
    const auto& info = (*c)->info();
    EXPECT_EQ(info.queue_pairs, 16u);
    EXPECT_EQ(info.max_queue_entries, 65536u);
    EXPECT_EQ(info.max_transfer, 16u << 20);
    EXPECT_EQ(info.max_segments, 1024u);
    EXPECT_EQ(info.devmem_size, 1u << 20);
    EXPECT_EQ(info.ready_timeout, std::chrono::milliseconds(100));
}

TEST(SgqBringUp, SomethingElseIsRefused) {
    expect_error(bring_up([](RegisterFile& r) { r.regs[kRegId] = 0x12345678; }), ENODEV, "not an SGQ card");
    expect_error(bring_up([](RegisterFile& r) { r.regs[kRegVersion] = 0x00020000; }), ENOTSUP, "version 2.0");
    expect_error(bring_up([](RegisterFile& r) { r.gone = true; }), ENODEV, "all-ones");
    // A BAR0 the contract's card cannot have is refused with the size it should be, before any register is read.
    expect_error(bring_up([](RegisterFile& r) { r.bar0_size = uint64_t{1} << 63; }), ENODEV,
                 "its BAR0 is 0x8000000000000000 bytes; an SGQ card's is 0x4000");
    expect_error(bring_up([](RegisterFile& r) { r.bar0_size = 0; }), ENODEV, "no BAR0");
}

// CAP as the card reports it: MQES and NQP in the low word, the rest in the high one.
void set_cap(RegisterFile& r, uint32_t nqp, uint32_t dstrd, uint32_t sge_align, uint32_t max_xfer, uint32_t max_sge,
             uint32_t mqes = 0xFFFF) {
    r.regs[kRegCap] = mqes | nqp << 16 | 1u << 24;
    r.regs[kRegCap + 4] = dstrd | sge_align << 4 | max_xfer << 8 | max_sge << 16;
}

TEST(SgqBringUp, CapFieldsOutOfRangeAreRefusedBeforeAnyIsUsed) {
    // Each would otherwise be a shift past 63 (undefined), a LENGTH that wraps, or a doorbell outside its page.
    expect_error(bring_up([](RegisterFile& r) { set_cap(r, 15, 0, 0, 64, 1024); }), EPROTO, "MAX_XFER 64");
    expect_error(bring_up([](RegisterFile& r) { set_cap(r, 15, 0, 0, 255, 1024); }), EPROTO, "32-bit LENGTH");
    expect_error(bring_up([](RegisterFile& r) { set_cap(r, 15, 0, 0, 32, 1024); }), EPROTO, "MAX_XFER 32");
    expect_error(bring_up([](RegisterFile& r) { set_cap(r, 15, 0, 12, 9, 1024); }), EPROTO, "below SGE_ALIGN 12");
    expect_error(bring_up([](RegisterFile& r) { set_cap(r, 255, 15, 0, 24, 1024); }), EPROTO, "doorbell page");
    expect_error(bring_up([](RegisterFile& r) { set_cap(r, 15, 0, 0, 24, 0); }), EPROTO, "MAX_SGE 0");
    expect_error(bring_up([](RegisterFile& r) { set_cap(r, 15, 0, 0, 24, 1024, 0); }), EPROTO, "MQES 0");
    // The edges that are fine: 2^31 bytes per command, 16 queue pairs at DSTRD 5 fill the page exactly.
    auto c = bring_up([](RegisterFile& r) { set_cap(r, 15, 5, 0, 31, 1); });
    ASSERT_TRUE(c) << c.error().message;
    EXPECT_EQ((*c)->info().max_transfer, uint64_t{1} << 31);
}

TEST(SgqCap, EveryValueOfTheFieldsIsJudgedWithoutUndefinedShifts) {
    // All MAX_XFER, SGE_ALIGN and DSTRD values (UBSan is the other judge).
    for (uint32_t max_xfer = 0; max_xfer <= 0xFF; ++max_xfer)
        for (uint32_t sge_align = 0; sge_align <= 0xF; ++sge_align)
            for (uint32_t dstrd = 0; dstrd <= 0xF; ++dstrd) {
                const Cap cap = Cap::decode(uint64_t{0xFFFF} | uint64_t{dstrd} << 32 | uint64_t{sge_align} << 36 |
                                            uint64_t{max_xfer} << 40 | uint64_t{1} << 48);
                const bool usable = max_xfer <= 31 && max_xfer >= sge_align && 2 * cap.doorbell_stride() <= 4096;
                EXPECT_EQ(!cap.problem().has_value(), usable) << max_xfer << " " << sge_align << " " << dstrd;
                EXPECT_EQ(cap.max_transfer_bytes(), max_xfer <= 31 ? uint64_t{1} << max_xfer : 0);
            }
}

TEST(SgqBringUp, ACardThatNeverGetsReadyTimesOutNamingTheWait) {
    expect_error(bring_up([](RegisterFile& r) { r.on_ctrl = [](uint32_t) {}; }), ETIMEDOUT, "RDY = 1 after EN = 1");
}

TEST(SgqBringUp, AFatalStatusAtEnableIsReported) {
    expect_error(bring_up([](RegisterFile& r) { r.on_ctrl = [&r](uint32_t) { r.regs[kRegStatus] = kStatusCfs; }; }),
                 EIO, "CFS");
}

// An NVMe controller's register file: the class code says NVMe, CAP and VS at 0 and 8, CC at 0x14.
void make_nvme(RegisterFile& r, uint64_t cap) {
    r.regs.clear();
    r.config[0x08] = 0x01080200;  // class 01 (storage), subclass 08 (NVM), interface 02 (NVMe), revision 0
    r.regs[0x0] = static_cast<uint32_t>(cap);
    r.regs[0x4] = static_cast<uint32_t>(cap >> 32);
    r.regs[0x8] = 0x00010400;  // 1.4
    r.ctrl_offset = 0x14;
    r.on_ctrl = [](uint32_t) {};
}

// CAP: MQES, TO 1, DSTRD, the NVM command set, MPSMIN 0.
constexpr uint64_t nvme_cap(uint32_t mqes, uint32_t dstrd) {
    return uint64_t{mqes} | uint64_t{1} << 24 | uint64_t{dstrd} << 32 | uint64_t{1} << 37;
}

TEST(NvmeBringUp, CapFieldsOutOfRangeAreRefusedBeforeTheAdminQueueIsBuilt) {
    expect_error(bring_up([](RegisterFile& r) { make_nvme(r, nvme_cap(0, 0)); }), EPROTO, "MQES 0 is reserved");
    // DSTRD 15: the admin CQ doorbell at 0x1000 + 4 << 15, past a 16 KiB BAR0.
    expect_error(bring_up([](RegisterFile& r) { make_nvme(r, nvme_cap(1023, 15)); }), EPROTO,
                 "DSTRD 15 puts the admin doorbells beyond BAR0 (0x4000 bytes)");
    expect_error(bring_up([](RegisterFile& r) { make_nvme(r, nvme_cap(1023, 0) | uint64_t{1} << 48); }), ENOTSUP,
                 "4 KiB pages");
    expect_error(bring_up([](RegisterFile& r) { make_nvme(r, ~0ull); }), ENODEV, "all-ones");
}

}  // namespace
}  // namespace vfioq
