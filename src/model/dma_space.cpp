// SPDX-License-Identifier: MIT
#include "dma_space.hpp"

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>

#include "vfio_user/device_access.hpp"

namespace vfioq::model {

Result<void> DmaSpace::map(uint64_t iova, uint64_t size, bool readable, bool writable, UniqueFd fd,
                           uint64_t fd_offset, uint64_t max_windows) {
    if (size == 0) return make_error(EINVAL, fmt::format("DMA window at IOVA {:#x} has size 0", iova));
    if (iova + size < iova)
        return make_error(EINVAL, fmt::format("DMA window at IOVA {:#x} of {:#x} bytes wraps the address space",
                                              iova, size));
    if (fd.valid()) {
        const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
        if (fd_offset % page != 0)
            return make_error(EINVAL, fmt::format("DMA window at IOVA {:#x}: fd offset {:#x} is not page aligned",
                                                  iova, fd_offset));
    }
    std::unique_lock lock(mutex_);
    if (windows_.size() >= max_windows)
        return make_error(ENOSPC, fmt::format("DMA window at IOVA {:#x}: the limit of {} windows is reached", iova,
                                              max_windows));
    auto next = windows_.lower_bound(iova);
    if (next != windows_.end() && next->first < iova + size)
        return make_error(EEXIST, fmt::format("DMA window [{:#x}, {:#x}) overlaps the window at {:#x}", iova,
                                              iova + size, next->first));
    if (next != windows_.begin()) {
        auto prev = std::prev(next);
        if (prev->first + prev->second.size > iova)
            return make_error(EEXIST, fmt::format("DMA window [{:#x}, {:#x}) overlaps the window at {:#x}", iova,
                                                  iova + size, prev->first));
    }
    Window w{size, readable, writable};
    if (fd.valid()) {
        auto local = map_local(fd.get(), fd_offset, size, writable, w.file);
        if (!local) return local.error().with_context(fmt::format("DMA window at IOVA {:#x}", iova));
        w.local = *local;
    }
    windows_.emplace_hint(next, iova, w);
    return {};
}

Result<std::byte*> DmaSpace::map_local(int fd, uint64_t fd_offset, uint64_t size, bool writable,
                                       std::optional<FileKey>& file) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && fd_offset <= static_cast<uint64_t>(st.st_size) &&
        size <= static_cast<uint64_t>(st.st_size) - fd_offset) {
        const FileKey key{st.st_dev, st.st_ino};
        auto it = files_.find(key);
        if (it == files_.end()) {
            // Read and write: the windows' own flags are checked on every access, and a
            // later window into the same file may be writable.
            void* p = ::mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
            if (p != MAP_FAILED)
                it = files_.emplace(key, FileMapping{static_cast<std::byte*>(p), static_cast<uint64_t>(st.st_size), 0})
                         .first;
        }
        if (it != files_.end() && fd_offset + size <= it->second.length) {
            ++it->second.windows;
            file = key;
            return it->second.base + fd_offset;
        }
    }
    // A file that cannot be shared (read-only, grown since it was mapped, not a regular file).
    const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
    void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, static_cast<off_t>(fd_offset));
    if (p == MAP_FAILED)
        return make_error(errno, fmt::format("cannot map {:#x} bytes of the fd at offset {:#x}: {}", size, fd_offset,
                                             std::strerror(errno)));
    return static_cast<std::byte*>(p);
}

void DmaSpace::unmap_local(const Window& w, std::vector<Unmapping>& unmappings) {
    if (!w.local) return;
    if (!w.file) {
        unmappings.emplace_back(w.local, w.size);
        return;
    }
    auto it = files_.find(*w.file);
    if (it != files_.end() && --it->second.windows == 0) {
        unmappings.emplace_back(it->second.base, it->second.length);
        files_.erase(it);
    }
}

void DmaSpace::wait_for_readers() {
    // Readers that entered before the bump may still be using what they found; the ones that
    // enter after it start with an empty cache and see everything done before the bump.
    const uint64_t generation = removals_.fetch_add(1, std::memory_order_seq_cst) + 1;
    for (auto& slot : readers_) {
        if (!slot.taken.load(std::memory_order_acquire)) continue;
        for (;;) {
            const uint64_t seen = slot.generation.load(std::memory_order_seq_cst);
            if (seen == 0 || seen >= generation) break;
            std::this_thread::yield();
        }
    }
}

void DmaSpace::retire(std::vector<std::map<uint64_t, Window>::node_type> nodes, std::vector<Unmapping> unmappings) {
    if (nodes.empty()) return;
    // The windows are out of windows_: a reader that enters from now on cannot find them.
    wait_for_readers();
    for (auto& [base, length] : unmappings) ::munmap(base, length);
}

