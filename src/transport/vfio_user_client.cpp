// SPDX-License-Identifier: MIT
// vfio-user client. Requests go out from the caller's thread; one receiver
// thread reads the socket, hands each reply to the request waiting for its
// message id and serves the server's own DMA_READ / DMA_WRITE commands, which
// may arrive at any time, also while a request waits for its reply.
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <thread>

#include "vfio_user/device_access.hpp"
#include "vfio_user/message_socket.hpp"
#include "vfioq/log.hpp"
#include "vfioq/vfio_user.hpp"

namespace vfioq {
namespace {

using namespace vfio_user;

std::span<const std::byte> bytes_of(const void* p, size_t n) { return {static_cast<const std::byte*>(p), n}; }

// Copies between the socket's buffers and memory the application gave for DMA through the kernel, which
// answers EFAULT for memory that has since been unmapped or protected, where a plain copy would crash the
// process. Without process_vm_readv (a seccomp filter may refuse it) the copy is a plain one.
bool copy_checked(void* to, const void* from, size_t n, bool into_window) {
    iovec local{into_window ? const_cast<void*>(from) : to, n};
    iovec remote{into_window ? to : const_cast<void*>(from), n};
    const ssize_t done = into_window ? ::process_vm_writev(::getpid(), &local, 1, &remote, 1, 0)
                                     : ::process_vm_readv(::getpid(), &local, 1, &remote, 1, 0);
    if (done == static_cast<ssize_t>(n)) return true;
    if (done < 0 && (errno == ENOSYS || errno == EPERM)) {
        std::memcpy(to, from, n);
        return true;
    }
    return false;
}

class VfioUserClient final : public Transport {
public:
    VfioUserClient(UniqueFd socket, std::string name, const VfioUserOptions& options)
        : socket_(std::move(socket)), name_(std::move(name)), options_(options) {}
    ~VfioUserClient() override;

    Result<void> start();

    const std::string& name() const override { return name_; }
    const DeviceInfo& device_info() const override { return device_info_; }
    Result<RegionInfo> region_info(uint32_t index) override;
    Result<IrqInfo> irq_info(uint32_t index) override;
    Result<void> region_read(uint32_t index, uint64_t offset, std::span<std::byte> data) override;
    Result<void> region_write(uint32_t index, uint64_t offset, std::span<const std::byte> data) override;
    Result<RegionMapping> map_region(uint32_t index, const MmapArea& area) override;
    Result<void> set_irq_eventfds(uint32_t index, uint32_t start, std::span<const int> eventfds) override;
    Result<void> disable_irqs(uint32_t index) override;
    const DmaLimits& dma_limits() const override { return dma_limits_; }
    Result<void> dma_map(const DmaMapping& mapping) override;
    Result<void> dma_unmap(uint64_t iova, uint64_t size) override;
    Result<void> reset() override;

private:
    struct Pending {
        Command command;
        std::optional<Message> reply;
        std::optional<Error> failure;  // the server broke the protocol answering it
    };
    struct CachedRegion {
        RegionInfo info;
        uint64_t mmap_offset = 0;
        std::shared_ptr<UniqueFd> fd;
    };
    struct ServedWindow {
        uint64_t size;
        std::byte* vaddr;
        bool readable;
        bool writable;
    };

    Error error(int code, const std::string& message) const { return make_error(code, name_ + ": " + message); }
    bool connection_lost() {
        std::lock_guard lock(mutex_);
        return dead_.has_value();
    }

    Result<void> negotiate();
    Result<Message> request(Command command, std::span<const std::byte> payload, std::span<const int> fds = {},
                            std::optional<std::chrono::milliseconds> timeout = std::nullopt);
    Result<CachedRegion*> cached_region(uint32_t index);
    Result<void> check_range(const CachedRegion& region, uint64_t offset, size_t size, const char* verb) const;
    Result<void> send_irq_set(uint32_t index, uint32_t start, uint32_t count, std::span<const int> fds);

    void receive_loop();
    void serve_dma(Message& msg);
    void fail_all(const Error& why);
    void on_connection_lost(std::function<void(const Error&)> callback) override {
        std::lock_guard lock(lost_mutex_);
        on_lost_ = std::move(callback);
    }

    MessageSocket socket_;
    const std::string name_;
    const VfioUserOptions options_;
    Capabilities server_caps_;
    DeviceInfo device_info_;
    DmaLimits dma_limits_;

