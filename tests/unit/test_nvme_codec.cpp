// SPDX-License-Identifier: MIT
// NVMe command encoding and status decoding, against the NVMe layout.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "nvme/nvme_codec.hpp"
#include "nvme/nvme_registers.hpp"

namespace vfioq::nvme {
namespace {

class NvmeCodecTest : public ::testing::Test {
protected:
    NvmeCodecTest() : memory_(8 * dma::kSglPageSize), pool_(memory_.data(), 0x5000000, 8) {}
    Command encode(NvmeCodec& codec, const IoRequest& r, Result<int32_t>* result = nullptr) {
        Command c{};
        auto page = codec.encode(r, reinterpret_cast<std::byte*>(&c), pool_);
        if (result) *result = page;
        return c;
    }
    static NamespaceGeometry geometry(bool sgl) {
        NamespaceGeometry g;
        g.block_size = 512;
        g.blocks = 1 << 20;
        g.max_transfer = 512 * 1024;
        g.sgl = sgl;
        g.max_segments = sgl ? 256 : 129;
        return g;
    }
    std::vector<std::byte> memory_;
    dma::SglPagePool pool_;
};

TEST_F(NvmeCodecTest, ReadBySglCarriesBlocksAndOneDescriptor) {
    NvmeCodec codec(geometry(true));
    const DmaSegment seg{0x100000, 4096};
    Result<int32_t> page = 0;
    const Command c = encode(codec, {Opcode::kRead, 8 * 512, {&seg, 1}}, &page);
    ASSERT_TRUE(page);
    EXPECT_EQ(c.dw[0] & 0xFF, kIoRead);
    EXPECT_EQ((c.dw[0] >> 8) & 0xC0, kPsdtSgl) << "PSDT says SGL";
    EXPECT_EQ(c.dw[1], 1u) << "namespace 1";
    EXPECT_EQ(c.dw[10], 8u) << "SLBA";
    EXPECT_EQ(c.dw[12], 7u) << "NLB, zero-based";
    uint64_t addr;
    std::memcpy(&addr, &c.dw[6], 8);
    EXPECT_EQ(addr, 0x100000u);
    EXPECT_EQ(c.dw[8], 4096u) << "SGL1 length";
    EXPECT_EQ(codec.length(reinterpret_cast<const std::byte*>(&c)), 4096u);
    EXPECT_EQ(codec.bytes(0, IoStatus::kSuccess, 4096), 4096u) << "NVMe DW0 says nothing of bytes";
}

TEST_F(NvmeCodecTest, ManySegmentsGoIntoOneArrayBehindSgl1) {
    NvmeCodec codec(geometry(true));
    std::vector<DmaSegment> segs;
    for (uint64_t i = 0; i < 8; ++i) segs.push_back({0x200000 + i * 0x1000, 512});
    Result<int32_t> page = 0;
    const Command c = encode(codec, {Opcode::kWrite, 0, segs}, &page);
    ASSERT_TRUE(page);
    ASSERT_GE(*page, 0);
    EXPECT_EQ(reinterpret_cast<const uint8_t*>(&c)[39] >> 4, sgq::kSglLastSegment);
    EXPECT_EQ(c.dw[8], 8u * 16) << "one array of eight descriptors";
    pool_.give_chain(*page);
    segs.resize(300, DmaSegment{0x900000, 512});
    for (size_t i = 0; i < segs.size(); ++i) segs[i] = {0x900000 + i * 0x1000, 512};
    encode(codec, {Opcode::kWrite, 0, segs}, &page);
    ASSERT_FALSE(page) << "more than one array's worth is refused";
    EXPECT_EQ(page.error().code, EINVAL);
}

TEST_F(NvmeCodecTest, WritesByPrpUseAListBeyondTwoPages) {
    NvmeCodec codec(geometry(false));
    const DmaSegment seg{0x300000, 16 * 4096};
    Result<int32_t> page = 0;
    const Command c = encode(codec, {Opcode::kWrite, 0, {&seg, 1}}, &page);
    ASSERT_TRUE(page);
    EXPECT_EQ((c.dw[0] >> 8) & 0xC0, 0u) << "PSDT says PRP";
    uint64_t prp1, prp2;
    std::memcpy(&prp1, &c.dw[6], 8);
    std::memcpy(&prp2, &c.dw[8], 8);
    EXPECT_EQ(prp1, 0x300000u);
    EXPECT_EQ(prp2, pool_.page_address(static_cast<uint32_t>(*page)));
    const auto* list = reinterpret_cast<const uint64_t*>(pool_.page(static_cast<uint32_t>(*page)));
    for (int i = 0; i < 15; ++i) EXPECT_EQ(list[i], 0x300000u + (i + 1) * 4096u);
}

TEST_F(NvmeCodecTest, AddressesOffBlocksOrBeyondTheNamespaceAreRefused) {
    NvmeCodec codec(geometry(true));
    const DmaSegment seg{0x100000, 512}, odd{0x100000, 100};
    Result<int32_t> r = 0;
    encode(codec, {Opcode::kRead, 100, {&seg, 1}}, &r);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("whole blocks of 512 bytes"), std::string::npos) << r.error().message;
    encode(codec, {Opcode::kRead, 0, {&odd, 1}}, &r);
    EXPECT_FALSE(r);
    encode(codec, {Opcode::kRead, (uint64_t{1} << 20) * 512, {&seg, 1}}, &r);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("beyond the namespace"), std::string::npos);
    const DmaSegment huge{0x100000, 1 << 20};
    encode(codec, {Opcode::kRead, 0, {&huge, 1}}, &r);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("MDTS"), std::string::npos);
    EXPECT_EQ(pool_.free_pages(), 8u) << "refusals keep no pages";
}

