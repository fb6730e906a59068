// SPDX-License-Identifier: MIT
// A hostile or broken client, spoken as raw bytes to the model's server: every
// bad message gets an error reply or the client is dropped; the server never
// crashes or hangs, and serves the next client.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <cstring>

#include "../support/model_fixture.hpp"
#include "vfio_user/protocol.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

using namespace vfio_user;
using std::chrono::milliseconds;

using test::bytes;

class RawClient : public ::testing::Test {
protected:
    void SetUp() override { sock = MessageSocket(model.connect()); }

    Message call(Command c, std::span<const std::byte> payload, std::span<const int> fds = {}) {
        EXPECT_TRUE(sock.send(Header{++id, static_cast<uint16_t>(c), 0, kFlagTypeCommand, 0}, payload, fds).has_value());
        auto m = sock.receive(milliseconds(2000));
        EXPECT_TRUE(m.has_value()) << (m ? "" : m.error().message);
        if (!m) return {};
        EXPECT_TRUE(m->is_reply());
        EXPECT_EQ(m->header.msg_id, id);
        return std::move(*m);
    }
    void negotiate() {
        std::vector<std::byte> p = bytes(VersionPayload{0, 1});
        auto m = call(Command::kVersion, p);
        ASSERT_FALSE(m.is_error());
    }
    // Expects an error reply with `code`, then checks the connection still works.
    void expect_error(Command c, std::span<const std::byte> payload, int code, std::span<const int> fds = {}) {
        auto m = call(c, payload, fds);
        EXPECT_TRUE(m.is_error()) << command_name(static_cast<uint16_t>(c));
        EXPECT_EQ(m.header.error_reply, static_cast<uint32_t>(code)) << command_name(static_cast<uint16_t>(c));
        EXPECT_TRUE(m.payload.empty());
        alive();
    }
    void alive() {
        RegionAccessPayload req{sgq::kRegId, 0, 4};
        auto m = call(Command::kRegionRead, bytes(req));
        ASSERT_FALSE(m.is_error());
        uint32_t v;
        std::memcpy(&v, m.payload.data() + sizeof(req), 4);
        EXPECT_EQ(v, sgq::kIdValue);
    }
    void expect_dropped() {
        model.join();
        auto m = sock.receive(milliseconds(2000));
        EXPECT_FALSE(m.has_value());
    }

    test::ServedModel model;
    MessageSocket sock;
    uint16_t id = 0;
};

TEST_F(RawClient, CommandBeforeVersionIsRefusedAndDropped) {
    auto m = call(Command::kDeviceGetInfo, bytes(DeviceInfoPayload{16, 0, 0, 0}));
    EXPECT_TRUE(m.is_error());
    EXPECT_EQ(m.header.error_reply, static_cast<uint32_t>(EINVAL));
    expect_dropped();
}

TEST_F(RawClient, WrongMajorVersionIsRefused) {
    auto m = call(Command::kVersion, bytes(VersionPayload{1, 0}));
    EXPECT_TRUE(m.is_error());
    EXPECT_EQ(m.header.error_reply, static_cast<uint32_t>(ENOTSUP));
    expect_dropped();
}

TEST_F(RawClient, MalformedVersionJsonIsRefused) {
    auto p = bytes(VersionPayload{0, 1});
    const char json[] = "{\"capabilities\": {\"max_msg_fds\": \"many\"}}";
    p.insert(p.end(), reinterpret_cast<const std::byte*>(json), reinterpret_cast<const std::byte*>(json) + sizeof(json));
    auto m = call(Command::kVersion, p);
    EXPECT_TRUE(m.is_error());
    expect_dropped();
}

TEST_F(RawClient, TruncatedVersionIsRefused) {
    std::array<std::byte, 2> p{};
    auto m = call(Command::kVersion, p);
    EXPECT_TRUE(m.is_error());
    expect_dropped();
}

TEST_F(RawClient, VersionReplyOffersNoMoreThanAsked) {
    auto m = call(Command::kVersion, bytes(VersionPayload{0, 0}));
    ASSERT_FALSE(m.is_error());
    auto v = read_struct<VersionPayload>(m.payload);
    ASSERT_TRUE(v.has_value());
    EXPECT_EQ(v->major, 0);
    EXPECT_EQ(v->minor, 0);
    Capabilities caps;
    EXPECT_FALSE(parse_capabilities(std::span(m.payload).subspan(4), caps).has_value());
    EXPECT_GE(caps.max_data_xfer_size, 4096u);
}

TEST_F(RawClient, SecondVersionIsRefused) {
    negotiate();
    expect_error(Command::kVersion, bytes(VersionPayload{0, 1}), EINVAL);
}

