// SPDX-License-Identifier: MIT
#include "dma_memory.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <linux/memfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

#include "vfioq/log.hpp"

namespace vfioq::dma {

namespace {

size_t round_up(size_t v, size_t to) { return (v + to - 1) / to * to; }

Result<DmaMemory> map_memfd(size_t size, bool huge, const char* name) {
    const size_t page = huge ? kHugePageSize : static_cast<size_t>(::sysconf(_SC_PAGESIZE));
    DmaMemory m;
    m.fd.reset(::memfd_create(name, MFD_CLOEXEC | (huge ? MFD_HUGETLB | MFD_HUGE_2MB : 0u)));
    if (!m.fd) return make_error(errno, fmt::format("memfd_create failed: {}", std::strerror(errno)));
    m.size = size;
    m.mapped_size = round_up(size, page);
    m.hugepages = huge;
    if (::ftruncate(m.fd.get(), static_cast<off_t>(m.mapped_size)) != 0)
        return make_error(errno, fmt::format("sizing a memfd to {} bytes failed: {}", m.mapped_size,
                                             std::strerror(errno)));
    // MAP_POPULATE: hugetlb pages that are not there fail here rather than with SIGBUS later.
    void* p = ::mmap(nullptr, m.mapped_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, m.fd.get(), 0);
    if (p == MAP_FAILED)
        return make_error(errno, fmt::format("mapping {} bytes failed: {}", m.mapped_size, std::strerror(errno)));
    m.data = static_cast<std::byte*>(p);
    ::madvise(p, m.mapped_size, MADV_DONTFORK);
    return m;
}

}  // namespace

DmaMemory& DmaMemory::operator=(DmaMemory&& o) noexcept {
    if (this != &o) {
        if (data) ::munmap(data, mapped_size);
        fd = std::move(o.fd);
        data = std::exchange(o.data, nullptr);
        size = std::exchange(o.size, 0);
        mapped_size = std::exchange(o.mapped_size, 0);
        hugepages = std::exchange(o.hugepages, false);
    }
    return *this;
}

DmaMemory::~DmaMemory() {
    if (data) ::munmap(data, mapped_size);
}

Result<DmaMemory> allocate_dma_memory(size_t size, size_t hugepages_from, const char* name) {
    if (size == 0) return make_error(EINVAL, "a DMA buffer of 0 bytes was asked for");
    if (hugepages_from != 0 && size >= hugepages_from) {
        auto huge = map_memfd(size, true, name);
        if (huge) return huge;
        static std::atomic<bool> told{false};
        if (!told.exchange(true))
            log::logger<log::kDma>().info(
                "no 2 MiB hugetlb pages for DMA memory ({}); using normal pages. "
                "Reserve some with: echo N > /proc/sys/vm/nr_hugepages",
                huge.error().message);
    }
    auto m = map_memfd(size, false, name);
    if (!m) return m.error().with_context(fmt::format("allocating {} bytes of DMA memory", size));
    return m;
}

}  // namespace vfioq::dma
