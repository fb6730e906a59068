// SPDX-License-Identifier: MIT
#include "physical_pages.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstring>

#include "vfioq/unique_fd.hpp"

namespace vfioq::dma {

namespace {
constexpr uint64_t kPage = 4096;
constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;
}  // namespace

Result<std::vector<uint64_t>> physical_pages(const void* addr, size_t len) {
    const auto start = reinterpret_cast<uintptr_t>(addr);
    if (start % kPage || len % kPage || len == 0)
        return make_error(EINVAL, fmt::format("physical pages of {} bytes at {}: not whole pages", len, addr));
    UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (!fd) return make_error(errno, fmt::format("cannot open /proc/self/pagemap: {}", std::strerror(errno)));
    std::vector<uint64_t> entries(len / kPage);
    const auto bytes = static_cast<ssize_t>(entries.size() * sizeof(uint64_t));
    const auto offset = static_cast<off_t>(start / kPage * sizeof(uint64_t));
    if (::pread(fd.get(), entries.data(), static_cast<size_t>(bytes), offset) != bytes)
        return make_error(EIO, fmt::format("reading /proc/self/pagemap for {} bytes at {} failed", len, addr));
    for (size_t i = 0; i < entries.size(); ++i) {
        const uint64_t e = entries[i];
        if (!(e & kPresent))
            return make_error(EFAULT, fmt::format("page {:#x} is not resident, so it has no physical address",
                                                  start + i * kPage));
        const uint64_t pfn = e & kPfnMask;
        if (pfn == 0)
            return make_error(EPERM, "/proc/self/pagemap shows no physical addresses to this process: no-IOMMU "
                                     "mode needs CAP_SYS_ADMIN (run as root)");
        entries[i] = pfn * kPage;
    }
    return entries;
}

}  // namespace vfioq::dma