TEST_F(RawClient, TruncatedPayloadsOfEveryCommand) {
    negotiate();
    std::array<std::byte, 3> tiny{};
    for (Command c : {Command::kDeviceGetInfo, Command::kDeviceGetRegionInfo, Command::kDeviceGetIrqInfo,
                      Command::kDeviceSetIrqs, Command::kRegionRead, Command::kRegionWrite, Command::kDmaMap,
                      Command::kDmaUnmap}) {
        SCOPED_TRACE(command_name(static_cast<uint16_t>(c)));
        expect_error(c, tiny, EINVAL);
        expect_error(c, {}, EINVAL);
    }
}

TEST_F(RawClient, ArgszTooSmall) {
    negotiate();
    expect_error(Command::kDeviceGetInfo, bytes(DeviceInfoPayload{8, 0, 0, 0}), EINVAL);
    expect_error(Command::kDeviceGetRegionInfo, bytes(RegionInfoPayload{16, 0, 0, 0, 0, 0}), EINVAL);
    expect_error(Command::kDeviceGetIrqInfo, bytes(IrqInfoPayload{4, 0, 2, 0}), EINVAL);
    expect_error(Command::kDeviceSetIrqs, bytes(IrqSetPayload{100, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 1}), EINVAL);
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{16, 3, 0, 0x1000, 0x1000}), EINVAL);
}

TEST_F(RawClient, RegionInfoTooSmallArgszReportsTheSizeNeeded) {
    negotiate();
    auto m = call(Command::kDeviceGetRegionInfo, bytes(RegionInfoPayload{32, 0, 0, 0, 0, 0}));
    ASSERT_FALSE(m.is_error());
    auto info = read_struct<RegionInfoPayload>(m.payload);
    ASSERT_TRUE(info.has_value());
    EXPECT_GT(info->argsz, 32u);
    EXPECT_EQ(m.payload.size(), 32u);
    EXPECT_EQ(info->cap_offset, 0u);
    // QEMU's client refuses a CAPS flag whose cap_offset is not inside the reply.
    EXPECT_EQ(info->flags & VFIO_REGION_INFO_FLAG_CAPS, 0u);
    auto full = call(Command::kDeviceGetRegionInfo, bytes(RegionInfoPayload{info->argsz, 0, 0, 0, 0, 0}));
    auto with_caps = read_struct<RegionInfoPayload>(full.payload);
    ASSERT_TRUE(with_caps.has_value());
    EXPECT_NE(with_caps->flags & VFIO_REGION_INFO_FLAG_CAPS, 0u);
    EXPECT_GE(with_caps->cap_offset, sizeof(RegionInfoPayload));
    EXPECT_LT(with_caps->cap_offset, with_caps->argsz);
}

TEST_F(RawClient, UnknownAndUnsupportedCommands) {
    negotiate();
    Header h{77, 200, 0, kFlagTypeCommand, 0};
    ASSERT_TRUE(sock.send(h, {}).has_value());
    auto m = sock.receive(milliseconds(2000));
    ASSERT_TRUE(m.has_value());
    EXPECT_TRUE(m->is_error());
    EXPECT_EQ(m->header.error_reply, static_cast<uint32_t>(ENOSYS));
    expect_error(Command::kDeviceFeature, {}, ENOSYS);
    expect_error(Command::kRegionWriteMulti, {}, ENOSYS);
    expect_error(Command::kDeviceGetRegionIoFds, bytes(IrqInfoPayload{16, 0, 0, 0}), ENOSYS);
    // DMA_READ is the server's command to the client, not the other way round.
    expect_error(Command::kDmaRead, bytes(DmaAccessPayload{0, 4}), ENOSYS);
}

TEST_F(RawClient, OutOfRangeIndexesOffsetsAndSizes) {
    negotiate();
    expect_error(Command::kDeviceGetRegionInfo, bytes(RegionInfoPayload{32, 0, 9, 0, 0, 0}), EINVAL);
    expect_error(Command::kDeviceGetIrqInfo, bytes(IrqInfoPayload{16, 0, 5, 0}), EINVAL);
    expect_error(Command::kRegionRead, bytes(RegionAccessPayload{sgq::kBar0Size - 4, 0, 8}), EINVAL);
    expect_error(Command::kRegionRead, bytes(RegionAccessPayload{~0ull - 2, 0, 8}), EINVAL);
    expect_error(Command::kRegionRead, bytes(RegionAccessPayload{0, 1, 4}), EINVAL);   // BAR1 has no size
    expect_error(Command::kRegionRead, bytes(RegionAccessPayload{0, 99, 4}), EINVAL);  // no such region
    expect_error(Command::kRegionRead, bytes(RegionAccessPayload{0, 0, 0}), EINVAL);
    expect_error(Command::kRegionRead, bytes(RegionAccessPayload{0, 0, 0xFFFFFFFF}), E2BIG);
    // A write whose count disagrees with the data it carries.
    auto w = bytes(RegionAccessPayload{sgq::kRegScratch, 0, 8});
    w.resize(w.size() + 4);
    expect_error(Command::kRegionWrite, w, EINVAL);
    // A trailing byte after a read request.
    auto r = bytes(RegionAccessPayload{0, 0, 4});
    r.push_back(std::byte{0});
    expect_error(Command::kRegionRead, r, EINVAL);
}

