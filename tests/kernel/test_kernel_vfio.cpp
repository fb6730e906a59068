// SPDX-License-Identifier: MIT
// Runs in the QEMU guest against QEMU's NVMe controller bound to vfio-pci
// (VFIOQ_TEST_DEVICE names it): the kernel VFIO transport under a real IOMMU.
// The controller is driven with raw NVMe registers and one admin command, so
// that DMA both ways, MSI-X and reset are proven without any profile code.
// In no-IOMMU mode (VFIOQ_UNSAFE_NOIOMMU=1) the same runs on physical addresses.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/queue_pair.hpp"

namespace vfioq {
namespace {

constexpr uint32_t kBar = 0;
constexpr uint64_t kCap = 0x0, kVs = 0x8, kCc = 0x14, kCsts = 0x1C, kAqa = 0x24, kAsq = 0x28, kAcq = 0x30;
constexpr uint32_t kMsix = static_cast<uint32_t>(PciIrq::kMsix);

std::string device_address() {
    const char* d = std::getenv("VFIOQ_TEST_DEVICE");
    return d ? d : "";
}

struct Nvme {
    std::unique_ptr<Device> dev;
    DmaBuffer asq, acq, data;
    UniqueFd irq;
    uint32_t dstrd = 0;
    uint16_t sq_tail = 0;

    // What the controller is given for a buffer: its IOVA, or without an IOMMU its physical address.
    uint64_t address(const DmaBuffer& b) {
        auto a = dev->dma().device_address(b.iova(), b.size());
        EXPECT_TRUE(a) << a.error().message;
        return a ? *a : 0;
    }

