// SPDX-License-Identifier: MIT
#include "dma_space.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>

#include "common/device_access.hpp"

namespace vfioq::model {

Result<void> DmaSpace::map(uint64_t iova, uint64_t size, bool readable, bool writable, UniqueFd fd,
                           uint64_t fd_offset, uint64_t max_windows) {
    if (size == 0) return make_error(EINVAL, fmt::format("DMA window at IOVA {:#x} has size 0", iova));
    if (iova + size < iova)
        return make_error(EINVAL, fmt::format("DMA window at IOVA {:#x} of {:#x} bytes wraps the address space",
                                              iova, size));
    std::byte* local = nullptr;
    if (fd.valid()) {
        const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        if (fd_offset % page != 0)
            return make_error(EINVAL, fmt::format("DMA window at IOVA {:#x}: fd offset {:#x} is not page aligned",
                                                  iova, fd_offset));
        int prot = (readable ? PROT_READ : 0) | (writable ? PROT_WRITE : 0);
        void* p = ::mmap(nullptr, size, prot == 0 ? PROT_NONE : prot, MAP_SHARED, fd.get(),
                         static_cast<off_t>(fd_offset));
        if (p == MAP_FAILED)
            return make_error(errno, fmt::format("DMA window at IOVA {:#x}: cannot map {:#x} bytes of the fd: {}",
                                                 iova, size, std::strerror(errno)));
        local = static_cast<std::byte*>(p);
    }
    std::unique_lock lock(mutex_);
    auto fail = [&](Error e) {
        if (local) ::munmap(local, size);
        return e;
    };
    if (windows_.size() >= max_windows)
        return fail(make_error(ENOSPC, fmt::format("DMA window at IOVA {:#x}: the limit of {} windows is reached",
                                                   iova, max_windows)));
    auto next = windows_.lower_bound(iova);
    if (next != windows_.end() && next->first < iova + size)
        return fail(make_error(EEXIST, fmt::format("DMA window [{:#x}, {:#x}) overlaps the window at {:#x}", iova,
                                                   iova + size, next->first)));
    if (next != windows_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second.size > iova)
            return fail(make_error(EEXIST, fmt::format("DMA window [{:#x}, {:#x}) overlaps the window at {:#x}",
                                                       iova, iova + size, prev->first)));
    }
    windows_.emplace(iova, Window{size, readable, writable, local});
    return {};
}

Result<void> DmaSpace::unmap(uint64_t iova, uint64_t size) {
    std::unique_lock lock(mutex_);  // excludes accesses in flight
    auto it = windows_.find(iova);
    if (it == windows_.end() || it->second.size != size)
        return make_error(ENOENT, fmt::format("no DMA window is mapped at exactly IOVA {:#x} size {:#x}", iova, size));
    if (it->second.local) ::munmap(it->second.local, it->second.size);
    windows_.erase(it);
    return {};
}

void DmaSpace::clear() {
    std::unique_lock lock(mutex_);
    for (auto& [iova, w] : windows_)
        if (w.local) ::munmap(w.local, w.size);
    windows_.clear();
}

size_t DmaSpace::window_count() const {
    std::shared_lock lock(mutex_);
    return windows_.size();
}

void DmaSpace::set_client_access(ClientDmaAccess access) {
    std::unique_lock lock(mutex_);
    client_access_ = std::move(access);
}

Result<void> DmaSpace::read(uint64_t iova, std::span<std::byte> out, DmaFault* fault) const {
    return access(false, iova, out, fault);
}

Result<void> DmaSpace::write(uint64_t iova, std::span<const std::byte> in, DmaFault* fault) const {
    return access(true, iova, {const_cast<std::byte*>(in.data()), in.size()}, fault);
}

Result<void> DmaSpace::publish32(uint64_t iova, uint32_t value, DmaFault* fault) const {
    if (iova % 4 == 0) {
        std::shared_lock lock(mutex_);
        auto it = windows_.upper_bound(iova);
        if (it != windows_.begin()) {
            --it;
            const Window& w = it->second;
            if (w.local && iova - it->first < w.size && w.size - (iova - it->first) >= 4 && w.writable) {
                std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(w.local + (iova - it->first)))
                    .store(value, std::memory_order_release);
                return {};
            }
        }
    }
    // Anything else (a client-served window, a fault) takes the general path.
    return write(iova, std::as_bytes(std::span(&value, 1)), fault);
}

Result<void> DmaSpace::access(bool to_host, uint64_t iova, std::span<std::byte> data, DmaFault* fault) const {
    const char* verb = to_host ? "write to" : "read from";
    auto refuse = [&](uint64_t at, std::string why) {
        if (fault) fault->iova = at;
        return make_error(EFAULT, fmt::format("DMA fault: {} IOVA {:#x} {}", verb, at, why));
    };
    uint64_t done = 0;
    // An access may span neighbouring windows; each piece must be permitted.
    while (done < data.size()) {
        const uint64_t at = iova + done;
        if (at < iova) return refuse(at, "wraps the address space");
        std::shared_lock lock(mutex_);
        auto it = windows_.upper_bound(at);
        if (it == windows_.begin()) return refuse(at, "hits no mapped window");
        --it;
        const uint64_t base = it->first;
        const Window& w = it->second;
        if (at - base >= w.size) return refuse(at, "hits no mapped window");
        if (to_host ? !w.writable : !w.readable)
            return refuse(at, fmt::format("is not permitted by its window at {:#x}", base));
        const uint64_t chunk = std::min<uint64_t>(data.size() - done, w.size - (at - base));
        auto piece = data.subspan(done, chunk);
        if (w.local) {
            // The shared lock keeps the window mapped while we copy (unmap waits for it).
            std::byte* p = w.local + (at - base);
            [[maybe_unused]] const DeviceAccessScope device_access;
            if (to_host)
                std::memcpy(p, piece.data(), chunk);
            else
                std::memcpy(piece.data(), p, chunk);
        } else {
            // A client-served window: the client checks its own mappings, so the lock is
            // dropped first; holding it across the round trip would stall a DMA_UNMAP that
            // the server thread is handling while our reply waits behind it.
            auto client = client_access_;
            lock.unlock();
            if (!client) return refuse(at, "is in a window with no fd and no client to serve it");
            if (auto r = client(to_host, at, piece); !r) {
                if (fault) fault->iova = at;
                return r.error().with_context(fmt::format("DMA fault: {} IOVA {:#x} through the client", verb, at));
            }
        }
        done += chunk;
    }
    return {};
}

}  // namespace vfioq::model