TEST_F(RawClient, SetIrqsValidation) {
    negotiate();
    const uint32_t msix = VFIO_PCI_MSIX_IRQ_INDEX;
    const uint32_t efd_trigger = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
    auto efd = test::make_eventfd();
    const int two[] = {efd.get(), efd.get()};
    // Too many and too few fds for the count.
    expect_error(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, efd_trigger, msix, 0, 1}), EINVAL, two);
    expect_error(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, efd_trigger, msix, 0, 3}), EINVAL, two);
    // Vectors beyond the device's.
    expect_error(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, efd_trigger, msix, 15, 2}), EINVAL, two);
    expect_error(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, efd_trigger, msix, 0xFFFFFFFF, 2}), EINVAL, two);
    // Two data types, no action, unknown bits.
    expect_error(Command::kDeviceSetIrqs,
                 bytes(IrqSetPayload{20, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_MASK, msix, 0, 1}),
                 EINVAL);
    expect_error(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, VFIO_IRQ_SET_DATA_NONE, msix, 0, 1}), EINVAL);
    expect_error(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, 1u << 20 | efd_trigger, msix, 0, 1}), EINVAL);
    // Bool data of the wrong length; fds without DATA_EVENTFD.
    auto b = bytes(IrqSetPayload{22, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 0, 3});
    b.resize(b.size() + 2);
    expect_error(Command::kDeviceSetIrqs, b, EINVAL);
    expect_error(Command::kDeviceSetIrqs,
                 bytes(IrqSetPayload{20, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 0, 1}), EINVAL,
                 std::span(two).first(1));
    // A valid mask, trigger with bools and unmask sequence works.
    ASSERT_FALSE(call(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, efd_trigger, msix, 4, 1}), std::span(two).first(1)).is_error());
    ASSERT_FALSE(call(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, msix, 4, 1})).is_error());
    auto trig = bytes(IrqSetPayload{21, VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_ACTION_TRIGGER, msix, 4, 1});
    trig.push_back(std::byte{1});
    ASSERT_FALSE(call(Command::kDeviceSetIrqs, trig).is_error());
    EXPECT_EQ(test::wait_eventfd(efd.get(), 50), 0u);
    EXPECT_TRUE(model.device->msix().pending(4));
    ASSERT_FALSE(call(Command::kDeviceSetIrqs, bytes(IrqSetPayload{20, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, msix, 4, 1})).is_error());
    EXPECT_EQ(test::wait_eventfd(efd.get()), 1u);
}

TEST_F(RawClient, DmaMapValidation) {
    negotiate();
    test::MemfdBuffer buf(8192);
    const int fd = buf.fd.get();
    const int fds2[] = {fd, fd};
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x10000, 0}), EINVAL, {&fd, 1});         // size 0
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x10001, 4096}), EINVAL, {&fd, 1});      // misaligned
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{32, 0x10, 0, 0x10000, 4096}), EINVAL, {&fd, 1});   // flags
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x10000, 4096}), EINVAL, fds2);          // two fds
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, ~0ull - 4095, 8192}), EINVAL, {&fd, 1}); // wraps
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 123, 0x10000, 4096}), EINVAL, {&fd, 1});    // fd offset
    // An fd that cannot be mapped at all.
    auto efd = test::make_eventfd();
    const int bad_fd = efd.get();
    auto m = call(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x10000, 4096}), {&bad_fd, 1});
    EXPECT_TRUE(m.is_error());
    alive();
    ASSERT_FALSE(call(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x10000, 8192}), {&fd, 1}).is_error());
    expect_error(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x11000, 4096}), EEXIST, {&fd, 1});
    expect_error(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, 0, 0x10000, 4096}), EINVAL);  // would split it
    expect_error(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, 0, 0x10000, 100}), EINVAL);   // not 4 KiB
    expect_error(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, 1, 0x10000, 8192}), ENOTSUP); // dirty bitmap
    expect_error(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, kDmaUnmapFlagAll, 0x10000, 8192}), EINVAL);
    auto un = call(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, 0, 0x10000, 8192}));
    EXPECT_FALSE(un.is_error());
    EXPECT_EQ(un.payload.size(), sizeof(DmaUnmapPayload));
}