    bool wait_csts(uint32_t rdy) {
        for (int i = 0; i < 2000; ++i) {
            if ((*dev->read32(kBar, kCsts) & 1) == rdy) return true;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return false;
    }

    void bring_up() {
        auto d = Device::open(device_address());
        ASSERT_TRUE(d) << d.error().message;
        dev = std::move(*d);
        // Bus mastering: vfio-pci leaves it off, and without it the controller can neither DMA nor signal MSI-X.
        const uint64_t cmd = *dev->config_read(0x04, 16);
        ASSERT_TRUE(dev->config_write(0x04, 16, cmd | 0x4));
        const uint64_t cap = *dev->read64(kBar, kCap);
        dstrd = static_cast<uint32_t>(cap >> 32) & 0xF;
        ASSERT_TRUE(dev->write32(kBar, kCc, 0));
        ASSERT_TRUE(wait_csts(0));
        auto sq = dev->dma().allocate(4096), cq = dev->dma().allocate(4096), buf = dev->dma().allocate(4096);
        ASSERT_TRUE(sq && cq && buf);
        asq = std::move(*sq);
        acq = std::move(*cq);
        data = std::move(*buf);
        std::memset(acq.data(), 0, 4096);
        // MSI-X before CC.EN, or QEMU's controller never raises the admin vector.
        irq.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
        const int fd = irq.get();
        ASSERT_TRUE(dev->transport().set_irq_eventfds(kMsix, 0, {&fd, 1}));
        ASSERT_TRUE(dev->write32(kBar, kAqa, (63u << 16) | 63u));
        ASSERT_TRUE(dev->write64(kBar, kAsq, address(asq)));
        ASSERT_TRUE(dev->write64(kBar, kAcq, address(acq)));
        ASSERT_TRUE(dev->write32(kBar, kCc, 1u | 6u << 16 | 4u << 20));  // EN, 64-byte SQEs, 16-byte CQEs
        ASSERT_TRUE(wait_csts(1));
    }

    // Identify controller into `prp`; returns the completion's status field, or -1 on no interrupt.
    int identify(uint64_t prp) {
        uint32_t cmd[16] = {};
        cmd[0] = 0x06 | (uint32_t{sq_tail} + 1) << 16;  // opcode, CID
        std::memcpy(&cmd[6], &prp, 8);                   // PRP1
        cmd[10] = 1;                                     // CNS: controller
        std::memcpy(asq.data() + sq_tail * 64, cmd, 64);
        sq_tail = static_cast<uint16_t>((sq_tail + 1) % 64);
        std::atomic_thread_fence(std::memory_order_release);
        if (!dev->write32(kBar, 0x1000, sq_tail)) return -2;
        pollfd p{irq.get(), POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1) return -1;
        uint64_t n;
        (void)!::read(irq.get(), &n, sizeof(n));
        const auto* cqe = reinterpret_cast<const uint32_t*>(acq.data() + (sq_tail - 1) * 16);
        (void)!dev->write32(kBar, 0x1000 + (4u << dstrd), sq_tail);  // CQ head
        return static_cast<int>(cqe[3] >> 17);
    }
};

TEST(KernelVfio, ConfigSpaceRegionsAndIommuInfo) {
    ASSERT_FALSE(device_address().empty()) << "set VFIOQ_TEST_DEVICE";
    auto d = Device::open(device_address());
    ASSERT_TRUE(d) << d.error().message;
    EXPECT_EQ(*(*d)->config_read(0, 16), 0x1b36u) << "QEMU's vendor id";
    EXPECT_EQ(*(*d)->config_read(0x0A, 16), 0x0108u) << "NVM Express class";
    auto bar0 = (*d)->transport().region_info(0);
    ASSERT_TRUE(bar0);
    EXPECT_GE(bar0->size, 0x2000u);
    EXPECT_NE((*d)->mapped(0, 0, 4), nullptr) << "BAR0 registers are mapped";
    auto irq = (*d)->transport().irq_info(kMsix);
    ASSERT_TRUE(irq);
    EXPECT_GE(irq->count, 1u);
    EXPECT_TRUE(irq->eventfd);
    const auto& limits = (*d)->transport().dma_limits();
    EXPECT_TRUE(limits.pins_memory);
    if (std::getenv("VFIOQ_UNSAFE_NOIOMMU")) {
        EXPECT_TRUE(limits.physical_addresses) << "no IOMMU: the device is given physical addresses";
        EXPECT_TRUE((*d)->dma().physical_addresses());
    } else {
        EXPECT_FALSE(limits.physical_addresses);
        EXPECT_FALSE(limits.iova_ranges.empty()) << "the IOMMU reports its usable IOVA ranges";
    }
}

TEST(KernelVfio, AdminCommandMovesDataThroughTheIommuAndRaisesMsix) {
    Nvme n;
    n.bring_up();
    if (HasFatalFailure()) return;
    std::memset(n.data.data(), 0xEE, 4096);
    ASSERT_EQ(n.identify(n.address(n.data)), 0);
    uint16_t vid;
    std::memcpy(&vid, n.data.data(), 2);
    EXPECT_EQ(vid, 0x1b36u) << "Identify data came back by DMA";
    EXPECT_EQ(std::string(reinterpret_cast<const char*>(n.data.data()) + 4, 8), "vfioq-ci");
    // Registered plain memory works the same.
    std::vector<std::byte> plain(3 * 4096);
    auto* page = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(plain.data()) + 4095) & ~uintptr_t{4095});
    auto reg = n.dev->dma().register_memory(page, 4096);
    ASSERT_TRUE(reg) << reg.error().message;
    auto reg_address = n.dev->dma().device_address(reg->iova_of(page), 4096);
    ASSERT_TRUE(reg_address) << reg_address.error().message;
    ASSERT_EQ(n.identify(*reg_address), 0);
    std::memcpy(&vid, page, 2);
    EXPECT_EQ(vid, 0x1b36u);
}

// A one-byte SGL data block at the last byte of each page of a buffer, and as a control
// one byte before it: the controller must write each where the descriptor says. Prints
// how many went astray, so that the guest script can say so beside the self-test.
TEST(KernelVfio, OneByteSegmentsAtTheLastByteOfAPageArrive) {
    auto d = Device::open(device_address());
    ASSERT_TRUE(d) << d.error().message;
    auto ctrl = Controller::open(**d);
    ASSERT_TRUE(ctrl) << ctrl.error().message;
    auto qp = (*ctrl)->create_queue_pair({.depth = 4});
    ASSERT_TRUE(qp) << qp.error().message;
    constexpr size_t kPages = 64, kBlock = 512;
    auto pattern = (*d)->dma().allocate(kBlock);
    auto buf = (*d)->dma().allocate((kPages + 1) * 4096);
    ASSERT_TRUE(pattern && buf);
    for (size_t i = 0; i < kBlock; ++i) pattern->data()[i] = std::byte(0x40 + i % 64);
    static IoStatus status;
    auto done = [](const Completion& c) { status = c.status; };
    auto run = [&](Opcode op, std::span<const DmaSegment> sgl) {
        status = IoStatus::kCancelled;
        EXPECT_TRUE((*qp)->submit({op, 0, sgl, done, nullptr}));
        for (int i = 0; i < 10'000'000 && (*qp)->outstanding() > 0; ++i) (*qp)->poll();
        return status;
    };
    const DmaSegment whole = pattern->segment(0, kBlock);
    ASSERT_EQ(run(Opcode::kWrite, {&whole, 1}), IoStatus::kSuccess);
    unsigned lost[2] = {0, 0};  // at offset 0xfff, at 0xffe
    for (size_t page = 0; page < kPages; ++page) {
        for (int control = 0; control < 2; ++control) {
            const size_t at = page * 4096 + (control ? 0xffe : 0xfff);
            std::memset(buf->data(), 0xA5, buf->size());
            // The first byte of the block goes alone to `at`; the rest to the last page.
            const DmaSegment sgl[] = {buf->segment(at, 1), buf->segment(kPages * 4096, kBlock - 1)};
            ASSERT_EQ(run(Opcode::kRead, sgl), IoStatus::kSuccess);
            if (buf->data()[at] != pattern->data()[0]) ++lost[control];
            ASSERT_EQ(std::memcmp(buf->data() + kPages * 4096, pattern->data() + 1, kBlock - 1), 0);
        }
    }
    std::printf("one-byte segments lost: %u of %zu at a page's last byte, %u of %zu one byte before it\n", lost[0],
                kPages, lost[1], kPages);
    EXPECT_EQ(lost[0], 0u) << "at a page's last byte";
    EXPECT_EQ(lost[1], 0u) << "one byte before a page's last";
}

TEST(KernelVfio, PinningBeyondTheMemlockLimitIsRefusedWithTheRemedy) {
    if (!std::getenv("VFIOQ_TEST_MEMLOCK")) GTEST_SKIP() << "run by the guest script as a user with a small limit";
    auto d = Device::open(device_address());
    ASSERT_TRUE(d) << d.error().message;
    auto big = (*d)->dma().allocate(8u << 20);
    ASSERT_FALSE(big);
    EXPECT_EQ(big.error().code, ENOMEM);
    EXPECT_NE(big.error().message.find("RLIMIT_MEMLOCK"), std::string::npos) << big.error().message;
    EXPECT_NE(big.error().message.find("ulimit -l"), std::string::npos) << big.error().message;
}

TEST(KernelVfio, DmaToAnUnmappedIovaIsBlocked) {
    Nvme n;
    n.bring_up();
    if (HasFatalFailure()) return;
    // QEMU's controller completes the command; the IOMMU refuses the write and logs a fault.
    const int status = n.identify(0x7F000000);
    std::printf("identify into an unmapped IOVA completed with status %#x\n", status);
    EXPECT_NE(status, -1) << "the controller still answers";
}

TEST(KernelVfio, ResetReturnsTheControllerToIdle) {
    {
        Nvme n;
        n.bring_up();
        if (HasFatalFailure()) return;
        ASSERT_TRUE(n.dev->transport().device_info().can_reset);
        ASSERT_TRUE(n.dev->transport().reset());
        EXPECT_EQ(*n.dev->read32(kBar, kCc), 0u);
        EXPECT_EQ(*n.dev->read32(kBar, kCsts) & 1, 0u);
        EXPECT_EQ(*n.dev->read32(kBar, kVs), 0x00010400u);
    }
    // And it comes back for the next user.
    Nvme again;
    again.bring_up();
    if (HasFatalFailure()) return;
    EXPECT_EQ(again.identify(again.address(again.data)), 0);
}

// Run on its own (guest-tests.sh rebinds the function afterwards): it unbinds the device from vfio-pci.
TEST(KernelVfio, AnUnbindIsSeenAsTheDeviceGoingAndFinishesWhenItIsClosed) {
    const std::string unbind_path = "/sys/bus/pci/drivers/vfio-pci/unbind";
    auto dev = Device::open(device_address());
    ASSERT_TRUE(dev) << dev.error().message;
    auto ctrl = Controller::open(**dev);
    ASSERT_TRUE(ctrl) << ctrl.error().message;
    auto qp = (*ctrl)->create_queue_pair({.depth = 16});
    ASSERT_TRUE(qp) << qp.error().message;
    auto buf = (*dev)->dma().allocate(4096);
    ASSERT_TRUE(buf) << buf.error().message;
    const DmaSegment seg = buf->segment(0, 4096);
    // The kernel holds the unbind until the device is closed, so it is written from a thread of its own.
    std::atomic<bool> unbound{false};
    std::thread unbind([&] {
        const UniqueFd f(::open(unbind_path.c_str(), O_WRONLY | O_CLOEXEC));
        const std::string bdf = device_address();
        unbound = f && ::write(f.get(), bdf.data(), bdf.size()) == static_cast<ssize_t>(bdf.size());
    });
    bool gone = false;
    for (int i = 0; i < 2000 && !gone; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        gone = (*dev)->gone();
    }
    EXPECT_TRUE(gone) << "the device request was not seen";
    EXPECT_NE((*dev)->gone_reason().find("asks for the device back"), std::string::npos) << (*dev)->gone_reason();
    (void)(*qp)->poll();
    auto submitted = (*qp)->submit({Opcode::kRead, 0, {&seg, 1}, nullptr, nullptr});
    ASSERT_FALSE(submitted);
    EXPECT_EQ(submitted.error().code, ENODEV) << submitted.error().message;
    auto r = (*dev)->read32(kBar, kVs);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, ENODEV);
    EXPECT_FALSE(unbound) << "the unbind finished while the device was still open";
    // Closing it lets the unbind finish.
    EXPECT_TRUE((*qp)->close());
    qp->reset();
    *buf = DmaBuffer{};
    ctrl->reset();
    dev->reset();
    unbind.join();
    EXPECT_TRUE(unbound) << "writing " << unbind_path << " failed";
}

}  // namespace
}  // namespace vfioq