Result<uint64_t> DmaSpace::unmap(uint64_t iova, uint64_t size) {
    if (size == 0) return make_error(EINVAL, fmt::format("DMA unmap at IOVA {:#x} has size 0", iova));
    const uint64_t last = iova + (size - 1);
    if (last < iova)
        return make_error(EINVAL, fmt::format("DMA unmap at IOVA {:#x} of {:#x} bytes wraps the address space", iova,
                                              size));
    auto would_split = [&](const auto& window) {
        return make_error(EINVAL, fmt::format("DMA unmap [{:#x}, {:#x}] would split the window [{:#x}, {:#x})", iova,
                                              last, window.first, window.first + window.second.size));
    };
    std::vector<std::map<uint64_t, Window>::node_type> gone;
    std::vector<Unmapping> unmappings;
    uint64_t unmapped = 0;
    {
        std::unique_lock lock(mutex_);  // excludes lookups in flight
        auto first = windows_.upper_bound(iova);
        if (first != windows_.begin()) {
            auto prev = std::prev(first);
            if (iova - prev->first < prev->second.size) {
                if (prev->first != iova) return would_split(*prev);
                first = prev;
            }
        }
        auto end = windows_.upper_bound(last);
        if (end != first) {
            auto tail = std::prev(end);  // the last window that starts inside the range
            if (last - tail->first < tail->second.size - 1) return would_split(*tail);
        }
        last_hit_.store(nullptr, std::memory_order_relaxed);
        while (first != end) {
            unmap_local(first->second, unmappings);
            unmapped += first->second.size;
            gone.push_back(windows_.extract(first++));
        }
    }
    retire(std::move(gone), std::move(unmappings));
    return unmapped;
}

void DmaSpace::clear() {
    std::vector<std::map<uint64_t, Window>::node_type> gone;
    std::vector<Unmapping> unmappings;
    {
        std::unique_lock lock(mutex_);
        last_hit_.store(nullptr, std::memory_order_relaxed);
        while (!windows_.empty()) {
            unmap_local(windows_.begin()->second, unmappings);
            gone.push_back(windows_.extract(windows_.begin()));
        }
        files_.clear();
    }
    retire(std::move(gone), std::move(unmappings));
}

DmaSpace::Reader::Reader(const DmaSpace& space) : space_(space) {
    for (size_t i = 0; i < kReaderSlots; ++i) {
        bool expected = false;
        if (space_.readers_[i].taken.compare_exchange_strong(expected, true, std::memory_order_acq_rel)) {
            slot_ = static_cast<int>(i);
            return;
        }
    }
}

DmaSpace::Reader::~Reader() {
    leave();
    if (slot_ >= 0) space_.readers_[static_cast<size_t>(slot_)].taken.store(false, std::memory_order_release);
}

void DmaSpace::Reader::enter() {
    if (slot_ < 0 || inside_) return;
    auto& slot = space_.readers_[static_cast<size_t>(slot_)];
    // Publish the generation entered under, then check that no removal came in between: an
    // unmap either sees this slot or has bumped the count before the second load.
    uint64_t generation = space_.removals_.load(std::memory_order_seq_cst);
    for (;;) {
        slot.generation.store(generation, std::memory_order_seq_cst);
        const uint64_t now = space_.removals_.load(std::memory_order_seq_cst);
        if (now == generation) break;
        generation = now;
    }
    if (generation != cache_generation_) {
        cache_.fill(nullptr);
        cache_generation_ = generation;
    }
    inside_ = true;
}

void DmaSpace::Reader::leave() {
    if (!inside_) return;
    space_.readers_[static_cast<size_t>(slot_)].generation.store(0, std::memory_order_release);
    inside_ = false;
}

const DmaSpace::WindowEntry* DmaSpace::Reader::cached(uint64_t iova) const {
    for (const WindowEntry* e : cache_)
        if (e && iova - e->first < e->second.size) return e;
    return nullptr;
}

void DmaSpace::Reader::remember(const WindowEntry* entry) {
    cache_[next_] = entry;
    next_ = (next_ + 1) % kCached;
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
    return access(nullptr, false, iova, out, fault);
}

Result<void> DmaSpace::write(uint64_t iova, std::span<const std::byte> in, DmaFault* fault) const {
    return access(nullptr, true, iova, {const_cast<std::byte*>(in.data()), in.size()}, fault);
}

Result<void> DmaSpace::publish32(uint64_t iova, uint32_t value, DmaFault* fault) const {
    return publish(nullptr, iova, value, fault);
}

Result<void> DmaSpace::read(Reader& reader, uint64_t iova, std::span<std::byte> out, DmaFault* fault) const {
    return access(&reader, false, iova, out, fault);
}

Result<void> DmaSpace::write(Reader& reader, uint64_t iova, std::span<const std::byte> in, DmaFault* fault) const {
    return access(&reader, true, iova, {const_cast<std::byte*>(in.data()), in.size()}, fault);
}

Result<void> DmaSpace::publish32(Reader& reader, uint64_t iova, uint32_t value, DmaFault* fault) const {
    return publish(&reader, iova, value, fault);
}

