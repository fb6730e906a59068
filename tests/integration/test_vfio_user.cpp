// SPDX-License-Identifier: MIT
// The real client transport against the model's vfio-user server: every
// message the client sends, and the server's DMA requests it serves.
#include <gtest/gtest.h>
#include <linux/pci_regs.h>

#include <cstring>
#include <future>
#include <thread>

#include "../support/model_fixture.hpp"
#include "vfioq/device.hpp"
#include "vfioq/model.hpp"
#include "vfioq/pci_info.hpp"
#include "vfioq/sgq_registers.hpp"

namespace vfioq {
namespace {

using namespace vfioq::sgq;
constexpr uint32_t kMsix = static_cast<uint32_t>(PciIrq::kMsix);

class VfioUserTest : public ::testing::Test {
protected:
    void SetUp() override {
        auto t = open_vfio_user(model.connect(), "test-model");
        ASSERT_TRUE(t.has_value()) << t.error().message;
        transport = std::move(*t);
    }
    uint32_t read32(uint64_t off) {
        uint32_t v = 0;
        auto r = transport->region_read(0, off, {reinterpret_cast<std::byte*>(&v), 4});
        EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
        return v;
    }
    void write32(uint64_t off, uint32_t v) {
        auto r = transport->region_write(0, off, {reinterpret_cast<const std::byte*>(&v), 4});
        EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
    }