// Descriptor pages running out is back-pressure on the fast path: EAGAIN with a static
// reason and no formatted message, by SGL and by PRP list alike.
TEST_F(NvmeCodecTest, DescriptorPagesRunningOutIsEagainWithAStaticReason) {
    for (bool sgl : {true, false}) {
        NvmeCodec codec(geometry(sgl));
        std::vector<int32_t> taken;
        while (pool_.free_pages() != 0) taken.push_back(pool_.take());
        std::vector<DmaSegment> segs;
        for (uint64_t i = 0; i < 4; ++i) segs.push_back({0x100000 + i * 0x2000, 4096});
        Result<int32_t> page = 0;
        encode(codec, {Opcode::kWrite, 0, segs}, &page);
        ASSERT_FALSE(page) << "sgl " << sgl;
        EXPECT_EQ(page.error().code, EAGAIN);
        EXPECT_TRUE(page.error().message.empty()) << page.error().message;
        ASSERT_NE(page.error().reason, nullptr);
        EXPECT_NE(page.error().text().find("poll and submit again"), std::string::npos);
        for (int32_t p : taken) pool_.give_chain(p);
    }
}

TEST_F(NvmeCodecTest, StatusesAreNamed) {
    EXPECT_EQ(decode_status(0x000), IoStatus::kSuccess);
    EXPECT_EQ(decode_status(0x001), IoStatus::kInvalidOpcode);
    EXPECT_EQ(decode_status(0x002 | 0x4000), IoStatus::kInvalidField) << "DNR does not matter";
    EXPECT_EQ(decode_status(0x008), IoStatus::kAborted);
    EXPECT_EQ(decode_status(0x080), IoStatus::kDevaddrRange);
    EXPECT_EQ(decode_status(0x00D), IoStatus::kSglInvalid);
    EXPECT_EQ(decode_status(0x00F), IoStatus::kSglLengthMismatch);
    EXPECT_EQ(decode_status(0x004), IoStatus::kDmaFault);
    EXPECT_EQ(decode_status(0x281), IoStatus::kUnknownDeviceStatus) << "media errors have no name here";
}

}  // namespace
}  // namespace vfioq::nvme