const DmaSpace::WindowEntry* DmaSpace::find(uint64_t iova) const {
    const WindowEntry* hit = last_hit_.load(std::memory_order_relaxed);
    if (hit && iova - hit->first < hit->second.size) return hit;
    auto it = windows_.upper_bound(iova);
    if (it == windows_.begin()) return nullptr;
    --it;
    if (iova - it->first >= it->second.size) return nullptr;
    last_hit_.store(&*it, std::memory_order_relaxed);
    return &*it;
}

const DmaSpace::WindowEntry* DmaSpace::lookup(Reader* reader, uint64_t iova,
                                              std::shared_lock<std::shared_mutex>& lock) const {
    // Inside a reader's section a cached window stays mapped without the lock (an unmap
    // waits for the reader to leave); any other lookup holds the shared lock while it copies.
    const bool inside = reader && reader->inside();
    if (inside)
        if (const WindowEntry* e = reader->cached(iova)) return e;
    lock.lock();
    const WindowEntry* e = find(iova);
    if (e && inside) reader->remember(e);
    return e;
}

std::byte* DmaSpace::local(Reader& reader, uint64_t iova, uint64_t size, bool to_host) const {
    if (!reader.inside() || size == 0) return nullptr;
    std::shared_lock lock(mutex_, std::defer_lock);
    const WindowEntry* e = lookup(&reader, iova, lock);
    if (!e) return nullptr;
    const Window& w = e->second;
    const uint64_t off = iova - e->first;
    if (!w.local || w.size - off < size || !(to_host ? w.writable : w.readable)) return nullptr;
    return w.local + off;
}

Result<void> DmaSpace::publish(Reader* reader, uint64_t iova, uint32_t value, DmaFault* fault) const {
    if (iova % 4 == 0) {
        std::shared_lock lock(mutex_, std::defer_lock);
        if (const WindowEntry* e = lookup(reader, iova, lock)) {
            const Window& w = e->second;
            if (w.local && w.size - (iova - e->first) >= 4 && w.writable) {
                std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(w.local + (iova - e->first)))
                    .store(value, std::memory_order_release);
                return {};
            }
        }
    }
    // Anything else (a client-served window, a fault) takes the general path.
    return access(reader, true, iova, std::as_writable_bytes(std::span(&value, 1)), fault);
}

Result<void> DmaSpace::access(Reader* reader, bool to_host, uint64_t iova, std::span<std::byte> data,
                              DmaFault* fault) const {
    const char* verb = to_host ? "write to" : "read from";
    auto refuse = [&](uint64_t at, std::string why) {
        if (fault) fault->iova = at;
        return make_error(EFAULT, fmt::format("DMA fault: {} IOVA {:#x} {}", verb, at, why));
    };
    // A client round trip needs the server thread, which may be waiting in an unmap for this
    // reader to leave: the reader leaves for the trip and comes back after it.
    auto through_client = [&](uint64_t at, std::span<std::byte> piece, const char* without_client,
                              const char* context) -> Result<void> {
        const bool was_inside = reader && reader->inside();
        if (was_inside) reader->leave();
        ClientDmaAccess client;
        {
            std::shared_lock lock(mutex_);
            client = client_access_;
        }
        Result<void> r;
        if (!client) {
            r = refuse(at, without_client);
        } else if (r = client(to_host, at, piece); !r) {
            if (fault) fault->iova = at;
            r = r.error().with_context(fmt::format("DMA fault: {} IOVA {:#x}{}", verb, at, context));
        }
        if (was_inside) reader->enter();
        return r;
    };
    uint64_t done = 0;
    // An access may span neighbouring windows; each piece must be permitted.
    while (done < data.size()) {
        const uint64_t at = iova + done;
        if (at < iova) return refuse(at, "wraps the address space");
        std::shared_lock lock(mutex_, std::defer_lock);
        const WindowEntry* entry = lookup(reader, at, lock);
        if (!entry) {
            // No window: a card's stray DMA goes to the IOMMU all the same, and the client is
            // this card's IOMMU. QEMU's client translates it through the guest's IOMMU, which
            // blocks it and logs the fault there; vfioq's refuses what it never mapped.
            auto next = windows_.upper_bound(at);
            const uint64_t gap = next == windows_.end() ? data.size() - done : next->first - at;
            lock.unlock();
            const auto piece = data.subspan(done, std::min<uint64_t>(gap, data.size() - done));
            if (auto r = through_client(at, piece, "hits no mapped window", ", in no window, refused by the client");
                !r)
                return r;
            done += piece.size();
            continue;
        }
        const uint64_t base = entry->first;
        const Window& w = entry->second;
        if (to_host ? !w.writable : !w.readable)
            return refuse(at, fmt::format("is not permitted by its window at {:#x}", base));
        const uint64_t chunk = std::min<uint64_t>(data.size() - done, w.size - (at - base));
        auto piece = data.subspan(done, chunk);
        if (w.local) {
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
            if (lock.owns_lock()) lock.unlock();
            if (auto r = through_client(at, piece, "is in a window with no fd and no client to serve it",
                                        " through the client");
                !r)
                return r;
        }
        done += chunk;
    }
    return {};
}

}  // namespace vfioq::model