    test::ServedModel model;
    std::unique_ptr<Transport> transport;
};

TEST_F(VfioUserTest, DeviceInfo) {
    const auto& info = transport->device_info();
    EXPECT_TRUE(info.is_pci);
    EXPECT_TRUE(info.can_reset);
    EXPECT_EQ(info.num_regions, 9u);
    EXPECT_EQ(info.num_irqs, 5u);
    EXPECT_EQ(transport->name(), "test-model");
}

TEST_F(VfioUserTest, RegionInfoWithSparseMmapAfterArgszRetry) {
    auto bar0 = transport->region_info(0);
    ASSERT_TRUE(bar0.has_value()) << bar0.error().message;
    EXPECT_EQ(bar0->size, kBar0Size);
    EXPECT_TRUE(bar0->readable && bar0->writable && bar0->mappable);
    ASSERT_EQ(bar0->mmap_areas.size(), 1u);
    EXPECT_EQ(bar0->mmap_areas[0].offset, kDoorbellBase);
    EXPECT_EQ(bar0->mmap_areas[0].size, kDoorbellPageSize);

    auto bar2 = transport->region_info(2);
    ASSERT_TRUE(bar2.has_value());
    EXPECT_EQ(bar2->size, kBar2Size);
    EXPECT_FALSE(bar2->mappable);
    auto bar1 = transport->region_info(1);
    ASSERT_TRUE(bar1.has_value());
    EXPECT_EQ(bar1->size, 0u);
    auto cfg = transport->region_info(static_cast<uint32_t>(PciRegion::kConfig));
    ASSERT_TRUE(cfg.has_value());
    EXPECT_EQ(cfg->size, 4096u);

    auto bad = transport->region_info(9);
    ASSERT_FALSE(bad.has_value());
    EXPECT_NE(bad.error().message.find("test-model"), std::string::npos);
}

// QEMU turns an endpoint on its root bus into a root complex integrated endpoint and
// clears its link registers: that is no link, not a link of width 0.
TEST_F(VfioUserTest, ARootComplexIntegratedEndpointHasNoLink) {
    auto& config = model.device->config_space();
    config.set16(model::kPcieCapOffset + PCI_EXP_FLAGS, 2 | PCI_EXP_TYPE_RC_END << 4);
    config.set16(model::kPcieCapOffset + PCI_EXP_LNKSTA, 0);
    auto caps = read_pci_capabilities(*transport);
    ASSERT_TRUE(caps.has_value()) << caps.error().message;
    auto pcie = std::find_if(caps->begin(), caps->end(), [](auto& c) { return c.id == PCI_CAP_ID_EXP; });
    ASSERT_NE(pcie, caps->end());
    EXPECT_EQ(pcie->summary.rfind("root complex integrated endpoint, version 2, no link, max payload", 0), 0u)
        << pcie->summary;
}

TEST_F(VfioUserTest, RegisterReadWriteThroughMessages) {
    EXPECT_EQ(read32(kRegId), kIdValue);
    write32(kRegScratch, 0x1234);
    EXPECT_EQ(read32(kRegScratch), 0x1234u);
    EXPECT_EQ(model.device->read32(kRegScratch), 0x1234u);
    uint64_t cap = 0;
    ASSERT_TRUE(transport->region_read(0, kRegCap, {reinterpret_cast<std::byte*>(&cap), 8}).has_value());
    EXPECT_EQ(cap, model.device->config().cap_register());
}

TEST_F(VfioUserTest, LargeReadsAreSplitAndWholeConfigSpaceReadable) {
    std::vector<std::byte> cfg(4096);
    ASSERT_TRUE(transport->config_read(0, cfg).has_value());
    uint16_t vendor;
    std::memcpy(&vendor, cfg.data(), 2);
    EXPECT_EQ(vendor, 0x1234);
    std::vector<std::byte> bar0(kBar0Size);
    ASSERT_TRUE(transport->region_read(0, 0, bar0).has_value());
    uint32_t id;
    std::memcpy(&id, bar0.data(), 4);
    EXPECT_EQ(id, kIdValue);
}

TEST_F(VfioUserTest, OutOfRangeAccessesAreRefusedBeforeSending) {
    std::array<std::byte, 8> buf{};
    auto r = transport->region_read(0, kBar0Size - 4, buf);
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_NE(r.error().message.find("outside BAR0"), std::string::npos) << r.error().message;
    EXPECT_FALSE(transport->region_write(1, 0, buf).has_value());  // BAR1 is size 0
    EXPECT_FALSE(transport->region_read(0, 0, {}).has_value());
}

TEST_F(VfioUserTest, ServerRefusalsSurfaceWithContext) {
    std::array<std::byte, 4> buf{};
    auto r = transport->region_read(0, 0x21, buf);  // misaligned: the model refuses
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, EINVAL);
    EXPECT_NE(r.error().message.find("REGION_READ"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find("0x21"), std::string::npos) << r.error().message;
    // The connection is still good.
    EXPECT_EQ(read32(kRegId), kIdValue);
}

TEST_F(VfioUserTest, DoorbellPageIsSharedThroughMmap) {
    auto dev = Device::from_transport(std::move(transport));
    ASSERT_TRUE(dev.has_value()) << dev.error().message;
    Device& d = **dev;
    ASSERT_NE(d.mapped(0, sq_tail_doorbell(3, 0), 4), nullptr);
    EXPECT_EQ(d.mapped(0, kRegScratch, 4), nullptr);  // registers stay trapped
    ASSERT_TRUE(d.write32(0, sq_tail_doorbell(3, 0), 42).has_value());
    EXPECT_EQ(model.device->read32(sq_tail_doorbell(3, 0)), 42u);  // no message was needed
    ASSERT_TRUE(d.write32(0, kRegScratch, 0x77).has_value());
    EXPECT_EQ(*d.read32(0, kRegScratch), 0x77u);
}

TEST_F(VfioUserTest, IrqInfo) {
    auto msix = transport->irq_info(kMsix);
    ASSERT_TRUE(msix.has_value()) << msix.error().message;
    EXPECT_EQ(msix->count, 16u);
    EXPECT_TRUE(msix->eventfd);
    auto intx = transport->irq_info(static_cast<uint32_t>(PciIrq::kIntx));
    ASSERT_TRUE(intx.has_value());
    EXPECT_EQ(intx->count, 0u);
    EXPECT_FALSE(transport->irq_info(5).has_value());
}

TEST_F(VfioUserTest, MsixDeliveryThroughEventfds) {
    auto vec0 = test::make_eventfd();
    auto vec3 = test::make_eventfd();
    const int fds[] = {vec0.get(), -1, -1, vec3.get()};
    ASSERT_TRUE(transport->set_irq_eventfds(kMsix, 0, fds).has_value());
    EXPECT_TRUE(model.device->msix().has_eventfd(0));
    EXPECT_FALSE(model.device->msix().has_eventfd(1));
    EXPECT_TRUE(model.device->msix().has_eventfd(3));

    // A bad queue enable is a controller event on vector 0, raised by the register write itself.
    write32(kRegCtrl, kCtrlEn);
    write32(queue_register(1, kQRegCtrl), kQCtrlEnable);  // sizes are 0
    EXPECT_EQ(read32(queue_register(1, kQRegStatus)), kQStatusError);
    EXPECT_EQ(test::wait_eventfd(vec0.get()), 1u);

    model.device->msix().raise(3);
    EXPECT_EQ(test::wait_eventfd(vec3.get()), 1u);

    ASSERT_TRUE(transport->disable_irqs(kMsix).has_value());
    EXPECT_FALSE(model.device->msix().has_eventfd(0));
    model.device->msix().raise(3);
    EXPECT_EQ(test::wait_eventfd(vec3.get(), 50), 0u);
}

TEST_F(VfioUserTest, ManyVectorsAreSentInChunksTheServerAccepts) {
    std::vector<UniqueFd> efds;
    std::vector<int> fds;
    for (int i = 0; i < 16; ++i) {
        efds.push_back(test::make_eventfd());
        fds.push_back(efds.back().get());
    }
    ASSERT_TRUE(transport->set_irq_eventfds(kMsix, 0, fds).has_value());
    for (uint32_t v = 0; v < 16; ++v) {
        model.device->msix().raise(v);
        EXPECT_EQ(test::wait_eventfd(efds[v].get()), 1u) << "vector " << v;
    }
    auto too_many = transport->set_irq_eventfds(kMsix, 15, std::span<const int>(fds).first(2));
    EXPECT_FALSE(too_many.has_value());
}

TEST_F(VfioUserTest, DmaThroughSharedFd) {
    test::MemfdBuffer buf(2 * 4096);
    ASSERT_TRUE(transport->dma_map({0x100000, buf.size, buf.data, buf.fd.get(), 0, true, true}).has_value());
    std::memcpy(buf.data + 100, "hello", 5);
    std::array<std::byte, 5> got{};
    ASSERT_TRUE(model.device->dma_read(0, 1, 0x100000 + 100, got).has_value());
    EXPECT_EQ(std::memcmp(got.data(), "hello", 5), 0);
    const char* w = "card!";
    ASSERT_TRUE(model.device->dma_write(0, 1, 0x101000, {reinterpret_cast<const std::byte*>(w), 5}).has_value());
    EXPECT_EQ(std::memcmp(buf.data + 4096, "card!", 5), 0);

    // Past the window's end is a fault, reported in ERR_*.
    std::array<std::byte, 16> tail{};
    auto fault = model.device->dma_read(2, 9, 0x100000 + 2 * 4096 - 8, tail);
    ASSERT_FALSE(fault.has_value());
    EXPECT_EQ(read32(kRegErrStatus) & kErrDmaFault, kErrDmaFault);
    EXPECT_EQ(model.device->read64(kRegErrAddr), 0x102000u);
    EXPECT_EQ(read32(kRegErrQid), 2u | 9u << 16);

    ASSERT_TRUE(transport->dma_unmap(0x100000, buf.size).has_value());
    EXPECT_FALSE(model.device->dma_read(0, 1, 0x100000, got).has_value());
    EXPECT_FALSE(transport->dma_unmap(0x100000, buf.size).has_value());
}

TEST_F(VfioUserTest, ReadOnlyWindowRefusesDeviceWrites) {
    test::MemfdBuffer buf(4096);
    ASSERT_TRUE(transport->dma_map({0x200000, 4096, buf.data, buf.fd.get(), 0, true, false}).has_value());
    std::array<std::byte, 4> data{};
    EXPECT_TRUE(model.device->dma_read(0, 0, 0x200000, data).has_value());
    EXPECT_FALSE(model.device->dma_write(0, 0, 0x200000, data).has_value());
}

TEST_F(VfioUserTest, OverlappingMapIsRefused) {
    test::MemfdBuffer buf(8192);
    ASSERT_TRUE(transport->dma_map({0x300000, 8192, buf.data, buf.fd.get(), 0, true, true}).has_value());
    auto r = transport->dma_map({0x301000, 8192, buf.data, buf.fd.get(), 0, true, true});
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().code, EEXIST);
}

TEST_F(VfioUserTest, DmaWithoutFdIsServedByTheClient) {
    std::vector<std::byte> memory(3 * 4096);
    std::memcpy(memory.data() + 5000, "over the socket", 15);
    ASSERT_TRUE(transport->dma_map({0x400000, memory.size(), memory.data(), -1, 0, true, true}).has_value());
    // The device side runs on its own thread, as a queue worker will.
    auto result = std::async(std::launch::async, [&] {
        std::array<std::byte, 15> got{};
        auto r = model.device->dma_read(0, 0, 0x400000 + 5000, got);
        EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
        const char* w = "written by DMA_WRITE";
        auto w_result = model.device->dma_write(0, 0, 0x400000 + 8000, {reinterpret_cast<const std::byte*>(w), 20});
        EXPECT_TRUE(w_result.has_value()) << (w_result ? "" : w_result.error().message);
        return std::memcmp(got.data(), "over the socket", 15) == 0;
    });
    // Meanwhile the client keeps sending its own requests: the server's
    // commands interleave with our replies on the one socket.
    for (int i = 0; i < 50; ++i) EXPECT_EQ(read32(kRegId), kIdValue);
    EXPECT_TRUE(result.get());
    EXPECT_EQ(std::memcmp(memory.data() + 8000, "written by DMA_WRITE", 20), 0);

    // A large transfer is split at the client's max_data_xfer_size.
    std::vector<std::byte> big(2 << 20);
    std::vector<std::byte> host(2 << 20);
    for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<std::byte>(i * 7);
    ASSERT_TRUE(transport->dma_map({0x1000000, host.size(), host.data(), -1, 0, true, true}).has_value());
    auto big_read = std::async(std::launch::async, [&] { return model.device->dma_read(0, 0, 0x1000000, big); });
    ASSERT_TRUE(big_read.get().has_value());
    EXPECT_EQ(big, host);

    // Outside the client's windows the client refuses, and the model records a fault.
    auto bad = std::async(std::launch::async, [&] {
        std::array<std::byte, 4> b{};
        return model.device->dma_read(0, 0, 0x400000 + 3 * 4096, b).has_value();
    });
    EXPECT_FALSE(bad.get());
}

TEST_F(VfioUserTest, ResetClearsTheController) {
    write32(kRegScratch, 99);
    write32(kRegCtrl, kCtrlEn);
    ASSERT_TRUE(transport->reset().has_value());
    EXPECT_EQ(read32(kRegScratch), 0u);
    EXPECT_EQ(read32(kRegCtrl), 0u);
}

TEST_F(VfioUserTest, DisconnectReleasesEverythingAndResetsTheCard) {
    test::MemfdBuffer buf(4096);
    ASSERT_TRUE(transport->dma_map({0x500000, 4096, buf.data, buf.fd.get(), 0, true, true}).has_value());
    auto efd = test::make_eventfd();
    const int fd = efd.get();
    ASSERT_TRUE(transport->set_irq_eventfds(kMsix, 0, {&fd, 1}).has_value());
    write32(kRegScratch, 5);
    write32(kRegCtrl, kCtrlEn);
    transport.reset();
    model.join();
    EXPECT_EQ(model.device->dma().window_count(), 0u);
    EXPECT_FALSE(model.device->msix().has_eventfd(0));
    EXPECT_EQ(model.device->read32(kRegScratch), 0u);
    EXPECT_EQ(model.device->read32(kRegCtrl), 0u);
}

TEST_F(VfioUserTest, DisconnectFromAnIdleCardResetsIt) {
    // As vfio-pci resets silicon when its last file descriptor closes (device interface, section 6).
    write32(kRegScratch, 0x1234);
    write32(kQueueRegsBase + 3 * kQueueRegsStride + kQRegSqSize, 31);
    transport.reset();
    model.join();
    EXPECT_EQ(model.device->read32(kRegScratch), 0u);
    EXPECT_EQ(model.device->read32(kQueueRegsBase + 3 * kQueueRegsStride + kQRegSqSize), 0u);
}

TEST(VfioUserModelAddress, WithoutTheModelLibraryTheModelAddressSaysWhatToLink) {
    set_model_opener(nullptr);  // as in a program that links the driver library alone
    auto dev = Device::open("model");
    ASSERT_FALSE(dev.has_value());
    EXPECT_EQ(dev.error().code, ENOTSUP);
    EXPECT_NE(dev.error().message.find("libvfioq-model"), std::string::npos) << dev.error().message;
    EXPECT_NE(dev.error().message.find("enable_model_address"), std::string::npos) << dev.error().message;
}

TEST(VfioUserModelAddress, ModelDeviceOpensInProcess) {
    model::enable_model_address();
    auto dev = Device::open("model");
    ASSERT_TRUE(dev.has_value()) << dev.error().message;
    EXPECT_EQ((*dev)->name(), "model");
    EXPECT_EQ(*(*dev)->read32(0, kRegId), kIdValue);
    EXPECT_EQ(*(*dev)->config_read(PCI_VENDOR_ID, 16), 0x1234u);
}

TEST(VfioUserModelAddress, AddressesParseOrExplain) {
    EXPECT_EQ(DeviceAddress::parse("model")->kind, DeviceAddress::Kind::kModel);
    auto vu = DeviceAddress::parse("vfio-user:/run/x.sock");
    ASSERT_TRUE(vu.has_value());
    EXPECT_EQ(vu->target, "/run/x.sock");
    auto pci = DeviceAddress::parse("3:0.1");
    ASSERT_TRUE(pci.has_value());
    EXPECT_EQ(pci->target, "0000:03:00.1");
    EXPECT_FALSE(DeviceAddress::parse("vfio-user:").has_value());
    EXPECT_FALSE(DeviceAddress::parse("0000:03:20.0").has_value());  // device > 0x1f
    auto bad = DeviceAddress::parse("card0");
    ASSERT_FALSE(bad.has_value());
    EXPECT_NE(bad.error().message.find("vfio-user:PATH"), std::string::npos);

    // A PCI address takes kernel VFIO; a function that does not exist says so.
    auto kernel = Device::open("00fe:1f:1f.7");
    ASSERT_FALSE(kernel.has_value());
    EXPECT_EQ(kernel.error().code, ENODEV);
    EXPECT_NE(kernel.error().message.find("00fe:1f:1f.7: no such PCI function"), std::string::npos)
        << kernel.error().message;

    auto missing = Device::open("vfio-user:/nonexistent/dir/sock");
    ASSERT_FALSE(missing.has_value());
    EXPECT_NE(missing.error().message.find("vfioq-devsim"), std::string::npos) << missing.error().message;
}

TEST(VfioUserModelAddress, DeviceAccessChecksWidthAlignmentAndRange) {
    model::enable_model_address();
    auto dev = Device::open("model");
    ASSERT_TRUE(dev.has_value());
    Device& d = **dev;
    EXPECT_FALSE(d.read(0, 0x20, 24).has_value());
    EXPECT_FALSE(d.read(0, 0x22, 32).has_value());
    EXPECT_FALSE(d.read(0, kBar0Size, 32).has_value());
    EXPECT_FALSE(d.read(1, 0, 32).has_value());
    EXPECT_FALSE(d.write(0, 0x20, 8, 0x100).has_value());
    auto r = d.read(3, 0, 32);
    ASSERT_FALSE(r.has_value());
    EXPECT_NE(r.error().message.find("BAR3"), std::string::npos);
}

}  // namespace
}  // namespace vfioq
