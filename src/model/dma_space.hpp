// SPDX-License-Identifier: MIT
// The model's view of host memory: the IOVA windows the client mapped. It
// plays the IOMMU: an access outside every window, or against a window's
// permissions, is refused and reported as a DMA fault.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <shared_mutex>
#include <span>

#include "vfioq/result.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::model {

// Accesses to windows the client did not share by fd go back to the client
// (vfio-user DMA_READ / DMA_WRITE). `to_host` is true for a write into host memory.
using ClientDmaAccess = std::function<Result<void>(bool to_host, uint64_t iova, std::span<std::byte> data)>;

// A DMA fault: the first IOVA the device could not reach.
struct DmaFault {
    uint64_t iova;
};

class DmaSpace {
public:
    DmaSpace() = default;
    DmaSpace(const DmaSpace&) = delete;
    DmaSpace& operator=(const DmaSpace&) = delete;
    ~DmaSpace() { clear(); }

    // Adds a window. With a valid fd the window is mmapped here; otherwise
    // accesses go through `client_access`. Overlap is EEXIST.
    Result<void> map(uint64_t iova, uint64_t size, bool readable, bool writable, UniqueFd fd, uint64_t fd_offset,
                     uint64_t max_windows);
    // Removes exactly one window; waits for accesses in flight to finish.
    Result<void> unmap(uint64_t iova, uint64_t size);
    void clear();
    [[nodiscard]] size_t window_count() const;

    void set_client_access(ClientDmaAccess access);

    // Device reads host memory (H2C) / writes host memory (C2H). On failure the
    // error message names the IOVA and `fault` holds it.
    Result<void> read(uint64_t iova, std::span<std::byte> out, DmaFault* fault = nullptr) const;
    Result<void> write(uint64_t iova, std::span<const std::byte> in, DmaFault* fault = nullptr) const;
    // Writes one naturally aligned dword into host memory with release ordering
    // (a completion entry's phase dword, published after the rest of the entry).
    Result<void> publish32(uint64_t iova, uint32_t value, DmaFault* fault = nullptr) const;

private:
    struct Window {
        uint64_t size;
        bool readable;
        bool writable;
        std::byte* local = nullptr;  // mmapped, or null for client-served windows
    };

    Result<void> access(bool to_host, uint64_t iova, std::span<std::byte> data, DmaFault* fault) const;

    mutable std::shared_mutex mutex_;
    std::map<uint64_t, Window> windows_;  // by IOVA
    ClientDmaAccess client_access_;
};

}  // namespace vfioq::model