    std::mutex send_mutex_;
    std::mutex mutex_;  // pending_, dead_, next_id_
    std::condition_variable cv_;
    std::map<uint16_t, Pending*> pending_;
    std::set<uint16_t> abandoned_;  // requests that timed out: a late reply to one is no protocol error
    std::optional<Error> dead_;
    uint16_t next_id_ = 1;
    std::thread receiver_;
    std::atomic<bool> closing_{false};  // our own shutdown: the end of the stream is expected
    std::mutex lost_mutex_;              // held while on_lost_ runs
    std::function<void(const Error&)> on_lost_;

    std::mutex regions_mutex_;
    std::map<uint32_t, CachedRegion> regions_;

    std::mutex windows_mutex_;  // held while serving an access so unmap waits for it
    std::map<uint64_t, ServedWindow> served_windows_;
    std::map<uint64_t, uint64_t> mapped_;  // every window we mapped: iova -> size
};

VfioUserClient::~VfioUserClient() {
    // Closing the connection tells the server we are gone; it resets the device.
    closing_ = true;
    socket_.shutdown();
    if (receiver_.joinable()) receiver_.join();
}

Result<void> VfioUserClient::start() {
    if (auto r = negotiate(); !r) return r;
    receiver_ = std::thread([this] { receive_loop(); });

    DeviceInfoPayload req{sizeof(DeviceInfoPayload), 0, 0, 0};
    auto reply = request(Command::kDeviceGetInfo, bytes_of(&req, sizeof(req)));
    if (!reply) return reply.error();
    auto info = read_struct<DeviceInfoPayload>(reply->payload);
    if (!info) return error(EPROTO, "DEVICE_GET_INFO reply is truncated");
    device_info_.is_pci = info->flags & VFIO_DEVICE_FLAGS_PCI;
    device_info_.can_reset = info->flags & VFIO_DEVICE_FLAGS_RESET;
    device_info_.num_regions = info->num_regions;
    device_info_.num_irqs = info->num_irqs;
    if (!device_info_.is_pci) return error(ENOTSUP, "the server's device is not a PCI device");
    if (info->num_regions > 64 || info->num_irqs > 64)
        return error(EPROTO, fmt::format("DEVICE_GET_INFO reports {} regions and {} IRQ types, implausibly many",
                                         info->num_regions, info->num_irqs));
    return {};
}

Result<void> VfioUserClient::negotiate() {
    Capabilities ours;
    ours.max_msg_fds = kMaxMsgFds;
    ours.max_data_xfer_size = kMaxDataXferSize;
    std::vector<std::byte> payload;
    append_struct(payload, VersionPayload{kVersionMajor, kVersionMinor});
    const std::string json = capabilities_to_json(ours);
    auto json_bytes = bytes_of(json.c_str(), json.size() + 1);
    payload.insert(payload.end(), json_bytes.begin(), json_bytes.end());
    const uint16_t id = 0;
    if (auto r = socket_.send(Header{id, static_cast<uint16_t>(Command::kVersion), 0, kFlagTypeCommand, 0}, payload);
        !r)
        return r.error().with_context(name_ + ": sending VERSION");
    auto reply = socket_.receive(options_.reply_timeout);
    if (!reply) return reply.error().with_context(name_ + ": waiting for the VERSION reply");
    if (!reply->is_reply() || reply->header.command != static_cast<uint16_t>(Command::kVersion) ||
        reply->header.msg_id != id)
        return error(EPROTO, fmt::format("expected the VERSION reply, got {} (id {}, flags {:#x})",
                                         command_name(reply->header.command), reply->header.msg_id,
                                         reply->header.flags));
    if (reply->is_error())
        return error(reply->header.error_reply ? static_cast<int>(reply->header.error_reply) : EPROTO,
                     fmt::format("the server refused version {}.{}: {}", kVersionMajor, kVersionMinor,
                                 std::strerror(reply->header.error_reply)));
    auto version = read_struct<VersionPayload>(reply->payload);
    if (!version) return error(EPROTO, "VERSION reply is truncated");
    if (version->major != kVersionMajor || version->minor > kVersionMinor)
        return error(EPROTO, fmt::format("the server answered version {}.{} to our {}.{}", version->major,
                                         version->minor, kVersionMajor, kVersionMinor));
    if (auto e = parse_capabilities(std::span(reply->payload).subspan(sizeof(VersionPayload)), server_caps_))
        return error(EPROTO, "VERSION reply: " + *e);
    if (server_caps_.twin_socket_fd_index)
        return error(EPROTO, "the server set up a twin socket that was not asked for");
    if (server_caps_.max_data_xfer_size == 0) return error(EPROTO, "the server's max_data_xfer_size is 0");
    dma_limits_.iova_ranges = {IovaRange{0, ~0ull}};
    dma_limits_.page_sizes = server_caps_.pgsizes;
    dma_limits_.max_mappings = server_caps_.max_dma_maps;
    log::logger<log::kVfioUser>().debug("{}: negotiated version {}.{}, max_data_xfer_size {}, max_msg_fds {}", name_,
                                        version->major, version->minor, server_caps_.max_data_xfer_size,
                                        server_caps_.max_msg_fds);
    return {};
}

Result<Message> VfioUserClient::request(Command command, std::span<const std::byte> payload,
                                        std::span<const int> fds, std::optional<std::chrono::milliseconds> timeout) {
    const char* what = command_name(static_cast<uint16_t>(command));
    Pending pending{command};
    uint16_t id;
    {
        std::lock_guard lock(mutex_);
        if (dead_) return error(dead_->code, fmt::format("cannot send {}: {}", what, dead_->message));
        do {
            id = next_id_++;
        } while (pending_.count(id) != 0);
        abandoned_.erase(id);
        pending_[id] = &pending;
    }
    Result<void> sent;
    {
        std::lock_guard lock(send_mutex_);
        sent = socket_.send(Header{id, static_cast<uint16_t>(command), 0, kFlagTypeCommand, 0}, payload, fds);
    }
    std::unique_lock lock(mutex_);
    if (!sent) {
        pending_.erase(id);
        // A server that has gone can show on a send before the receiver reads the end of the stream. Wait for
        // the receiver to see it, so that the loss is recorded, and reported, from one place.
        if (sent.error().code == ECONNRESET)
            cv_.wait_for(lock, options_.reply_timeout, [&] { return dead_.has_value(); });
        if (dead_) return error(dead_->code, fmt::format("cannot send {}: {}", what, dead_->message));
        return error(sent.error().code, fmt::format("sending {} failed: {}", what, sent.error().message));
    }
    const auto wait = timeout.value_or(options_.reply_timeout);
    cv_.wait_for(lock, wait,
                 [&] { return pending.reply.has_value() || pending.failure.has_value() || dead_.has_value(); });
    pending_.erase(id);
    if (pending.failure) return error(pending.failure->code, pending.failure->message);
    if (!pending.reply) {
        if (dead_) return error(dead_->code, fmt::format("no reply to {} (id {}): {}", what, id, dead_->message));
        // Bounded: ids are 16 bits, and a reused id leaves the set.
        abandoned_.insert(id);
        return error(ETIMEDOUT, fmt::format("no reply to {} (id {}) within {} ms", what, id, wait.count()));
    }
    Message reply = std::move(*pending.reply);
    lock.unlock();
    // Only a region's description may come with a file descriptor (the one to map it by).
    if (!reply.fds.empty() && command != Command::kDeviceGetRegionInfo) {
        log::logger<log::kVfioUser>().warn(
            "{}: the reply to {} (id {}) carried {} file descriptor(s) it should not; "
            "closed them",
            name_, what, id, reply.fds.size());
        reply.fds.clear();
    }
    if (reply.header.command != static_cast<uint16_t>(command))
        return error(EPROTO, fmt::format("the reply to {} (id {}) names command {}", what, id,
                                         command_name(reply.header.command)));
    if (reply.is_error()) {
        const int code = reply.header.error_reply ? static_cast<int>(reply.header.error_reply) : EIO;
        return error(code, fmt::format("the server refused {}: {}", what, std::strerror(code)));
    }
    return reply;
}

void VfioUserClient::receive_loop() {
    auto* logger = &log::logger<log::kVfioUser>();
    for (;;) {
        auto msg = socket_.receive(std::chrono::milliseconds(-1));
        if (!msg) {
            if (closing_) return;
            fail_all(make_error(msg.error().code == ETIMEDOUT ? EIO : ECONNRESET,
                                "connection to the server lost: " + msg.error().message));
            return;
        }
        if (!msg->is_reply()) {
            serve_dma(*msg);
            continue;
        }
        std::lock_guard lock(mutex_);
        const uint16_t id = msg->header.msg_id;
        auto it = pending_.find(id);
        if (it != pending_.end()) {
            it->second->reply = std::move(*msg);
            cv_.notify_all();
            continue;
        }
        if (abandoned_.erase(id) != 0) {
            logger->warn("{}: dropped a late reply with id {} ({}): its request had timed out", name_, id,
                         command_name(msg->header.command));
            continue;
        }
        // An id we never gave out: the reply belongs to whichever request of its command waits, and that
        // request would wait out its whole timeout. It fails now, named.
        bool claimed = false;
        for (auto& [waiting_id, pending] : pending_) {
            if (static_cast<uint16_t>(pending->command) != msg->header.command) continue;
            pending->failure = make_error(EPROTO, fmt::format("the server answered {} (id {}) with message id {}, "
                                                              "which no request of ours has",
                                                              command_name(msg->header.command), waiting_id, id));
            claimed = true;
        }
        if (claimed) {
            cv_.notify_all();
        } else {
            logger->warn("{}: dropped a reply with id {} ({}) that answers no request in flight", name_, id,
                         command_name(msg->header.command));
        }
    }
}

void VfioUserClient::fail_all(const Error& why) {
    log::logger<log::kVfioUser>().error("{}: {}", name_, why.message);
    // A server that broke the framing is still connected: shutting the socket tells it we are gone, so that it
    // lets go of our DMA windows as a closed connection asks.
    socket_.shutdown();
    {
        std::lock_guard lock(mutex_);
        dead_ = why;
        cv_.notify_all();
    }
    std::lock_guard lock(lost_mutex_);
    if (on_lost_) on_lost_(why);
}

void VfioUserClient::serve_dma(Message& msg) {
    auto* logger = &log::logger<log::kVfioUser>();
    const Header& h = msg.header;
    const auto command = static_cast<Command>(h.command);
    auto refuse = [&](int code, const std::string& why) {
        logger->error("{}: refused the server's {} (id {}): {}", name_, command_name(h.command), h.msg_id, why);
        if (!msg.wants_reply()) return;
        std::lock_guard lock(send_mutex_);
        (void)socket_.send(Header{h.msg_id, h.command, 0, kFlagTypeReply | kFlagError, static_cast<uint32_t>(code)},
                           {});
    };
    if (command != Command::kDmaRead && command != Command::kDmaWrite)
        return refuse(ENOSYS, "a client serves only DMA_READ and DMA_WRITE");
    if (!msg.fds.empty() || msg.fds_truncated) return refuse(EINVAL, "unexpected file descriptors");
    auto req = read_struct<DmaAccessPayload>(msg.payload);
    if (!req) return refuse(EINVAL, fmt::format("payload of {} bytes is truncated", msg.payload.size()));
    if (req->count > kMaxDataXferSize)
        return refuse(E2BIG, fmt::format("{} bytes exceed our max_data_xfer_size", req->count));
    const bool to_host = command == Command::kDmaWrite;
    if (to_host && msg.payload.size() != sizeof(DmaAccessPayload) + req->count)
        return refuse(EINVAL, fmt::format("count {} does not match {} data bytes", req->count,
                                          msg.payload.size() - sizeof(DmaAccessPayload)));
    if (!to_host && msg.payload.size() != sizeof(DmaAccessPayload))
        return refuse(EINVAL, "DMA_READ carries data");

    std::vector<std::byte> reply;
    append_struct(reply, *req);
    std::lock_guard windows_lock(windows_mutex_);
    auto it = served_windows_.upper_bound(req->address);
    const ServedWindow* w = nullptr;
    if (it != served_windows_.begin()) {
        --it;
        if (req->address - it->first < it->second.size && req->count <= it->second.size - (req->address - it->first))
            w = &it->second;
    }
    if (w == nullptr || req->count == 0)
        return refuse(EFAULT, fmt::format("[{:#x}, +{:#x}) is not inside one DMA window", req->address,
                                          req->count));
    if (to_host ? !w->writable : !w->readable)
        return refuse(EFAULT, fmt::format("IOVA {:#x} is not {} by the device", req->address,
                                          to_host ? "writable" : "readable"));
    std::byte* p = w->vaddr + (req->address - it->first);
    bool copied;
    {
        [[maybe_unused]] const DeviceAccessScope device_access;
        if (to_host) {
            copied = copy_checked(p, msg.payload.data() + sizeof(DmaAccessPayload), req->count, true);
        } else {
            reply.resize(sizeof(DmaAccessPayload) + req->count);
            copied = copy_checked(reply.data() + sizeof(DmaAccessPayload), p, req->count, false);
        }
    }
    if (!copied)
        return refuse(EFAULT, fmt::format("the memory behind IOVA {:#x} ({} bytes at {}) cannot be {} by the "
                                          "process: unmapped or protected after it was mapped for DMA",
                                          req->address, req->count, static_cast<void*>(p),
                                          to_host ? "written" : "read"));
    if (!msg.wants_reply()) return;
    std::lock_guard lock(send_mutex_);
    if (auto r = socket_.send(Header{h.msg_id, h.command, 0, kFlagTypeReply, 0}, reply); !r)
        logger->error("{}: replying to the server's {} failed: {}", name_, command_name(h.command),
                      r.error().message);
}

Result<VfioUserClient::CachedRegion*> VfioUserClient::cached_region(uint32_t index) {
    {
        std::lock_guard lock(regions_mutex_);
        auto it = regions_.find(index);
        if (it != regions_.end()) return &it->second;
    }
    if (index >= device_info_.num_regions)
        return error(EINVAL, fmt::format("region index {} is out of range (the device has {} regions)", index,
                                         device_info_.num_regions));
    // Ask with room for the fixed part only; the reply's argsz says how much the
    // capabilities need, and a second request fetches them.
    uint32_t argsz = sizeof(RegionInfoPayload);
    Message reply;
    for (int attempt = 0;; ++attempt) {
        RegionInfoPayload req{argsz, 0, index, 0, 0, 0};
        auto r = request(Command::kDeviceGetRegionInfo, bytes_of(&req, sizeof(req)));
        if (!r) return r.error();
        reply = std::move(*r);
        auto info = read_struct<RegionInfoPayload>(reply.payload);
        if (!info) return error(EPROTO, fmt::format("GET_REGION_INFO reply for {} is truncated", region_name(index)));
        if (info->index != index)
            return error(EPROTO, fmt::format("GET_REGION_INFO for index {} answered index {}", index, info->index));
        if (info->argsz <= argsz || reply.payload.size() >= info->argsz) break;
        if (attempt == 1 || info->argsz > 65536)
            return error(EPROTO, fmt::format("GET_REGION_INFO for {} keeps asking for more room (argsz {})",
                                             region_name(index), info->argsz));
        argsz = info->argsz;
    }
    auto info = *read_struct<RegionInfoPayload>(reply.payload);
    CachedRegion region;
    region.info.index = index;
    region.info.size = info.size;
    region.info.readable = info.flags & VFIO_REGION_INFO_FLAG_READ;
    region.info.writable = info.flags & VFIO_REGION_INFO_FLAG_WRITE;
    region.mmap_offset = info.offset;
    const bool mmap_flag = info.flags & VFIO_REGION_INFO_FLAG_MMAP;
    if (reply.fds.size() > (mmap_flag ? 1u : 0u)) {
        log::logger<log::kVfioUser>().warn(
            "{}: the description of {} carried {} file descriptor(s) where it may carry "
            "{}; closed the extra ones",
            name_, region_name(index), reply.fds.size(), mmap_flag ? 1 : 0);
        reply.fds.resize(mmap_flag ? 1 : 0);
    }
    if (mmap_flag && !reply.fds.empty()) {
        region.fd = std::make_shared<UniqueFd>(std::move(reply.fds[0]));
        region.info.mappable = true;
    } else if (mmap_flag) {
        log::logger<log::kVfioUser>().warn("{}: {} is mappable but came without a file descriptor; using messages",
                                           name_, region_name(index));
    }

    // Walk the capability chain, trusting no offset the server gave.
    bool sparse = false;
    if ((info.flags & VFIO_REGION_INFO_FLAG_CAPS) && info.cap_offset != 0) {
        const std::span<const std::byte> p = reply.payload;
        uint32_t at = info.cap_offset;
        for (int hops = 0; at != 0; ++hops) {
            if (hops >= 16 || at < sizeof(RegionInfoPayload) || at % 4 != 0)
                return error(EPROTO, fmt::format("{}: region capability chain is malformed (offset {})",
                                                 region_name(index), at));
            auto cap = read_struct<CapHeader>(p, at);
            if (!cap)
                return error(EPROTO, fmt::format("{}: region capability at offset {} lies outside the reply",
                                                 region_name(index), at));
            if (cap->id == VFIO_REGION_INFO_CAP_SPARSE_MMAP) {
                auto hdr = read_struct<SparseMmapHeader>(p, at + sizeof(CapHeader));
                if (!hdr || hdr->nr_areas > (p.size() - at - 16) / sizeof(SparseMmapArea))
                    return error(EPROTO, fmt::format("{}: sparse mmap capability is truncated", region_name(index)));
                sparse = true;
                for (uint32_t i = 0; i < hdr->nr_areas; ++i) {
                    auto area = *read_struct<SparseMmapArea>(p, at + 16 + i * sizeof(SparseMmapArea));
                    if (area.size == 0) continue;
                    if (area.offset > info.size || area.size > info.size - area.offset)
                        return error(EPROTO, fmt::format("{}: sparse mmap area [{:#x}, +{:#x}) lies outside the "
                                                         "region of {:#x} bytes",
                                                         region_name(index), area.offset, area.size, info.size));
                    region.info.mmap_areas.push_back({area.offset, area.size});
                }
            }
            if (cap->next != 0 && cap->next <= at)
                return error(EPROTO, fmt::format("{}: region capability chain loops back", region_name(index)));
            at = cap->next;
        }
    }
    if (region.info.mappable && !sparse && info.size != 0) region.info.mmap_areas.push_back({0, info.size});
    if (!region.info.mappable) region.info.mmap_areas.clear();

    std::lock_guard lock(regions_mutex_);
    auto [it, inserted] = regions_.emplace(index, std::move(region));
    return &it->second;
}

Result<RegionInfo> VfioUserClient::region_info(uint32_t index) {
    auto region = cached_region(index);
    if (!region) return region.error();
    return (*region)->info;
}

Result<IrqInfo> VfioUserClient::irq_info(uint32_t index) {
    if (index >= device_info_.num_irqs)
        return error(EINVAL, fmt::format("IRQ index {} is out of range (the device has {} IRQ types)", index,
                                         device_info_.num_irqs));
    IrqInfoPayload req{sizeof(IrqInfoPayload), 0, index, 0};
    auto reply = request(Command::kDeviceGetIrqInfo, bytes_of(&req, sizeof(req)));
    if (!reply) return reply.error();
    auto info = read_struct<IrqInfoPayload>(reply->payload);
    if (!info) return error(EPROTO, "GET_IRQ_INFO reply is truncated");
    if (info->index != index)
        return error(EPROTO, fmt::format("GET_IRQ_INFO for index {} answered index {}", index, info->index));
    return IrqInfo{index, info->count, (info->flags & VFIO_IRQ_INFO_EVENTFD) != 0,
                   (info->flags & VFIO_IRQ_INFO_MASKABLE) != 0, (info->flags & VFIO_IRQ_INFO_AUTOMASKED) != 0,
                   (info->flags & VFIO_IRQ_INFO_NORESIZE) != 0};
}

Result<void> VfioUserClient::check_range(const CachedRegion& region, uint64_t offset, size_t size,
                                         const char* verb) const {
    const RegionInfo& info = region.info;
    if (size == 0) return error(EINVAL, fmt::format("{} of 0 bytes at {:#x} in {}", verb, offset,
                                                    region_name(info.index)));
    if (offset >= info.size || size > info.size - offset)
        return error(EINVAL, fmt::format("{} of {} bytes at {:#x} is outside {} ({:#x} bytes)", verb, size, offset,
                                         region_name(info.index), info.size));
    return {};
}

Result<void> VfioUserClient::region_read(uint32_t index, uint64_t offset, std::span<std::byte> data) {
    auto region = cached_region(index);
    if (!region) return region.error();
    if (auto r = check_range(**region, offset, data.size(), "read"); !r) return r;
    const uint64_t chunk = std::min<uint64_t>(server_caps_.max_data_xfer_size, kMaxDataXferSize);
    for (uint64_t done = 0; done < data.size(); done += chunk) {
        const auto n = static_cast<uint32_t>(std::min<uint64_t>(chunk, data.size() - done));
        RegionAccessPayload req{offset + done, index, n};
        auto reply = request(Command::kRegionRead, bytes_of(&req, sizeof(req)));
        if (!reply)
            return reply.error().with_context(fmt::format("reading {} bytes at {:#x} of {}", n, offset + done,
                                                          region_name(index)));
        auto echo = read_struct<RegionAccessPayload>(reply->payload);
        if (!echo || echo->region != index || echo->offset != offset + done || echo->count != n ||
            reply->payload.size() != sizeof(RegionAccessPayload) + n)
            return error(EPROTO, fmt::format("malformed REGION_READ reply for {} bytes at {:#x} of {}", n,
                                             offset + done, region_name(index)));
        std::memcpy(data.data() + done, reply->payload.data() + sizeof(RegionAccessPayload), n);
    }
    return {};
}

Result<void> VfioUserClient::region_write(uint32_t index, uint64_t offset, std::span<const std::byte> data) {
    auto region = cached_region(index);
    if (!region) return region.error();
    if (auto r = check_range(**region, offset, data.size(), "write"); !r) return r;
    const uint64_t chunk = std::min<uint64_t>(server_caps_.max_data_xfer_size, kMaxDataXferSize);
    std::vector<std::byte> payload;
    for (uint64_t done = 0; done < data.size(); done += chunk) {
        const auto n = static_cast<uint32_t>(std::min<uint64_t>(chunk, data.size() - done));
        payload.clear();
        append_struct(payload, RegionAccessPayload{offset + done, index, n});
        payload.insert(payload.end(), data.begin() + static_cast<ptrdiff_t>(done),
                       data.begin() + static_cast<ptrdiff_t>(done + n));
        auto reply = request(Command::kRegionWrite, payload);
        if (!reply)
            return reply.error().with_context(fmt::format("writing {} bytes at {:#x} of {}", n, offset + done,
                                                          region_name(index)));
        auto echo = read_struct<RegionAccessPayload>(reply->payload);
        if (!echo || echo->count != n)
            return error(EPROTO, fmt::format("malformed REGION_WRITE reply for {} bytes at {:#x} of {}", n,
                                             offset + done, region_name(index)));
    }
    return {};
}

Result<RegionMapping> VfioUserClient::map_region(uint32_t index, const MmapArea& area) {
    auto region = cached_region(index);
    if (!region) return region.error();
    const CachedRegion& r = **region;
    bool offered = false;
    for (const auto& a : r.info.mmap_areas) offered |= area.offset >= a.offset && area.size <= a.size &&
                                                       area.offset - a.offset <= a.size - area.size;
    if (!r.info.mappable || !offered || area.size == 0)
        return error(ENOTSUP, fmt::format("{} offers no mapping of [{:#x}, +{:#x})", region_name(index),
                                          area.offset, area.size));
    const int prot = (r.info.readable ? PROT_READ : 0) | (r.info.writable ? PROT_WRITE : 0);
    void* p = ::mmap(nullptr, area.size, prot, MAP_SHARED, r.fd->get(),
                     static_cast<off_t>(r.mmap_offset + area.offset));
    if (p == MAP_FAILED)
        return error(errno, fmt::format("mapping [{:#x}, +{:#x}) of {} failed: {}", area.offset, area.size,
                                        region_name(index), std::strerror(errno)));
    return RegionMapping(p, area.size, area.offset);
}

Result<void> VfioUserClient::send_irq_set(uint32_t index, uint32_t start, uint32_t count, std::span<const int> fds) {
    IrqSetPayload req{sizeof(IrqSetPayload), VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, index, start,
                      count};
    auto reply = request(Command::kDeviceSetIrqs, bytes_of(&req, sizeof(req)), fds);
    if (!reply)
        return reply.error().with_context(fmt::format("{} vectors {}..{}", irq_name(index), start, start + count - 1));
    return {};
}

Result<void> VfioUserClient::set_irq_eventfds(uint32_t index, uint32_t start, std::span<const int> eventfds) {
    // Runs of assigned vectors go as eventfds (at most max_msg_fds a message);
    // runs of -1 as a DATA_EVENTFD message without fds, which unassigns them.
    const size_t per_message = std::max<uint32_t>(1, std::min<uint32_t>(server_caps_.max_msg_fds, kMaxMsgFds));
    size_t i = 0;
    while (i < eventfds.size()) {
        const bool assign = eventfds[i] >= 0;
        size_t j = i;
        while (j < eventfds.size() && (eventfds[j] >= 0) == assign && (!assign || j - i < per_message)) ++j;
        const auto vector = static_cast<uint32_t>(start + i);
        const auto count = static_cast<uint32_t>(j - i);
        if (auto r = send_irq_set(index, vector, count, assign ? eventfds.subspan(i, count) : std::span<const int>{});
            !r)
            return r;
        i = j;
    }
    return {};
}

Result<void> VfioUserClient::disable_irqs(uint32_t index) {
    IrqSetPayload req{sizeof(IrqSetPayload), VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, index, 0, 0};
    auto reply = request(Command::kDeviceSetIrqs, bytes_of(&req, sizeof(req)));
    if (!reply) return reply.error().with_context(fmt::format("disabling {}", irq_name(index)));
    return {};
}

Result<void> VfioUserClient::dma_map(const DmaMapping& m) {
    if (m.size == 0 || m.iova + m.size < m.iova)
        return error(EINVAL, fmt::format("DMA window at IOVA {:#x} of {:#x} bytes is empty or wraps", m.iova, m.size));
    if (m.fd < 0 && m.vaddr == nullptr)
        return error(EINVAL, fmt::format("DMA window at IOVA {:#x} has neither an fd nor an address", m.iova));
    const uint32_t flags = (m.readable ? kDmaFlagReadable : 0) | (m.writable ? kDmaFlagWritable : 0);
    DmaMapPayload req{sizeof(DmaMapPayload), flags, m.fd >= 0 ? m.fd_offset : 0, m.iova, m.size};
    // Served by messages too when the memory is ours to reach, fd-backed or not: the protocol has a client
    // serve DMA_READ and DMA_WRITE for every window, and servers may use them rather than map the fd.
    // Registered before the request: the server may touch it as soon as it has the map.
    if (m.vaddr != nullptr) {
        std::lock_guard lock(windows_mutex_);
        served_windows_[m.iova] = ServedWindow{m.size, static_cast<std::byte*>(m.vaddr), m.readable, m.writable};
    }
    const int fd = m.fd;
    auto reply = request(Command::kDmaMap, bytes_of(&req, sizeof(req)),
                         fd >= 0 ? std::span<const int>(&fd, 1) : std::span<const int>{});
    std::lock_guard lock(windows_mutex_);
    if (!reply) {
        served_windows_.erase(m.iova);
        return reply.error().with_context(fmt::format("mapping DMA window at IOVA {:#x} ({:#x} bytes)", m.iova,
                                                      m.size));
    }
    mapped_[m.iova] = m.size;
    return {};
}

Result<void> VfioUserClient::dma_unmap(uint64_t iova, uint64_t size) {
    {
        std::lock_guard lock(windows_mutex_);
        auto it = mapped_.find(iova);
        if (it == mapped_.end() || it->second != size)
            return error(ENOENT, fmt::format("no DMA window is mapped at exactly IOVA {:#x} size {:#x}", iova, size));
    }
    DmaUnmapPayload req{sizeof(DmaUnmapPayload), 0, iova, size};
    auto reply = request(Command::kDmaUnmap, bytes_of(&req, sizeof(req)));
    // A server lets go of every window when its connection ends, and ours is shut once it is lost:
    // then nothing is left to unmap, and the memory may be freed.
    if (!reply && !connection_lost())
        return reply.error().with_context(fmt::format("unmapping DMA window at IOVA {:#x}", iova));
    std::lock_guard lock(windows_mutex_);
    mapped_.erase(iova);
    served_windows_.erase(iova);
    return {};
}

Result<void> VfioUserClient::reset() {
    if (!device_info_.can_reset) return error(ENOTSUP, "the device does not offer reset");
    auto reply = request(Command::kDeviceReset, {}, {}, options_.reset_timeout);
    if (!reply) return reply.error();
    return {};
}

}  // namespace

Result<std::unique_ptr<Transport>> open_vfio_user(UniqueFd socket, std::string name, const VfioUserOptions& options) {
    auto client = std::make_unique<VfioUserClient>(std::move(socket), std::move(name), options);
    if (auto r = client->start(); !r) return r.error();
    return std::unique_ptr<Transport>(std::move(client));
}

Result<std::unique_ptr<Transport>> connect_vfio_user(const std::string& socket_path, const VfioUserOptions& options) {
    const std::string name = "vfio-user:" + socket_path;
    sockaddr_un addr{};
    if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path))
        return make_error(ENAMETOOLONG, name + ": socket path must be 1 to " +
                                            std::to_string(sizeof(addr.sun_path) - 1) + " characters");
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return make_error(errno, name + ": socket() failed: " + std::strerror(errno));
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
    // Non-blocking, so that a server whose backlog is full (one that serves one client at a time while
    // another is connected) cannot hold us in connect() for ever: a UNIX socket answers EAGAIN then.
    const auto deadline = std::chrono::steady_clock::now() + options.connect_timeout;
    while (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        const int err = errno;
        if (err == EINTR) continue;
        if (err == EAGAIN) {
            if (std::chrono::steady_clock::now() >= deadline)
                return make_error(ETIMEDOUT, fmt::format("{}: cannot connect within {} ms: the server accepts no "
                                                         "more connections (its backlog is full; another client "
                                                         "may be connected to a server that serves one at a time)",
                                                         name, options.connect_timeout.count()));
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
            continue;
        }
        struct stat st {};
        const bool exists = ::stat(socket_path.c_str(), &st) == 0;
        if (exists && !S_ISSOCK(st.st_mode)) {
            const char* kind = S_ISDIR(st.st_mode)   ? "directory"
                               : S_ISREG(st.st_mode) ? "regular file"
                                                     : "file of another kind";
            return make_error(ENOTSOCK,
                              fmt::format("{}: cannot connect: {} is a {}, not a socket", name, socket_path, kind));
        }
        std::string hint = err == ENOENT         ? " (no server socket there: is vfioq-devsim running?)"
                           : err == ECONNREFUSED ? " (nothing is listening: the server may have exited)"
                           : err == EACCES       ? " (no permission on the socket)"
                                                 : "";
        return make_error(err, name + ": cannot connect: " + std::strerror(err) + hint);
    }
    // Requests wait with poll() and timeouts of their own; the socket is blocking from here on.
    if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK) != 0)
        return make_error(errno, name + ": fcntl() failed: " + std::strerror(errno));
    return open_vfio_user(std::move(fd), name, options);
}

}  // namespace vfioq
