// SPDX-License-Identifier: MIT
// The model's view of host memory: the IOVA windows the client mapped. It
// plays the IOMMU: an access outside every window, or against a window's
// permissions, is refused and reported as a DMA fault.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <shared_mutex>
#include <span>
#include <utility>
#include <vector>

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
    struct Window;
    using WindowEntry = std::pair<const uint64_t, Window>;  // a node of windows_: stable until erased

public:
    // A thread that does DMA all the time (the card's queue processor, a worker) reads
    // through a Reader. Between enter() and leave() the windows it found stay in its own
    // cache and are used without the lock: an unmap waits for every reader inside to
    // leave before the memory goes, and map() never waits. A window that is not cached
    // is looked up under the lock as before. Outside enter() and leave(), or when every
    // reader slot is taken, a Reader is the lock path.
    class Reader {
    public:
        explicit Reader(const DmaSpace& space);
        ~Reader();
        Reader(const Reader&) = delete;
        Reader& operator=(const Reader&) = delete;

        void enter();
        // Leave before anything that may wait for another thread: an unmap waits for this one.
        void leave();
        [[nodiscard]] bool inside() const { return inside_; }

    private:
        friend class DmaSpace;
        static constexpr size_t kCached = 4;
        [[nodiscard]] const WindowEntry* cached(uint64_t iova) const;
        void remember(const WindowEntry* entry);

        const DmaSpace& space_;
        int slot_ = -1;
        bool inside_ = false;
        uint64_t cache_generation_ = 0;  // the removals the cache has seen
        std::array<const WindowEntry*, kCached> cache_{};
        uint32_t next_ = 0;
    };
    // enter() to leave() for one scope.
    class Section {
    public:
        explicit Section(Reader& reader) : reader_(reader) { reader_.enter(); }
        ~Section() { reader_.leave(); }
        Section(const Section&) = delete;
        Section& operator=(const Section&) = delete;

    private:
        Reader& reader_;
    };

    DmaSpace() = default;
    DmaSpace(const DmaSpace&) = delete;
    DmaSpace& operator=(const DmaSpace&) = delete;
    ~DmaSpace() { clear(); }

    // Adds a window. With a valid fd the window's memory is mapped here; otherwise
    // accesses go through `client_access`. Overlap is EEXIST.
    Result<void> map(uint64_t iova, uint64_t size, bool readable, bool writable, UniqueFd fd, uint64_t fd_offset,
                     uint64_t max_windows);
    // Removes every window inside [iova, iova + size), as VFIO's type1 IOMMU does: a
    // range that covers none is not an error, one that would split a window is EINVAL
    // and removes nothing. Returns the bytes unmapped; waits for accesses in flight.
    Result<uint64_t> unmap(uint64_t iova, uint64_t size);
    void clear();
    [[nodiscard]] size_t window_count() const;
    // Returns once every reader that was inside a section has left it; one that enters later
    // sees what was done before the call. A controller reset waits so for the card's DMA to
    // stop. Never from inside a section, nor with a lock a reader inside may take.
    void wait_for_readers();

    void set_client_access(ClientDmaAccess access);

    // Device reads host memory (H2C) / writes host memory (C2H). On failure the
    // error message names the IOVA and `fault` holds it.
    Result<void> read(uint64_t iova, std::span<std::byte> out, DmaFault* fault = nullptr) const;
    Result<void> write(uint64_t iova, std::span<const std::byte> in, DmaFault* fault = nullptr) const;
    // Writes one naturally aligned dword into host memory with release ordering
    // (a completion entry's phase dword, published after the rest of the entry).
    Result<void> publish32(uint64_t iova, uint32_t value, DmaFault* fault = nullptr) const;
    // The same through a reader.
    Result<void> read(Reader& reader, uint64_t iova, std::span<std::byte> out, DmaFault* fault = nullptr) const;
    Result<void> write(Reader& reader, uint64_t iova, std::span<const std::byte> in, DmaFault* fault = nullptr) const;
    Result<void> publish32(Reader& reader, uint64_t iova, uint32_t value, DmaFault* fault = nullptr) const;

    // Where [iova, iova + size) lies in this process, when one mapped window holds all of
    // it with the access allowed (`to_host`: the device writes); null otherwise (no such
    // window, a client-served one, several windows): the caller then takes read() or
    // write(), which report why. Only inside the reader's section, and valid until it
    // leaves: the queue processor finds a ring once per pass, not once per entry.
    [[nodiscard]] std::byte* local(Reader& reader, uint64_t iova, uint64_t size, bool to_host) const;

private:
    // A file that windows share, mapped whole once: a guest behind an IOMMU maps its
    // RAM page by page, tens of thousands of 4 KiB windows into one file, and a mapping
    // of each would cost a system call per window and exhaust the process's mappings.
    using FileKey = std::pair<uint64_t, uint64_t>;  // device, inode
    struct FileMapping {
        std::byte* base;
        uint64_t length;
        uint64_t windows;  // how many windows point into it
    };
    struct Window {
        uint64_t size;
        bool readable;
        bool writable;
        std::byte* local = nullptr;  // mmapped, or null for client-served windows
        std::optional<FileKey> file;  // set when `local` points into a shared file mapping
    };

    // Maps the fd's part for a new window: into the file's shared mapping when there is
    // one or can be, else a mapping of its own. Called with the lock held.
    Result<std::byte*> map_local(int fd, uint64_t fd_offset, uint64_t size, bool writable,
                                 std::optional<FileKey>& file);
    // The memory of a window that goes: unmapped only once no reader can be using it.
    using Unmapping = std::pair<std::byte*, uint64_t>;
    void unmap_local(const Window& w, std::vector<Unmapping>& unmappings);
    // Windows taken out of windows_ under the lock are freed here, after the readers inside have left.
    void retire(std::vector<std::map<uint64_t, Window>::node_type> nodes, std::vector<Unmapping> unmappings);

    Result<void> access(Reader* reader, bool to_host, uint64_t iova, std::span<std::byte> data, DmaFault* fault) const;
    Result<void> publish(Reader* reader, uint64_t iova, uint32_t value, DmaFault* fault) const;
    // The window holding `iova`, or null; called with the lock held (either way).
    const WindowEntry* find(uint64_t iova) const;
    // The window holding `iova` from the reader's cache, else through find() with `lock`
    // (unlocked on entry) taken, remembered by a reader inside; null for none.
    const WindowEntry* lookup(Reader* reader, uint64_t iova, std::shared_lock<std::shared_mutex>& lock) const;

    // A reader's slot: the removal generation it entered under, 0 while outside.
    struct alignas(64) ReaderSlot {
        std::atomic<bool> taken{false};
        std::atomic<uint64_t> generation{0};
    };
    static constexpr size_t kReaderSlots = 16;
    mutable std::array<ReaderSlot, kReaderSlots> readers_{};
    // Bumped (after the windows are out of windows_) by every unmap that removes a window, and
    // by every wait_for_readers().
    std::atomic<uint64_t> removals_{1};

    mutable std::shared_mutex mutex_;
    std::map<uint64_t, Window> windows_;  // by IOVA
    // The window the last access found. The card walks its rings and buffers in order, so
    // most lookups hit it, whatever the number of windows; cleared (under the exclusive
    // lock) whenever a window goes.
    mutable std::atomic<const WindowEntry*> last_hit_{nullptr};
    std::map<FileKey, FileMapping> files_;
    ClientDmaAccess client_access_;
};

}  // namespace vfioq::model
