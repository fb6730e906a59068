// SPDX-License-Identifier: MIT
// DmaContext: the IOVA space of one device, its buffers and its registration cache.
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>

#include "bus_address_map.hpp"
#include "dma_memory.hpp"
#include "host_protection.hpp"
#include "iova_allocator.hpp"
#include "last_range_hold.hpp"
#include "physical_pages.hpp"
#include "registration_cache.hpp"
#include "vfioq/dma.hpp"
#include "vfioq/log.hpp"

namespace vfioq {

std::string memlock_problem(uint64_t pinned, uint64_t extra, uint64_t limit, bool cap_ipc_lock) {
    if (cap_ipc_lock || limit == RLIM_INFINITY || pinned + extra <= limit) return {};
    return fmt::format("pinning {} more bytes for DMA would exceed RLIMIT_MEMLOCK ({} bytes, {} pinned already): "
                       "raise it (ulimit -l {} or more; LimitMEMLOCK= for a systemd service; memlock in "
                       "/etc/security/limits.conf) or run with CAP_IPC_LOCK",
                       extra, limit, pinned, (pinned + extra + 1023) / 1024);
}

namespace detail {

namespace {

bool has_cap_ipc_lock() {
    std::ifstream status("/proc/self/status");
    std::string line;
    while (std::getline(status, line))
        if (line.rfind("CapEff:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> 14) & 1;  // CAP_IPC_LOCK
    return false;
}

uint64_t memlock_limit() {
    rlimit rl{};
    if (::getrlimit(RLIMIT_MEMLOCK, &rl) != 0) return RLIM_INFINITY;
    return rl.rlim_cur;
}

}  // namespace

class DmaState final : public dma::RegistrationCache::Mapper {
public:
    DmaState(Transport& transport, std::string name, const DmaOptions& options)
        : transport_(&transport),
          name_(std::move(name)),
          options_(options),
          physical_(transport.dma_limits().physical_addresses),
          iova_(physical_ ? std::vector<IovaRange>{dma::BusAddressMap::range()} : usable_ranges(transport.dma_limits())),
          cache_(*this, budget(transport.dma_limits(), options),
                 static_cast<uint64_t>(::sysconf(_SC_PAGESIZE))) {}

    // A transport that reports no ranges (an old kernel) gets the 48 bits every IOMMU translates.
    static std::vector<IovaRange> usable_ranges(const DmaLimits& limits) {
        if (!limits.iova_ranges.empty()) return limits.iova_ranges;
        return {IovaRange{0, (uint64_t{1} << 48) - 1}};
    }

    static dma::RegistrationCache::Budget budget(const DmaLimits& limits, const DmaOptions& o) {
        dma::RegistrationCache::Budget b;
        // Leave room under the IOMMU's limit for buffers and rings.
        const uint64_t iommu = limits.max_mappings > 1024 ? limits.max_mappings - 1024 : limits.max_mappings / 2;
        b.max_mappings = std::min<uint64_t>(o.max_registered_mappings ? o.max_registered_mappings : 60000,
                                            std::max<uint64_t>(iommu, 1));
        b.max_bytes = o.max_registered_bytes ? o.max_registered_bytes : ~0ull;
        return b;
    }

    Result<DmaBuffer> allocate(const std::shared_ptr<DmaState>& self, size_t size) {
        // Without an IOMMU only a hugepage is contiguous beyond 4 KiB, and rings must be.
        const size_t hugepages_from = !options_.hugepages ? 0 : physical_ ? 4097 : dma::kHugePageSize;
        auto mem = dma::allocate_dma_memory(size, hugepages_from, "vfioq-dma");
        if (!mem) return mem.error().with_context(name_);
        std::lock_guard lock(mutex_);
        if (!transport_) return make_error(ENODEV, name_ + ": the device is closed");
        if (auto r = check_memlock(mem->mapped_size); !r) return r.error();
        const uint64_t align = mem->hugepages ? dma::kHugePageSize : 4096;
        auto iova = iova_.allocate(mem->mapped_size, align);
        if (!iova) return iova.error().with_context(fmt::format("{}: DMA buffer of {} bytes", name_, size));
        DmaMapping m{*iova, mem->mapped_size, mem->data, mem->fd.get(), 0, true, true};
        if (auto r = map_for_device(m); !r) {
            iova_.free(*iova, mem->mapped_size);
            return r.error().with_context(fmt::format("{}: DMA buffer of {} bytes", name_, size));
        }
        pinned_ += pinned_cost(mem->mapped_size);
        buffers_.emplace(reinterpret_cast<uintptr_t>(mem->data), BufferSpan{mem->size, *iova});
        buffer_bytes_ += mem->mapped_size;
        DmaBuffer b;
        b.owner_ = self;
        b.fd_ = std::move(mem->fd);
        b.data_ = std::exchange(mem->data, nullptr);
        b.size_ = mem->size;
        b.mapped_size_ = mem->mapped_size;
        b.iova_ = *iova;
        b.hugepages_ = mem->hugepages;
        return b;
    }

    void free_buffer(std::byte* data, uint64_t mapped_size, uint64_t iova) {
        std::lock_guard lock(mutex_);
        buffers_.erase(reinterpret_cast<uintptr_t>(data));
        buffer_bytes_ -= mapped_size;
        if (!transport_) return;
        if (auto r = unmap_for_device(iova, mapped_size); !r)
            log::logger<log::kDma>().error("{}: unmapping a DMA buffer: {}", name_, r.error().message);
        iova_.free(iova, mapped_size);
        pinned_ -= pinned_cost(mapped_size);
    }

    Result<Registration> register_memory(const std::shared_ptr<DmaState>& self, const void* p, size_t len) {
        Registration r;
        uint64_t iova = 0;
        if (last_.try_hold(p, len, iova)) {
            // No owner reference: the hold itself keeps this state alive (orphan_or_delete()).
            r.entry_ = last_hold_tag();
            r.addr_ = p;
            r.size_ = len;
            r.iova_ = iova;
            return r;
        }
        std::lock_guard lock(mutex_);
        if (!transport_) return make_error(ENODEV, name_ + ": the device is closed");
        auto e = cache_.acquire(p, len);
        if (!e) return e.error().with_context(name_);
        r.owner_ = self;
        r.entry_ = *e;
        r.addr_ = p;
        r.size_ = len;
        r.iova_ = (*e)->iova_of(p);
        keep_last(p, len);
        return r;
    }

    void release_registration(void* entry, const void* p, size_t len) {
        std::lock_guard lock(mutex_);
        if (transport_) cache_.release(static_cast<dma::RegistrationCache::Entry*>(entry), p, len);
    }

    // A Registration of the range kept as the last one carries this in place of a cache entry.
    [[nodiscard]] void* last_hold_tag() { return reinterpret_cast<void*>(reinterpret_cast<uintptr_t>(this) | 1); }
    static DmaState* of_last_hold_tag(void* entry) {
        const auto v = reinterpret_cast<uintptr_t>(entry);
        return (v & 1) != 0 ? reinterpret_cast<DmaState*>(v & ~uintptr_t{1}) : nullptr;
    }
    // Lets go of a hold on the last range; frees the state when it was the last thing keeping it.
    static void release_last_hold(DmaState* s) {
        if (s->last_.release()) delete s;
    }
    // The context's owners are gone: frees the state now, or at the last release of a hold on the last range.
    static void orphan_or_delete(DmaState* s) {
        if (s->last_.orphan()) delete s;
    }

    Result<void> unregister(const void* p, size_t len) {
        std::lock_guard lock(mutex_);
        if (!transport_) return make_error(ENODEV, name_ + ": the device is closed");
        // The context's own hold could keep a mapping merged with [p, p + len) cached: let go of it first.
        forget_last();
        if (auto r = cache_.unregister(p, len); !r) return r.error().with_context(name_);
        return {};
    }

    void flush() {
        std::lock_guard lock(mutex_);
        if (!transport_) return;
        forget_last();
        cache_.flush();
    }

    Result<uint64_t> translate(const void* p, size_t len, DeviceAccess access) {
        const auto a = reinterpret_cast<uintptr_t>(p);
        std::lock_guard lock(mutex_);
        // Memory is reachable while a registration names it: the context's own hold on the last
        // range does not count once the application holds it no more.
        if (overlaps_last(a, len) && last_.holds_now() == 0) forget_last();
        auto it = buffers_.upper_bound(a);
        if (it != buffers_.begin()) {
            --it;
            if (a - it->first < it->second.size && len <= it->second.size - (a - it->first))
                return it->second.iova + (a - it->first);
        }
        if (const auto* e = cache_.find_held(p, len)) {
            if (access == DeviceAccess::kWrites && !e->writable)
                return make_error(EACCES, fmt::format("{}: {} bytes at {} are registered read-only (the process "
                                                      "cannot write them), so the device may not write them",
                                                      name_, len, p));
            return e->iova_of(p);
        }
        const uintptr_t unheld = cache_.first_unheld(p, len);
        if (len != 0 && unheld != a)
            return make_error(EFAULT, fmt::format("{}: {} bytes at {}: byte {:#x} on is neither in a DMA buffer nor "
                                                  "in memory held registered (register it first)",
                                                  name_, len, p, unheld));
        return make_error(EFAULT, fmt::format("{}: {} bytes at {} are neither in a DMA buffer nor in registered "
                                              "memory (register it first)",
                                              name_, len, p));
    }

    DmaStats stats() {
        std::lock_guard lock(mutex_);
        const auto& c = cache_.stats();
        last_hits_ += last_.take_hits();
        return DmaStats{buffers_.size(), buffer_bytes_, c.mappings, c.bytes, c.hits - own_hits_ + last_hits_,
                        c.misses,        c.merges,      c.evictions};
    }

    void detach() {
        std::lock_guard lock(mutex_);
        if (!transport_) return;
        // Held or not, the last range is not handed out again.
        if (!forget_last()) last_.close();
        cache_.flush();
        transport_ = nullptr;
    }

    // Mapper: the registration cache maps application memory by address.
    Result<dma::HostProtection> protection(uintptr_t a, uintptr_t b) override { return dma::host_protection(a, b); }

    Result<uint64_t> map(uintptr_t vaddr, uint64_t size, bool writable) override {
        if (auto r = check_memlock(size); !r) return r.error();
        const uint64_t align = size >= dma::kHugePageSize ? dma::kHugePageSize : 4096;
        auto iova = iova_.allocate(size, align);
        if (!iova) return iova.error();
        DmaMapping m{*iova, size, reinterpret_cast<void*>(vaddr), -1, 0, true, writable};
        if (auto r = map_for_device(m); !r) {
            iova_.free(*iova, size);
            return r.error();
        }
        // A forked child must not take copies of pages the device writes.
        if (transport_->dma_limits().pins_memory) ::madvise(reinterpret_cast<void*>(vaddr), size, MADV_DONTFORK);
        pinned_ += pinned_cost(size);
        return *iova;
    }

    void unmap(uint64_t iova, uint64_t size) override {
        if (!transport_) return;
        if (auto r = unmap_for_device(iova, size); !r)
            log::logger<log::kDma>().error("{}: unmapping registered memory at IOVA {:#x}: {}", name_, iova,
                                           r.error().message);
        iova_.free(iova, size);
        pinned_ -= pinned_cost(size);
    }

    // The address the device is given for [iova, iova + len): the IOVA itself
    // behind an IOMMU; without one, the physical address, which must run
    // contiguously (rings and queues are one block to the device).
    Result<uint64_t> device_address(uint64_t iova, uint64_t len) const {
        if (!physical_) return iova;
        const auto run = bus_.translate(iova, len);
        if (run.address == 0)
            return make_error(EFAULT, fmt::format("IOVA {:#x} is not DMA memory of this device", iova));
        if (run.len < len)
            return make_error(EINVAL, fmt::format("the {} bytes at IOVA {:#x} are not physically contiguous, as "
                                                  "no-IOMMU mode needs for a ring or queue: reserve 2 MiB hugepages "
                                                  "(echo 64 > /proc/sys/vm/nr_hugepages)",
                                                  len, iova));
        return run.address;
    }

    const dma::BusAddressMap* bus_map() const { return physical_ ? &bus_ : nullptr; }

private:
    struct BufferSpan {
        uint64_t size;
        uint64_t iova;
    };

    // Behind an IOMMU the transport maps; without one the memory is locked
    // here and its physical pages recorded under the IOVA.
    Result<void> map_for_device(const DmaMapping& m) {
        if (!physical_) return transport_->dma_map(m);
        if (::mlock(m.vaddr, m.size) != 0)
            return make_error(errno, fmt::format("locking {} bytes for DMA by physical address failed: {}", m.size,
                                                 std::strerror(errno)));
        ::madvise(m.vaddr, m.size, MADV_DONTFORK);
        auto pages = dma::physical_pages(m.vaddr, m.size);
        if (!pages) {
            ::munlock(m.vaddr, m.size);
            return pages.error();
        }
        if (auto r = bus_.set(m.iova, *pages); !r) {
            ::munlock(m.vaddr, m.size);
            return r.error();
        }
        return {};
    }

    // Without an IOMMU registered memory stays locked: merged registrations
    // overlap, and mlock does not count, so an munlock could unpin pages that
    // another mapping still gives the device. A buffer's pages go with its munmap.
    Result<void> unmap_for_device(uint64_t iova, uint64_t size) {
        if (!physical_) return transport_->dma_unmap(iova, size);
        bus_.clear(iova, size);
        return {};
    }

    uint64_t pinned_cost(uint64_t size) const { return transport_ && transport_->dma_limits().pins_memory ? size : 0; }

    Result<void> check_memlock(uint64_t size) {
        if (!transport_->dma_limits().pins_memory) return {};
        if (!cap_checked_) {
            cap_ipc_lock_ = has_cap_ipc_lock();
            cap_checked_ = true;
        }
        auto problem = memlock_problem(pinned_, size, memlock_limit(), cap_ipc_lock_);
        if (!problem.empty()) return make_error(ENOMEM, name_ + ": " + problem);
        return {};
    }

    // The lock holder's side of the last range (last_range_hold.hpp). Registering the same range
    // twice running through the lock makes it the one kept: a run of registrations of one buffer
    // then takes no lock, and registrations that go round many buffers do not churn it.
    void keep_last(const void* p, size_t len) {
        last_hits_ += last_.take_hits();
        if (last_.addr() == p && last_.len() == len) return;  // kept already (a hit when a count was full)
        const bool twice = p == last_asked_ && len == last_asked_len_;
        last_asked_ = p;
        last_asked_len_ = len;
        if (!twice || !forget_last()) return;
        if (!last_.begin_change()) return;
        auto e = cache_.acquire(p, len);
        if (e) {
            ++own_hits_;  // the context's own hold is not the application's hit
            last_.end_change(p, len, (*e)->iova_of(p), *e);
        } else {
            last_.end_change(nullptr, 0, 0, nullptr);
        }
    }
    // Lets go of the context's hold on the last range; false while the application holds it.
    bool forget_last() {
        if (!last_.addr()) return true;
        if (!last_.begin_change()) return false;
        cache_.release(static_cast<dma::RegistrationCache::Entry*>(last_.entry()), last_.addr(), last_.len());
        last_.end_change(nullptr, 0, 0, nullptr);
        return true;
    }
    [[nodiscard]] bool overlaps_last(uintptr_t a, size_t len) const {
        const auto start = reinterpret_cast<uintptr_t>(last_.addr());
        return start != 0 && a < start + last_.len() && start < a + len;
    }

    mutable std::mutex mutex_;
    // Changed by a hit without the lock; its range by the lock holder alone.
    dma::LastRangeHold last_;
    const void* last_asked_ = nullptr;  // the range registered through the lock last
    size_t last_asked_len_ = 0;
    uint64_t own_hits_ = 0;   // cache hits that were the context's own hold on the last range
    uint64_t last_hits_ = 0;  // hits on the last range, counted out of its word
    Transport* transport_;
    std::string name_;
    DmaOptions options_;
    bool physical_;
    dma::BusAddressMap bus_;  // without an IOMMU: IOVA -> physical
    dma::IovaAllocator iova_;
    dma::RegistrationCache cache_;
    std::map<uintptr_t, BufferSpan> buffers_;  // by address
    uint64_t buffer_bytes_ = 0;
    uint64_t pinned_ = 0;
    bool cap_checked_ = false;
    bool cap_ipc_lock_ = false;
};

}  // namespace detail

// --- DmaBuffer ---

DmaBuffer::DmaBuffer(DmaBuffer&& o) noexcept { *this = std::move(o); }

DmaBuffer& DmaBuffer::operator=(DmaBuffer&& o) noexcept {
    if (this != &o) {
        release();
        owner_ = std::move(o.owner_);
        fd_ = std::move(o.fd_);
        data_ = std::exchange(o.data_, nullptr);
        size_ = std::exchange(o.size_, 0);
        mapped_size_ = std::exchange(o.mapped_size_, 0);
        iova_ = std::exchange(o.iova_, 0);
        hugepages_ = std::exchange(o.hugepages_, false);
    }
    return *this;
}

DmaBuffer::~DmaBuffer() { release(); }

void DmaBuffer::release() {
    if (!data_) return;
    if (owner_) owner_->free_buffer(data_, mapped_size_, iova_);
    ::munmap(data_, mapped_size_);
    data_ = nullptr;
    owner_.reset();
    fd_.reset();
}

// --- Registration ---

Registration::Registration(Registration&& o) noexcept { *this = std::move(o); }

Registration& Registration::operator=(Registration&& o) noexcept {
    if (this != &o) {
        release();
        owner_ = std::move(o.owner_);
        entry_ = std::exchange(o.entry_, nullptr);
        addr_ = std::exchange(o.addr_, nullptr);
        size_ = std::exchange(o.size_, 0);
        iova_ = std::exchange(o.iova_, 0);
    }
    return *this;
}

Registration::~Registration() { release(); }

void Registration::release() {
    if (auto* last = detail::DmaState::of_last_hold_tag(entry_))
        detail::DmaState::release_last_hold(last);
    else if (entry_ && owner_)
        owner_->release_registration(entry_, addr_, size_);
    entry_ = nullptr;
    owner_.reset();
}

// --- DmaContext ---

DmaContext::DmaContext(Transport& transport, std::string device_name, const DmaOptions& options)
    : state_(new detail::DmaState(transport, std::move(device_name), options), detail::DmaState::orphan_or_delete) {}

DmaContext::~DmaContext() { detach(); }

Result<DmaBuffer> DmaContext::allocate(size_t size) { return state_->allocate(state_, size); }
Result<Registration> DmaContext::register_memory(const void* p, size_t len) {
    return state_->register_memory(state_, p, len);
}
Result<void> DmaContext::unregister(const void* p, size_t len) { return state_->unregister(p, len); }
void DmaContext::flush() { state_->flush(); }
Result<uint64_t> DmaContext::translate(const void* p, size_t len, DeviceAccess access) const {
    return state_->translate(p, len, access);
}
Result<uint64_t> DmaContext::device_address(uint64_t iova, uint64_t len) const {
    return state_->device_address(iova, len);
}
bool DmaContext::physical_addresses() const { return state_->bus_map() != nullptr; }
const dma::BusAddressMap* DmaContext::bus_map() const { return state_->bus_map(); }
DmaStats DmaContext::stats() const { return state_->stats(); }
void DmaContext::detach() { state_->detach(); }

}  // namespace vfioq
