// SPDX-License-Identifier: MIT
// DmaContext over a transport played by the test: buffers, registration,
// translation, lifetimes, RLIMIT_MEMLOCK and MADV_DONTFORK, and no-IOMMU
// mode's physical addresses (checked against /proc/self/pagemap).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include "../support/fake_transport.hpp"
#include "dma/bus_address_map.hpp"
#include "dma/sgl_builder.hpp"
#include "vfioq/dma.hpp"

namespace vfioq {
namespace {

using test::FakeTransport;

TEST(DmaContext, BuffersAreFdBackedMappedAndTranslated) {
    FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    auto b = ctx.allocate(10000);
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_EQ(b->size(), 10000u);
    EXPECT_GE(b->fd(), 0);
    ASSERT_EQ(t.mapped.size(), 1u);
    const DmaMapping& m = t.mapped.begin()->second;
    EXPECT_EQ(m.iova, b->iova());
    EXPECT_EQ(m.fd, b->fd());
    EXPECT_EQ(m.size % 4096, 0u);
    EXPECT_EQ(*ctx.translate(b->data() + 100, 50), b->iova() + 100);
    EXPECT_EQ(ctx.translate(b->data() + 9000, 8000).error().code, EFAULT) << "runs past the buffer's pages";
    b->data()[9999] = std::byte{1};  // writable
    const uint64_t iova = b->iova();
    DmaBuffer moved = std::move(*b);
    EXPECT_EQ(moved.iova(), iova);
    moved = DmaBuffer{};
    EXPECT_TRUE(t.mapped.empty());
    EXPECT_EQ(ctx.stats().buffers, 0u);
    // The freed IOVA space is reused.
    auto again = ctx.allocate(4096);
    ASSERT_TRUE(again);
    EXPECT_EQ(again->iova(), iova);
}

TEST(DmaContext, RegistrationTranslatesOnlyWhileHeld) {
    FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    std::vector<std::byte> mem(20000);
    auto r = ctx.register_memory(mem.data() + 10, 5000);
    ASSERT_TRUE(r);
    EXPECT_EQ(*ctx.translate(mem.data() + 20, 100), r->iova_of(mem.data() + 20));
    EXPECT_EQ(r->segment(mem.data() + 10, 7).iova, r->iova_of(mem.data() + 10));
    auto null = ctx.translate(nullptr, 10);
    ASSERT_FALSE(null);
    EXPECT_NE(null.error().message.find("fake-card"), std::string::npos);
    EXPECT_EQ(ctx.register_memory(nullptr, 100).error().code, EINVAL);
    EXPECT_EQ(ctx.register_memory(mem.data(), 0).error().code, EINVAL);
    *r = Registration{};
    EXPECT_EQ(ctx.translate(mem.data() + 20, 100).error().code, EFAULT);
    EXPECT_EQ(t.mapped.size(), 1u) << "cached for the next registration";
    ASSERT_TRUE(ctx.unregister(mem.data() + 10, 5000));
    EXPECT_TRUE(t.mapped.empty());
}

TEST(DmaContext, ADroppedRegistrationIsUnreachableByteForByte) {
    FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    void* mem = ::mmap(nullptr, 4 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(mem, MAP_FAILED);
    auto* p = static_cast<std::byte*>(mem);
    auto x = ctx.register_memory(p, 2 * 4096);
    auto y = ctx.register_memory(p + 2 * 4096, 2 * 4096);  // merged with x into one mapping
    ASSERT_TRUE(x && y);
    *x = Registration{};
    auto gone = ctx.translate(p, 100);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, EFAULT);
    EXPECT_TRUE(ctx.unregister(p, 2 * 4096)) << "nothing holds x any more";
    EXPECT_TRUE(ctx.translate(p + 2 * 4096, 100));
    // Within a page: only the bytes registered.
    auto small = ctx.register_memory(p, 100);
    ASSERT_TRUE(small);
    EXPECT_TRUE(ctx.translate(p, 100));
    auto beside = ctx.translate(p + 200, 100);
    ASSERT_FALSE(beside);
    EXPECT_EQ(beside.error().code, EFAULT);
    EXPECT_NE(beside.error().message.find("fake-card"), std::string::npos);
    // A buffer: its size() bytes, not the page rounded around them.
    auto b = ctx.allocate(100);
    ASSERT_TRUE(b);
    EXPECT_TRUE(ctx.translate(b->data(), 100));
    EXPECT_EQ(ctx.translate(b->data() + 100, 1).error().code, EFAULT);
    *small = Registration{};
    *y = Registration{};
    ::munmap(mem, 4 * 4096);
}

TEST(DmaContext, MemoryTheProcessCannotWriteIsForTheDeviceToReadOnly) {
    FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    void* ro = ::mmap(nullptr, 2 * 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(ro, MAP_FAILED);
    auto r = ctx.register_memory(ro, 2 * 4096);
    ASSERT_TRUE(r) << r.error().message;
    ASSERT_EQ(t.mapped.size(), 1u);
    EXPECT_TRUE(t.mapped.begin()->second.readable);
    EXPECT_FALSE(t.mapped.begin()->second.writable);
    EXPECT_TRUE(ctx.translate(ro, 4096, DeviceAccess::kReads));
    auto into = ctx.translate(ro, 4096, DeviceAccess::kWrites);
    ASSERT_FALSE(into);
    EXPECT_EQ(into.error().code, EACCES);
    EXPECT_NE(into.error().message.find("read-only"), std::string::npos) << into.error().message;
    *r = Registration{};
    ::munmap(ro, 2 * 4096);
}

TEST(DmaContext, MemoryTheProcessCannotReadOrThatIsNotMappedIsRefused) {
    FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    void* none = ::mmap(nullptr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(none, MAP_FAILED);
    auto r = ctx.register_memory(none, 4096);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, EACCES);
    EXPECT_NE(r.error().message.find("cannot be read"), std::string::npos) << r.error().message;
    ::munmap(none, 4096);
    auto gone = ctx.register_memory(none, 4096);
    ASSERT_FALSE(gone);
    EXPECT_EQ(gone.error().code, EFAULT);
    EXPECT_NE(gone.error().message.find("not mapped"), std::string::npos) << gone.error().message;
    EXPECT_TRUE(t.mapped.empty());
}

TEST(DmaContext, BuffersAndRegistrationsMayOutliveTheDevice) {
    auto t = std::make_unique<FakeTransport>(false);
    auto ctx = std::make_unique<DmaContext>(*t, "fake-card");
    auto b = ctx->allocate(4096);
    std::vector<std::byte> mem(4096);
    auto r = ctx->register_memory(mem.data(), mem.size());
    ASSERT_TRUE(b && r);
    ctx.reset();  // the device closes; its mappings go with it
    const int unmaps = t->unmaps;
    t.reset();
    b->data()[0] = std::byte{7};  // the memory is still ours
    *b = DmaBuffer{};
    *r = Registration{};
    SUCCEED() << unmaps;
}

// Drops CAP_IPC_LOCK from this process's effective set.
bool drop_ipc_lock() {
    __user_cap_header_struct h{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct d[2]{};
    if (syscall(SYS_capget, &h, d) != 0) return false;
    d[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
    return syscall(SYS_capset, &h, d) == 0;
}

TEST(DmaContext, MemlockLimitIsCheckedUpFrontWithARemedy) {
    EXPECT_TRUE(memlock_problem(0, 1 << 20, RLIM_INFINITY, false).empty());
    EXPECT_TRUE(memlock_problem(1 << 20, 1 << 20, 1 << 20, true).empty());
    const auto msg = memlock_problem(1 << 20, 1 << 20, 1 << 20, false);
    EXPECT_NE(msg.find("RLIMIT_MEMLOCK"), std::string::npos) << msg;
    EXPECT_NE(msg.find("ulimit -l 2048"), std::string::npos) << msg;
    // In a child without CAP_IPC_LOCK and with a small limit, a pinning transport refuses the buffer.
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        rlimit rl{64 * 1024, RLIM_INFINITY};
        getrlimit(RLIMIT_MEMLOCK, &rl);
        rl.rlim_cur = 64 * 1024;
        if (!drop_ipc_lock() || setrlimit(RLIMIT_MEMLOCK, &rl) != 0) _exit(3);
        FakeTransport t(true);
        DmaContext ctx(t, "fake-card");
        auto small = ctx.allocate(16 * 1024);
        auto big = ctx.allocate(1 << 20);
        const bool ok = small && !big && big.error().code == ENOMEM &&
                        big.error().message.find("RLIMIT_MEMLOCK") != std::string::npos && t.mapped.size() == 1;
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status));
    if (WEXITSTATUS(status) == 3) GTEST_SKIP() << "cannot drop CAP_IPC_LOCK here";
    EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(DmaContext, PinnedMemoryIsNotInheritedByAChild) {
    FakeTransport t(true);
    DmaContext ctx(t, "fake-card");
    auto b = ctx.allocate(4096);
    void* plain = ::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    auto r = ctx.register_memory(plain, 8192);
    ASSERT_TRUE(b && r);
    for (void* p : {static_cast<void*>(b->data()), plain}) {
        const pid_t pid = fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            std::signal(SIGSEGV, SIG_DFL);  // a sanitizer's handler would turn the fault into an exit
            *static_cast<volatile char*>(p) = 1;  // MADV_DONTFORK: not mapped in the child
            _exit(0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) << "the child could touch DMA memory";
    }
    *r = Registration{};
    ctx.flush();
    ::munmap(plain, 8192);
}

}  // namespace
}  // namespace vfioq

namespace vfioq {
namespace {

uint64_t free_hugepages() {
    FILE* f = std::fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    uint64_t n = 0;
    while (std::fgets(line, sizeof(line), f))
        if (std::sscanf(line, "HugePages_Free: %lu", &n) == 1) break;
    std::fclose(f);
    return n;
}

TEST(DmaContext, LargeBuffersTakeHugePagesWhenTheHostHasThem) {
    FakeTransport t(false);
    DmaContext ctx(t, "fake-card");
    const bool available = free_hugepages() >= 2;
    auto big = ctx.allocate(3u << 20);
    ASSERT_TRUE(big) << big.error().message;
    EXPECT_EQ(big->hugepages(), available);
    if (available) {
        EXPECT_EQ(big->iova() % (2u << 20), 0u) << "huge pages get huge-page aligned IOVAs";
        EXPECT_EQ(t.mapped.begin()->second.size, 4u << 20);
    }
    auto small = ctx.allocate(64 * 1024);
    ASSERT_TRUE(small);
    EXPECT_FALSE(small->hugepages()) << "small buffers never round up to 2 MiB";
    std::memset(big->data(), 0x5A, big->size());  // all of it is usable
}

// The test's own reading of /proc/self/pagemap: the physical address of each page, 0 where none is shown.
std::vector<uint64_t> pagemap(const void* addr, size_t len) {
    std::vector<uint64_t> out(len / 4096);
    const int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return out;
    const auto off = static_cast<off_t>(reinterpret_cast<uintptr_t>(addr) / 4096 * 8);
    if (::pread(fd, out.data(), out.size() * 8, off) != static_cast<ssize_t>(out.size() * 8)) out.assign(out.size(), 0);
    ::close(fd);
    for (auto& e : out) e = (e >> 63) ? (e & ((uint64_t{1} << 55) - 1)) * 4096 : 0;
    return out;
}

bool pagemap_shows_frames() {
    static int page;
    page = 1;  // resident
    return pagemap(reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(&page) & ~uintptr_t{4095}), 4096)[0] != 0;
}

TEST(DmaContextWithoutIommu, BuffersAreLockedAndGivenTheirPhysicalAddresses) {
    FakeTransport t(true, true);
    DmaContext ctx(t, "fake-card");
    EXPECT_TRUE(ctx.physical_addresses());
    ASSERT_NE(ctx.bus_map(), nullptr);
    auto b = ctx.allocate(4096);
    if (!pagemap_shows_frames()) {
        // Without CAP_SYS_ADMIN the kernel hides page frames: the error must say what is needed.
        ASSERT_FALSE(b);
        EXPECT_EQ(b.error().code, EPERM);
        EXPECT_NE(b.error().message.find("CAP_SYS_ADMIN"), std::string::npos) << b.error().message;
        return;
    }
    ASSERT_TRUE(b) << b.error().message;
    EXPECT_TRUE(t.mapped.empty()) << "nothing is mapped through the transport without an IOMMU";
    EXPECT_GE(b->iova(), dma::BusAddressMap::kBase) << "IOVAs are handles far above RAM";
    const auto phys = pagemap(b->data(), 4096);
    auto addr = ctx.device_address(b->iova() + 0x30, 0x100);
    ASSERT_TRUE(addr) << addr.error().message;
    EXPECT_EQ(*addr, phys[0] + 0x30);
    auto outside = ctx.device_address(b->iova() + 4096, 16);
    EXPECT_FALSE(outside) << "past the buffer";
    // The memory stays put: locked (but the sanitizers make mlock a no-op).
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
    std::ifstream status("/proc/self/status");
    std::string line;
    uint64_t locked_kb = 0;
    while (std::getline(status, line))
        if (line.rfind("VmLck:", 0) == 0) locked_kb = std::stoull(line.substr(6));
    EXPECT_GE(locked_kb, 4u);
#endif
    const uint64_t iova = b->iova();
    *b = DmaBuffer{};
    EXPECT_FALSE(ctx.device_address(iova, 16)) << "a freed buffer's handle translates to nothing";
}

TEST(DmaContextWithoutIommu, RingsMustBePhysicallyContiguousAndSegmentsSplitWhereTheyAreNot) {
    if (!pagemap_shows_frames()) GTEST_SKIP() << "needs CAP_SYS_ADMIN to see physical addresses";
    FakeTransport t(true, true);
    DmaOptions o;
    o.hugepages = false;  // 4 KiB pages: contiguous only where the kernel happened to place them so
    DmaContext ctx(t, "fake-card", o);
    constexpr size_t kLen = 64 * 4096;
    auto b = ctx.allocate(kLen);
    ASSERT_TRUE(b) << b.error().message;
    const auto phys = pagemap(b->data(), kLen);
    bool contiguous = true;
    for (size_t i = 1; i < phys.size(); ++i) contiguous &= phys[i] == phys[i - 1] + 4096;
    auto ring = ctx.device_address(b->iova(), kLen);
    EXPECT_EQ(bool(ring), contiguous);
    if (!ring) {
        EXPECT_EQ(ring.error().code, EINVAL);
        EXPECT_NE(ring.error().message.find("hugepages"), std::string::npos) << ring.error().message;
    }
    // The SGL of the whole buffer is its physical runs, in order.
    auto pool_buf = ctx.allocate(4 * dma::kSglPageSize);
    ASSERT_TRUE(pool_buf);
    dma::SglPagePool pool(pool_buf->data(), pool_buf->iova(), 4, ctx.bus_map());
    const DmaSegment whole{b->iova() + 12, kLen - 12};
    sgq::SglDescriptor d1{}, d2{};
    auto r = dma::build_sgl({&whole, 1}, {.max_sge = 1024}, pool, d1, d2, ctx.bus_map());
    ASSERT_EQ(r.error, dma::SglError::kNone) << dma::describe(r, {&whole, 1}, {});
    std::vector<DmaSegment> want;
    for (size_t i = 0; i < phys.size(); ++i) {
        const uint64_t a = phys[i] + (i == 0 ? 12 : 0), len = i == 0 ? 4096 - 12 : 4096;
        if (!want.empty() && want.back().iova + want.back().len == a)
            want.back().len += len;
        else
            want.push_back({a, len});
    }
    ASSERT_EQ(r.descriptors, want.size());
    EXPECT_EQ(d1.addr, want[0].iova);
    EXPECT_EQ(d1.len, want[0].len);
    // Registered application memory is translated the same way.
    std::vector<std::byte> plain(5 * 4096);
    auto* page = reinterpret_cast<std::byte*>((reinterpret_cast<uintptr_t>(plain.data()) + 4095) & ~uintptr_t{4095});
    auto reg = ctx.register_memory(page, 3 * 4096);
    ASSERT_TRUE(reg) << reg.error().message;
    const auto reg_phys = pagemap(page, 3 * 4096);
    for (int i = 0; i < 3; ++i) {
        auto a = ctx.device_address(reg->iova_of(page + i * 4096 + 5), 1);
        ASSERT_TRUE(a);
        EXPECT_EQ(*a, reg_phys[static_cast<size_t>(i)] + 5);
    }
    EXPECT_TRUE(t.mapped.empty());
}

}  // namespace
}  // namespace vfioq
