// SPDX-License-Identifier: MIT
// Runs inside a QEMU guest against the SGQ card (the reference model attached
// through vfio-user-pci), at the PCI address in VFIOQ_TEST_DEVICE: what only a
// real kernel and IOMMU can show. A command that names an IOVA the guest never
// mapped makes the card DMA there; the guest's IOMMU must stop it (and log it,
// which card-guest-tests.sh checks in the kernel log), the command must end with
// DMA_FAULT, and the memory around it must be untouched.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>

#include "vfioq/vfioq.hpp"

namespace vfioq {
namespace {

constexpr uint64_t kUnmappedIova = 0x7F000000;  // the guest's vfioq maps nothing there
constexpr size_t kBlock = 4096;

std::string device_address() {
    const char* d = std::getenv("VFIOQ_TEST_DEVICE");
    return d ? d : "";
}

void record(const Completion& c) { *static_cast<Completion*>(c.context) = c; }

struct Card {
    std::unique_ptr<Device> dev;
    std::unique_ptr<Controller> ctrl;
    std::unique_ptr<QueuePair> qp;

    void open() {
        ASSERT_FALSE(device_address().empty()) << "VFIOQ_TEST_DEVICE names the card";
        auto d = Device::open(device_address());
        ASSERT_TRUE(d) << d.error().message;
        dev = std::move(*d);
        auto c = Controller::open(*dev);
        ASSERT_TRUE(c) << c.error().message;
        ctrl = std::move(*c);
        auto q = ctrl->create_queue_pair({.depth = 8});
        ASSERT_TRUE(q) << q.error().message;
        qp = std::move(*q);
    }
    Completion run(Opcode op, uint64_t card_address, std::span<const DmaSegment> sgl) {
        Completion done{};
        done.status = IoStatus::kCancelled;
        auto r = qp->submit({op, card_address, sgl, record, &done});
        EXPECT_TRUE(r) << r.error().message;
        for (int i = 0; i < 10'000'000 && qp->outstanding() > 0; ++i) qp->poll();
        EXPECT_EQ(qp->outstanding(), 0u) << "the command never came back";
        return done;
    }
};

TEST(CardInGuest, DmaOutsideWhatTheGuestMappedIsStoppedByItsIommu) {
    Card card;
    card.open();
    if (HasFatalFailure()) return;
    // Two mapped blocks with a known pattern on either side of the stray segment in the SGL.
    auto buf = card.dev->dma().allocate(2 * kBlock);
    ASSERT_TRUE(buf) << buf.error().message;
    std::memset(buf->data(), 0xA5, 2 * kBlock);

    // The card reads its memory into host memory: a READ whose second segment is unmapped.
    const DmaSegment read_sgl[] = {buf->segment(0, kBlock), {kUnmappedIova, kBlock}, buf->segment(kBlock, kBlock)};
    const Completion read = card.run(Opcode::kRead, 0, read_sgl);
    EXPECT_EQ(read.status, IoStatus::kDmaFault) << io_status_name(read.status);
    auto err_addr = card.dev->read64(sgq::kRegisterBar, sgq::kRegErrAddr);
    ASSERT_TRUE(err_addr) << err_addr.error().message;
    EXPECT_EQ(*err_addr, kUnmappedIova) << "ERR_ADDR names the IOVA the IOMMU refused";
    // Nothing beyond the fault was written: the third segment keeps its pattern.
    for (size_t i = kBlock; i < 2 * kBlock; ++i) ASSERT_EQ(buf->data()[i], std::byte{0xA5}) << "byte " << i;

    // The card fetches host memory: a WRITE from the unmapped IOVA.
    const DmaSegment write_sgl[] = {{kUnmappedIova, kBlock}};
    const Completion write = card.run(Opcode::kWrite, 0x10000, write_sgl);
    EXPECT_EQ(write.status, IoStatus::kDmaFault) << io_status_name(write.status);

    // And the card still moves data where the guest did map it.
    std::memset(buf->data(), 0x3C, kBlock);
    const DmaSegment good = buf->segment(0, kBlock);
    EXPECT_EQ(card.run(Opcode::kWrite, 0x20000, {&good, 1}).status, IoStatus::kSuccess);
    std::memset(buf->data(), 0, kBlock);
    EXPECT_EQ(card.run(Opcode::kRead, 0x20000, {&good, 1}).status, IoStatus::kSuccess);
    for (size_t i = 0; i < kBlock; ++i) ASSERT_EQ(buf->data()[i], std::byte{0x3C}) << "byte " << i;
}

}  // namespace
}  // namespace vfioq