// What QEMU's client sends for a guest behind an IOMMU: pages mapped one by one, a
// range unmapped at once, and at the end every window at once.
TEST_F(RawClient, DmaUnmapOfARangeAndOfEverything) {
    negotiate();
    test::MemfdBuffer ram(64 * 4096);
    const int fd = ram.fd.get();
    for (uint64_t page = 0; page < 64; ++page)
        ASSERT_FALSE(call(Command::kDmaMap, bytes(DmaMapPayload{32, 3, (63 - page) * 4096, 0x100000 + page * 4096, 4096}),
                          {&fd, 1})
                         .is_error());
    EXPECT_EQ(model.device->dma().window_count(), 64u);
    ASSERT_FALSE(call(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, 0, 0x100000, 16 * 4096})).is_error());
    EXPECT_EQ(model.device->dma().window_count(), 48u);
    // The freed IOVAs map again (before, a refused unmap left them taken: EEXIST).
    ASSERT_FALSE(call(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x100000, 4096}), {&fd, 1}).is_error());
    // A range with nothing in it is no error.
    ASSERT_FALSE(call(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, 0, 0x80000000, 1ull << 30})).is_error());
    ASSERT_FALSE(call(Command::kDmaUnmap, bytes(DmaUnmapPayload{24, kDmaUnmapFlagAll, 0, 0})).is_error());
    EXPECT_EQ(model.device->dma().window_count(), 0u);
    alive();
}

TEST_F(RawClient, WindowLimitIsEnforced) {
    model::ModelConfig c;
    c.max_dma_maps = 2;
    test::ServedModel small(c);
    sock = MessageSocket(small.connect());
    negotiate();
    std::vector<std::byte> mem(3 * 4096);
    ASSERT_FALSE(call(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x1000, 4096})).is_error());
    ASSERT_FALSE(call(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x2000, 4096})).is_error());
    auto m = call(Command::kDmaMap, bytes(DmaMapPayload{32, 3, 0, 0x3000, 4096}));
    EXPECT_TRUE(m.is_error());
    EXPECT_EQ(m.header.error_reply, static_cast<uint32_t>(ENOSPC));
}

TEST_F(RawClient, FdsOnCommandsThatTakeNoneAreRefusedAndClosed) {
    negotiate();
    auto efd = test::make_eventfd();
    const int fd = efd.get();
    expect_error(Command::kRegionRead, bytes(RegionAccessPayload{0, 0, 4}), EINVAL, {&fd, 1});
    expect_error(Command::kDeviceReset, {}, EINVAL, {&fd, 1});
}

TEST_F(RawClient, TooManyFdsInOneMessage) {
    negotiate();
    auto efd = test::make_eventfd();
    std::vector<int> fds(kMaxMsgFds + 4, efd.get());
    expect_error(Command::kDeviceSetIrqs,
                 bytes(IrqSetPayload{20, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 2, 0, 16}), E2BIG,
                 fds);
}

TEST_F(RawClient, NoReplyFlagSuppressesTheReply) {
    negotiate();
    RegionAccessPayload req{sgq::kRegScratch, 0, 4};
    auto p = bytes(req);
    uint32_t v = 0x42;
    p.insert(p.end(), reinterpret_cast<std::byte*>(&v), reinterpret_cast<std::byte*>(&v) + 4);
    ASSERT_TRUE(sock.send(Header{50, static_cast<uint16_t>(Command::kRegionWrite), 0, kFlagNoReply, 0}, p).has_value());
    alive();  // the next reply is for this request, not the write
    EXPECT_EQ(model.device->read32(sgq::kRegScratch), 0x42u);
}

TEST_F(RawClient, OversizedMessageDropsTheClient) {
    negotiate();
    Header h{1, static_cast<uint16_t>(Command::kRegionWrite), kMaxMessageSize + 100, 0, 0};
    ASSERT_EQ(::send(sock.fd(), &h, sizeof(h), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(h)));
    expect_dropped();
}

TEST_F(RawClient, HeaderClaimingLessThanItselfDropsTheClient) {
    negotiate();
    Header h{1, static_cast<uint16_t>(Command::kRegionRead), 4, 0, 0};
    ASSERT_EQ(::send(sock.fd(), &h, sizeof(h), MSG_NOSIGNAL), static_cast<ssize_t>(sizeof(h)));
    expect_dropped();
}

TEST_F(RawClient, ServerServesANewClientAfterOneIsDropped) {
    negotiate();
    ASSERT_EQ(::send(sock.fd(), "garbage", 7, MSG_NOSIGNAL), 7);
    sock.close();
    model.join();
    sock = MessageSocket(model.connect());
    id = 0;
    negotiate();
    alive();
}

TEST_F(RawClient, UnsolicitedReplyIsIgnored) {
    negotiate();
    ASSERT_TRUE(sock.send(Header{999, static_cast<uint16_t>(Command::kDmaRead), 0, kFlagTypeReply, 0}, {}).has_value());
    alive();
}

}  // namespace
}  // namespace vfioq
