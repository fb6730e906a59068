// SPDX-License-Identifier: MIT
// DMA memory of one device: buffers vfioq allocates (fd-backed, hugepages
// when the host has them) and application memory registered for DMA through
// a cache. Both give IOVAs the device can reach; commands carry IOVAs.
//
// Lifetimes: a DmaBuffer or Registration may outlive its Device without harm
// (its IOMMU mapping went with the device), but memory must stay registered
// (and a buffer alive) until every command that uses it has completed.
// Thread-safety: DmaContext calls may come from any thread (they take a lock;
// they are control-path calls), except that registering again exactly the range
// registered last, and dropping that Registration, take none: a buffer
// registered for every I/O costs two atomic operations. DmaBuffer and
// Registration accessors are plain reads and never lock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "vfioq/export.hpp"
#include "vfioq/result.hpp"
#include "vfioq/transport.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq {

namespace detail {
class DmaState;
}
namespace dma {
class BusAddressMap;
}

// What a command has the device do to host memory: read it (a WRITE to the
// card) or write it (a READ from the card).
enum class DeviceAccess : uint8_t { kReads, kWrites };

// A piece of memory as the device sees it.
struct DmaSegment {
    uint64_t iova = 0;
    uint64_t len = 0;
};

// A piece of memory as the application sees it; must be registered (or lie in a DmaBuffer).
struct HostSegment {
    const void* addr = nullptr;
    size_t len = 0;
};

// Memory vfioq allocated and mapped for the device. Move-only; unmapped and freed when destroyed.
class VFIOQ_API DmaBuffer {
public:
    DmaBuffer() = default;
    DmaBuffer(DmaBuffer&& o) noexcept;
    DmaBuffer& operator=(DmaBuffer&& o) noexcept;
    ~DmaBuffer();
    DmaBuffer(const DmaBuffer&) = delete;
    DmaBuffer& operator=(const DmaBuffer&) = delete;

    [[nodiscard]] explicit operator bool() const { return data_ != nullptr; }
    [[nodiscard]] std::byte* data() const { return data_; }
    [[nodiscard]] size_t size() const { return size_; }
    [[nodiscard]] uint64_t iova() const { return iova_; }
    [[nodiscard]] bool hugepages() const { return hugepages_; }
    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] std::span<std::byte> span() const { return {data_, size_}; }
    // The device's view of [offset, offset + len); the caller keeps it inside the buffer.
    [[nodiscard]] DmaSegment segment(size_t offset, size_t len) const { return {iova_ + offset, len}; }

private:
    friend class detail::DmaState;
    void release();

    std::shared_ptr<detail::DmaState> owner_;
    UniqueFd fd_;
    std::byte* data_ = nullptr;
    size_t size_ = 0;
    size_t mapped_size_ = 0;
    uint64_t iova_ = 0;
    bool hugepages_ = false;
};

// A hold on application memory registered for DMA. Move-only; dropping it
// leaves the mapping cached for the next registration of the same memory.
class VFIOQ_API Registration {
public:
    Registration() = default;
    Registration(Registration&& o) noexcept;
    Registration& operator=(Registration&& o) noexcept;
    ~Registration();
    Registration(const Registration&) = delete;
    Registration& operator=(const Registration&) = delete;

    [[nodiscard]] explicit operator bool() const { return entry_ != nullptr; }
    [[nodiscard]] const void* addr() const { return addr_; }
    [[nodiscard]] size_t size() const { return size_; }
    // The IOVA of a byte inside the registered memory.
    [[nodiscard]] uint64_t iova_of(const void* p) const {
        return iova_ + static_cast<uint64_t>(static_cast<const std::byte*>(p) - static_cast<const std::byte*>(addr_));
    }
    [[nodiscard]] DmaSegment segment(const void* p, size_t len) const { return {iova_of(p), len}; }

private:
    friend class detail::DmaState;
    void release();

    std::shared_ptr<detail::DmaState> owner_;
    void* entry_ = nullptr;
    const void* addr_ = nullptr;
    size_t size_ = 0;
    uint64_t iova_ = 0;  // of addr_
};

struct DmaOptions {
    // The registration cache's budget: mappings (0: 60000, or fewer if the
    // IOMMU allows fewer) and bytes (0: no limit beyond RLIMIT_MEMLOCK).
    uint64_t max_registered_mappings = 0;
    uint64_t max_registered_bytes = 0;
    bool hugepages = true;
};

struct DmaStats {
    uint64_t buffers = 0, buffer_bytes = 0;
    uint64_t registered_mappings = 0, registered_bytes = 0;
    uint64_t cache_hits = 0, cache_misses = 0, cache_merges = 0, cache_evictions = 0;
};

class VFIOQ_API DmaContext {
public:
    DmaContext(Transport& transport, std::string device_name, const DmaOptions& options = {});
    ~DmaContext();
    DmaContext(const DmaContext&) = delete;
    DmaContext& operator=(const DmaContext&) = delete;

    // A buffer of `size` bytes mapped for the device (readable and writable by it).
    Result<DmaBuffer> allocate(size_t size);
    // Registers [p, p + len) (any pointer and length; whole pages are mapped).
    // Memory the process cannot read, or that is not mapped, is refused
    // (EACCES, EFAULT); memory it can only read is mapped for the device to
    // read only, and translate() refuses it to a command that would write it.
    Result<Registration> register_memory(const void* p, size_t len);
    // Unmaps a cached registration nobody holds now (EBUSY while a registration
    // holds any byte of it). Where the mapping was merged with memory another
    // registration still holds, it goes when that one is dropped.
    Result<void> unregister(const void* p, size_t len);
    // Unmaps every cached registration nobody holds.
    void flush();
    // The IOVA of [p, p + len) if every byte lies in one DmaBuffer's `size()`
    // bytes or in memory held registered (byte for byte what the registrations
    // named, not the pages mapped around it); EFAULT otherwise (memory is never
    // registered implicitly), EACCES if the device would write memory the
    // process can only read.
    Result<uint64_t> translate(const void* p, size_t len, DeviceAccess access = DeviceAccess::kReads) const;

    // The address to give the device for [iova, iova + len) of a buffer or
    // registration: the IOVA itself behind an IOMMU. In no-IOMMU mode IOVAs
    // are handles and this is the physical address, EINVAL when the range is
    // not physically contiguous (rings need one block: use hugepages).
    // Segments in commands need no such call: the SGL and PRP builders
    // translate them and split at physical discontinuities.
    Result<uint64_t> device_address(uint64_t iova, uint64_t len) const;
    // Whether the device sees physical addresses (kernel VFIO's no-IOMMU mode).
    [[nodiscard]] bool physical_addresses() const;
    // For the device profiles' fast path: the IOVA-to-physical map, or null
    // when an IOMMU translates. Lookups take no lock.
    [[nodiscard]] const dma::BusAddressMap* bus_map() const;

    [[nodiscard]] DmaStats stats() const;

    // The device is going away: mappings are dropped; buffers and registrations
    // still alive keep their memory and unmap nothing more.
    void detach();

private:
    std::shared_ptr<detail::DmaState> state_;
};

// Why pinning `extra` more bytes would fail under RLIMIT_MEMLOCK, or empty.
// `limit` is the soft limit (RLIM_INFINITY for none).
VFIOQ_API std::string memlock_problem(uint64_t pinned, uint64_t extra, uint64_t limit, bool cap_ipc_lock);

}  // namespace vfioq
