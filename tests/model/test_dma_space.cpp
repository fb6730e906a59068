// SPDX-License-Identifier: MIT
// The model's DMA windows behave as VFIO's type1 IOMMU does for the client that
// maps them: QEMU's vfio-user client maps and unmaps a guest IOMMU's 4 KiB pages,
// tens of thousands of them, and invalidates in ranges.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "model/dma_space.hpp"

namespace vfioq::model {
namespace {

constexpr uint64_t kPage = 4096;

UniqueFd memfd(uint64_t size) {
    UniqueFd fd(::memfd_create("dma-space-test", MFD_CLOEXEC));
    EXPECT_TRUE(fd.valid());
    EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
    return fd;
}

UniqueFd dup_of(const UniqueFd& fd) { return UniqueFd(::dup(fd.get())); }

// The process's mappings of the test's memfds, from /proc/self/maps (the allocator's own
// mappings come and go, under a sanitizer above all, so only these are counted).
size_t memfd_mapping_count() {
    FILE* f = std::fopen("/proc/self/maps", "r");
    size_t n = 0;
    char line[512];
    while (std::fgets(line, sizeof(line), f)) n += std::strstr(line, "dma-space-test") != nullptr;
    std::fclose(f);
    return n;
}

TEST(DmaSpace, AnUnmapRemovesEveryWindowInsideItsRange) {
    DmaSpace dma;
    for (uint64_t i = 0; i < 8; ++i) ASSERT_TRUE(dma.map(0x10000 + i * kPage, kPage, true, true, {}, 0, 100));
    auto r = dma.unmap(0x10000 + 2 * kPage, 4 * kPage);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(*r, 4 * kPage);
    EXPECT_EQ(dma.window_count(), 4u);
    // The IOVAs are free again: a new window there is not refused as overlapping.
    EXPECT_TRUE(dma.map(0x10000 + 2 * kPage, 4 * kPage, true, true, {}, 0, 100));
}

TEST(DmaSpace, AnUnmapOfARangeWithNoWindowIsNotAnError) {
    DmaSpace dma;
    ASSERT_TRUE(dma.map(0x10000, kPage, true, true, {}, 0, 100));
    auto r = dma.unmap(0x100000, 1ull << 30);
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(*r, 0u);
    EXPECT_EQ(dma.window_count(), 1u);
}

TEST(DmaSpace, AnUnmapThatWouldSplitAWindowIsRefusedAndRemovesNothing) {
    DmaSpace dma;
    ASSERT_TRUE(dma.map(0x10000, kPage, true, true, {}, 0, 100));
    ASSERT_TRUE(dma.map(0x11000, 4 * kPage, true, true, {}, 0, 100));
    // Ends inside the second window.
    auto tail = dma.unmap(0x10000, 2 * kPage);
    ASSERT_FALSE(tail);
    EXPECT_EQ(tail.error().code, EINVAL);
    EXPECT_NE(tail.error().message.find("would split the window [0x11000, 0x15000)"), std::string::npos)
        << tail.error().message;
    // Starts inside it.
    auto head = dma.unmap(0x12000, 8 * kPage);
    ASSERT_FALSE(head);
    EXPECT_EQ(head.error().code, EINVAL);
    EXPECT_EQ(dma.window_count(), 2u);
    // The exact window, and a range around both, are fine.
    EXPECT_EQ(*dma.unmap(0x11000, 4 * kPage), 4 * kPage);
    EXPECT_EQ(*dma.unmap(0, 1ull << 20), kPage);
    EXPECT_EQ(dma.window_count(), 0u);
}

TEST(DmaSpace, AnUnmapThatWrapsOrIsEmptyIsRefused) {
    DmaSpace dma;
    EXPECT_EQ(dma.unmap(~0ull - kPage + 1, 2 * kPage).error().code, EINVAL);
    EXPECT_EQ(dma.unmap(0x1000, 0).error().code, EINVAL);
}

TEST(DmaSpace, WindowsIntoOneFileShareOneMapping) {
    const uint64_t pages = 4096;  // 16 MiB of "guest RAM", mapped page by page in reverse
    auto ram = memfd(pages * kPage);
    DmaSpace dma;
    ASSERT_EQ(memfd_mapping_count(), 0u);
    for (uint64_t i = 0; i < pages; ++i) {
        auto r = dma.map(0x100000000ull + i * kPage, kPage, true, true, dup_of(ram), (pages - 1 - i) * kPage, 1 << 20);
        ASSERT_TRUE(r) << r.error().message;
    }
    EXPECT_EQ(memfd_mapping_count(), 1u) << "one mapping of the file, not one per window";
    // Data goes to the file offset each window names, across window boundaries too.
    std::vector<std::byte> pattern(3 * kPage);
    for (size_t i = 0; i < pattern.size(); ++i) pattern[i] = std::byte(i * 7 + 3);
    ASSERT_TRUE(dma.write(0x100000000ull + 10 * kPage + 100, pattern));
    void* view = ::mmap(nullptr, pages * kPage, PROT_READ, MAP_SHARED, ram.get(), 0);
    ASSERT_NE(view, MAP_FAILED);
    const auto* bytes = static_cast<const std::byte*>(view);
    for (uint64_t piece = 0; piece < 4; ++piece) {
        const uint64_t window = 10 + piece;
        const uint64_t start = piece == 0 ? 100 : 0;
        const uint64_t end = piece == 3 ? 100 : kPage;
        for (uint64_t b = start; b < end; ++b)
            ASSERT_EQ(bytes[(pages - 1 - window) * kPage + b], pattern[piece * kPage + b - 100])
                << "window " << window << " byte " << b;
    }
    ::munmap(view, pages * kPage);
    std::vector<std::byte> back(pattern.size());
    ASSERT_TRUE(dma.read(0x100000000ull + 10 * kPage + 100, back));
    EXPECT_EQ(back, pattern);
    // The mapping goes with the last window into it.
    ASSERT_TRUE(dma.unmap(0x100000000ull, (pages - 1) * kPage));
    EXPECT_TRUE(dma.read(0x100000000ull + (pages - 1) * kPage, std::span(back).first(16)));
    ASSERT_TRUE(dma.unmap(0x100000000ull + (pages - 1) * kPage, kPage));
    EXPECT_EQ(memfd_mapping_count(), 0u);
}

TEST(DmaSpace, AReadOnlyWindowIntoASharedFileStaysReadOnly) {
    auto ram = memfd(4 * kPage);
    DmaSpace dma;
    ASSERT_TRUE(dma.map(0x10000, kPage, true, true, dup_of(ram), 0, 100));
    ASSERT_TRUE(dma.map(0x20000, kPage, true, false, dup_of(ram), kPage, 100));
    std::vector<std::byte> data(16, std::byte{0x5a});
    EXPECT_TRUE(dma.write(0x10000, data));
    DmaFault fault{};
    auto r = dma.write(0x20008, data, &fault);
    ASSERT_FALSE(r);
    EXPECT_EQ(fault.iova, 0x20008u);
    EXPECT_TRUE(dma.read(0x20000, data));
}

TEST(DmaSpace, AWindowBeyondTheFileGetsAMappingOfItsOwn) {
    // A file that grew after its first window was mapped.
    auto ram = memfd(2 * kPage);
    DmaSpace dma;
    ASSERT_TRUE(dma.map(0x10000, kPage, true, true, dup_of(ram), 0, 100));
    ASSERT_EQ(::ftruncate(ram.get(), 8 * kPage), 0);
    ASSERT_TRUE(dma.map(0x20000, kPage, true, true, dup_of(ram), 6 * kPage, 100));
    std::vector<std::byte> data(kPage, std::byte{0x33});
    ASSERT_TRUE(dma.write(0x20000, data));
    std::vector<std::byte> file(kPage);
    ASSERT_EQ(::pread(ram.get(), file.data(), kPage, 6 * kPage), static_cast<ssize_t>(kPage));
    EXPECT_EQ(file, data);
}

// A card's DMA to an IOVA in no window goes to the client, which is the card's IOMMU
// (QEMU's translates it through the guest's IOMMU, which blocks and logs it).
TEST(DmaSpace, DmaOutsideEveryWindowIsOfferedToTheClient) {
    DmaSpace dma;
    auto ram = memfd(kPage);
    ASSERT_TRUE(dma.map(0x10000, kPage, true, true, dup_of(ram), 0, 100));
    std::vector<std::pair<uint64_t, size_t>> asked;
    dma.set_client_access([&](bool, uint64_t iova, std::span<std::byte> data) -> Result<void> {
        asked.emplace_back(iova, data.size());
        return make_error(EFAULT, "not mapped by the guest's IOMMU");
    });
    std::vector<std::byte> data(2 * kPage);
    DmaFault fault{};
    // Half in the window, half beyond it: the window's half is done here, the rest is asked for.
    auto r = dma.write(0x10000 + kPage / 2, data, &fault);
    ASSERT_FALSE(r);
    EXPECT_EQ(fault.iova, 0x11000u);
    EXPECT_NE(r.error().message.find("in no window, refused by the client"), std::string::npos) << r.error().message;
    ASSERT_EQ(asked.size(), 1u);
    EXPECT_EQ(asked[0], std::make_pair(uint64_t{0x11000}, size_t{kPage + kPage / 2}));
    // Without a client, the model refuses it itself.
    DmaSpace alone;
    EXPECT_EQ(alone.read(0x7f000000, data).error().code, EFAULT);
}

// The queue processor finds a ring once per pass: local() gives this process's memory only
// inside a reader's section, for a range one mapped window holds with the access allowed.
TEST(DmaSpace, LocalMemoryIsForOneMappedWindowThatAllowsTheAccessInsideAReader) {
    DmaSpace dma;
    auto ram = memfd(4 * kPage);
    ASSERT_TRUE(dma.map(0x10000, 2 * kPage, true, true, dup_of(ram), 0, 100));
    ASSERT_TRUE(dma.map(0x12000, kPage, true, false, dup_of(ram), 2 * kPage, 100));  // the device may only read
    ASSERT_TRUE(dma.map(0x13000, kPage, true, true, {}, 0, 100));                    // served by the client
    DmaSpace::Reader reader(dma);
    EXPECT_EQ(dma.local(reader, 0x10000, 64, false), nullptr) << "outside the reader's section";
    const DmaSpace::Section section(reader);
    std::byte* p = dma.local(reader, 0x10100, 0x100, true);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x5a, 0x100);
    std::vector<std::byte> back(0x100);
    ASSERT_TRUE(dma.read(reader, 0x10100, back));
    EXPECT_EQ(back[0x80], std::byte{0x5a}) << "the memory read() sees";
    EXPECT_EQ(dma.local(reader, 0x11f00, 0x200, false), nullptr) << "runs into the next window";
    EXPECT_NE(dma.local(reader, 0x12000, 64, false), nullptr);
    EXPECT_EQ(dma.local(reader, 0x12000, 64, true), nullptr) << "the window is read-only to the device";
    EXPECT_EQ(dma.local(reader, 0x13000, 64, false), nullptr) << "no fd: the client serves it";
    EXPECT_EQ(dma.local(reader, 0x20000, 64, false), nullptr) << "no window";
    EXPECT_EQ(dma.local(reader, 0x10000, 0, false), nullptr) << "nothing asked for";
}

// The card's thread reads through a reader: inside it, the windows it found are used without
// the lock, so an unmap must wait for it to leave before the memory goes.
TEST(DmaSpace, AnUnmapWaitsForAReaderInsideAndTheReaderThenFindsTheWindowGone) {
    DmaSpace dma;
    auto ram = memfd(4 * kPage);
    ASSERT_TRUE(dma.map(0x10000, 4 * kPage, true, true, dup_of(ram), 0, 16));
    DmaSpace::Reader reader(dma);
    std::array<std::byte, 64> entry{};
    reader.enter();
    ASSERT_TRUE(dma.read(reader, 0x10000, entry));  // cached from here on
    std::atomic<bool> unmapped{false};
    std::thread unmapper([&] {
        auto r = dma.unmap(0x10000, 4 * kPage);
        EXPECT_TRUE(r) << r.error().message;
        unmapped = true;
    });
    // However long the unmap is kept waiting, it does not finish while the reader is inside,
    // and the reader's window stays readable meanwhile.
    for (int i = 0; i < 50; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        EXPECT_FALSE(unmapped.load());
        EXPECT_TRUE(dma.read(reader, 0x10000 + kPage, entry));
    }
    reader.leave();
    unmapper.join();
    EXPECT_TRUE(unmapped.load());
    EXPECT_EQ(memfd_mapping_count(), 0u) << "the window's memory is unmapped once the reader left";
    reader.enter();
    DmaFault fault{};
    auto r = dma.read(reader, 0x10000, entry, &fault);
    ASSERT_FALSE(r) << "the reader's cache still held the window";
    EXPECT_EQ(fault.iova, 0x10000u);
    reader.leave();
}

// Windows mapped while a reader is inside are found at once, and none of them waits.
TEST(DmaSpace, AMapDoesNotWaitForReadersAndTheirCacheSeesNewWindows) {
    DmaSpace dma;
    auto ram = memfd(8 * kPage);
    ASSERT_TRUE(dma.map(0x10000, kPage, true, true, dup_of(ram), 0, 16));
    DmaSpace::Reader reader(dma);
    std::array<std::byte, 16> bytes{};
    const DmaSpace::Section section(reader);
    ASSERT_TRUE(dma.read(reader, 0x10000, bytes));
    ASSERT_TRUE(dma.map(0x20000, kPage, true, true, dup_of(ram), kPage, 16));
    bytes.fill(std::byte{0x5A});
    ASSERT_TRUE(dma.write(reader, 0x20000, bytes));
    std::array<std::byte, 16> back{};
    ASSERT_TRUE(dma.read(0x20000, back));
    EXPECT_EQ(back, bytes);
}

}  // namespace
}  // namespace vfioq::model
