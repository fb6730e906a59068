// SPDX-License-Identifier: MIT
#include "vfio_user_server.hpp"

#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <cstring>

#include "vfioq/log.hpp"
#include "vfioq/sgq_registers.hpp"
#include "vfioq/transport.hpp"

namespace vfioq::model {

using namespace vfio_user;

namespace {

constexpr uint32_t kNumRegions = VFIO_PCI_NUM_REGIONS;
constexpr uint32_t kNumIrqs = VFIO_PCI_NUM_IRQS;
constexpr auto kClientDmaTimeout = std::chrono::seconds(5);

Error invalid(std::string what) { return make_error(EINVAL, std::move(what)); }

std::span<const std::byte> bytes_of(const void* p, size_t n) { return {static_cast<const std::byte*>(p), n}; }

}  // namespace

VfioUserServer::VfioUserServer(SgqDevice& device) : device_(device) {
    stop_fd_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
}

VfioUserServer::~VfioUserServer() = default;

void VfioUserServer::stop() {
    const uint64_t one = 1;
    if (::write(stop_fd_.get(), &one, sizeof(one)) < 0) {
        // Only an overflowing counter fails, and then a stop is already signalled.
    }
}

bool VfioUserServer::stopped() const {
    pollfd p{stop_fd_.get(), POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
}

void VfioUserServer::serve(UniqueFd connection, int reject_listen_fd) {
    auto* logger = &log::logger<log::kModel>();
    socket_ = MessageSocket(std::move(connection));
    negotiated_ = false;
    client_caps_ = Capabilities{};
    serving_thread_ = std::this_thread::get_id();
    {
        std::lock_guard lock(pending_mutex_);
        connected_ = true;
    }
    device_.dma().set_client_access(
        [this](bool to_host, uint64_t iova, std::span<std::byte> data) { return client_dma(to_host, iova, data); });
    logger->info("client connected");

    for (;;) {
        pollfd fds[4] = {{socket_.fd(), POLLIN, 0},
                         {stop_fd_.get(), POLLIN, 0},
                         {device_.disconnect_fd(), POLLIN, 0},
                         {reject_listen_fd, POLLIN, 0}};
        int n = ::poll(fds, reject_listen_fd >= 0 ? 4 : 3, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            logger->error("poll failed: {}; dropping the client", std::strerror(errno));
            break;
        }
        if (fds[1].revents) {
            logger->info("stop requested; closing the client connection");
            break;
        }
        if (fds[2].revents) {
            logger->warn("the card was unplugged (fault injection); closing the client connection");
            break;
        }
        // The client's own news first, its hang-up included: a client that closes and at once
        // connects again must find the card free, not be refused as a second one.
        if (reject_listen_fd >= 0 && fds[3].revents && !fds[0].revents) {
            UniqueFd extra(::accept4(reject_listen_fd, nullptr, nullptr, SOCK_CLOEXEC));
            if (extra) logger->warn("refused a second client: this server serves one client at a time");
        }
        if (!fds[0].revents) continue;
        auto msg = socket_.receive(std::chrono::milliseconds(0));
        if (!msg) {
            if (msg.error().code == ETIMEDOUT) continue;
            logger->info("client dropped: {}", msg.error().message);
            break;
        }
        if (msg->is_reply()) {
            route_reply(std::move(*msg));
            continue;
        }
        const Header request = msg->header;
        const bool first = !negotiated_;
        auto reply = handle(*msg);
        if (!reply) {
            rejected_.fetch_add(1);
            logger->warn("{} (id {}) rejected: {}", command_name(request.command), request.msg_id,
                         reply.error().message);
            if (msg->wants_reply() || first) {
                if (auto r = send_error(request, reply.error().code); !r) break;
            }
            // A client that cannot negotiate a version cannot speak to us at all.
            if (first) {
                logger->warn("dropping the client: the first message must be a valid VERSION");
                break;
            }
            continue;
        }
        if (msg->wants_reply())
            if (auto r = send_reply(request, *reply); !r) {
                logger->info("client dropped while replying: {}", r.error().message);
                break;
            }
    }

    {
        std::lock_guard lock(pending_mutex_);
        connected_ = false;
        pending_cv_.notify_all();
    }
    // Wait for any device-initiated request to see the disconnect before the socket goes.
    { std::lock_guard lock(dma_request_mutex_); }
    socket_.close();
    for (auto& n : notifiers_) n.reset();
    device_.client_disconnected();
    logger->info("client disconnected; device reset");
}

Result<VfioUserServer::Reply> VfioUserServer::handle(Message& msg) {
    const auto command = static_cast<Command>(msg.header.command);
    if (msg.fds_truncated) return make_error(E2BIG, "the message carried more file descriptors than accepted");
    const bool takes_fds = command == Command::kDmaMap || command == Command::kDeviceSetIrqs;
    if (!takes_fds && !msg.fds.empty())
        return invalid(fmt::format("{} carries {} unexpected file descriptors", command_name(msg.header.command),
                                   msg.fds.size()));
    if (!negotiated_ && command != Command::kVersion)
        return invalid(fmt::format("{} before VERSION", command_name(msg.header.command)));
    switch (command) {
        case Command::kVersion: return handle_version(msg);
        case Command::kDeviceGetInfo: return handle_device_info(msg);
        case Command::kDeviceGetRegionInfo: return handle_region_info(msg);
        case Command::kDeviceGetIrqInfo: return handle_irq_info(msg);
        case Command::kDeviceSetIrqs: return handle_set_irqs(msg);
        case Command::kRegionRead: return handle_region_read(msg);
        case Command::kRegionWrite: return handle_region_write(msg);
        case Command::kDmaMap: return handle_dma_map(msg);
        case Command::kDmaUnmap: return handle_dma_unmap(msg);
        case Command::kDeviceReset:
            if (!msg.payload.empty()) return invalid("DEVICE_RESET carries no payload");
            device_.function_reset();
            return Reply{};
        default:
            return make_error(ENOSYS, fmt::format("command {} ({}) is not supported", msg.header.command,
                                                  command_name(msg.header.command)));
    }
}

Result<VfioUserServer::Reply> VfioUserServer::handle_version(const Message& msg) {
    if (negotiated_) return invalid("VERSION was already negotiated");
    auto version = read_struct<VersionPayload>(msg.payload);
    if (!version) return invalid(fmt::format("VERSION payload of {} bytes is truncated", msg.payload.size()));
    if (version->major != kVersionMajor)
        return make_error(ENOTSUP, fmt::format("protocol major version {} is not supported (this server speaks {})",
                                               version->major, kVersionMajor));
    Capabilities caps;
    if (auto e = parse_capabilities(std::span(msg.payload).subspan(sizeof(VersionPayload)), caps))
        return invalid("VERSION capabilities: " + *e);
    if (caps.max_data_xfer_size == 0) return invalid("VERSION capabilities: max_data_xfer_size is 0");
    client_caps_ = caps;
    negotiated_ = true;

    Capabilities ours;
    ours.max_msg_fds = kMaxMsgFds;
    ours.max_data_xfer_size = kMaxDataXferSize;
    ours.max_dma_maps = device_.config().max_dma_maps;
    ours.pgsizes = 4096;
    Reply reply;
    append_struct(reply.payload,
                  VersionPayload{kVersionMajor, std::min<uint16_t>(version->minor, kVersionMinor)});
    const std::string json = capabilities_to_json(ours);
    auto json_bytes = bytes_of(json.c_str(), json.size() + 1);
    reply.payload.insert(reply.payload.end(), json_bytes.begin(), json_bytes.end());
    return reply;
}

Result<VfioUserServer::Reply> VfioUserServer::handle_device_info(const Message& msg) {
    auto req = read_struct<DeviceInfoPayload>(msg.payload);
    if (!req) return invalid(fmt::format("DEVICE_GET_INFO payload of {} bytes is truncated", msg.payload.size()));
    if (req->argsz < sizeof(DeviceInfoPayload))
        return invalid(fmt::format("DEVICE_GET_INFO argsz {} is smaller than the reply ({} bytes)", req->argsz,
                                   sizeof(DeviceInfoPayload)));
    Reply reply;
    append_struct(reply.payload, DeviceInfoPayload{sizeof(DeviceInfoPayload),
                                                   VFIO_DEVICE_FLAGS_RESET | VFIO_DEVICE_FLAGS_PCI, kNumRegions,
                                                   kNumIrqs});
    return reply;
}

Result<VfioUserServer::Reply> VfioUserServer::handle_region_info(const Message& msg) {
    auto req = read_struct<RegionInfoPayload>(msg.payload);
    if (!req)
        return invalid(fmt::format("DEVICE_GET_REGION_INFO payload of {} bytes is truncated", msg.payload.size()));
    if (req->argsz < sizeof(RegionInfoPayload))
        return invalid(fmt::format("DEVICE_GET_REGION_INFO argsz {} is smaller than the region info ({} bytes)",
                                   req->argsz, sizeof(RegionInfoPayload)));
    if (req->index >= kNumRegions)
        return invalid(fmt::format("region index {} is out of range (the device has {})", req->index, kNumRegions));

    RegionInfoPayload info{sizeof(RegionInfoPayload), 0, req->index, 0, device_.region_size(req->index), 0};
    if (info.size != 0) info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
    Reply reply;
    if (req->index != static_cast<uint32_t>(PciRegion::kBar0)) {
        append_struct(reply.payload, info);
        return reply;
    }
    // BAR0: only the doorbell page may be mapped; registers stay trapped.
    const uint32_t full = sizeof(RegionInfoPayload) + sizeof(CapHeader) + sizeof(SparseMmapHeader) +
                          sizeof(SparseMmapArea);
    info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
    info.argsz = full;
    reply.fds.push_back(device_.bar0_fd());
    if (req->argsz < full) {
        // Too small for the capabilities: the client learns the size it needs from argsz.
        // CAPS is set only with the capabilities in the reply: the kernel sets it here with
        // cap_offset 0, but QEMU's vfio-user client refuses a cap_offset outside the reply.
        append_struct(reply.payload, info);
        return reply;
    }
    info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
    info.cap_offset = sizeof(RegionInfoPayload);
    append_struct(reply.payload, info);
    append_struct(reply.payload, CapHeader{VFIO_REGION_INFO_CAP_SPARSE_MMAP, 1, 0});
    append_struct(reply.payload, SparseMmapHeader{1, 0});
    append_struct(reply.payload, SparseMmapArea{sgq::kDoorbellBase, sgq::kDoorbellPageSize});
    return reply;
}

Result<VfioUserServer::Reply> VfioUserServer::handle_irq_info(const Message& msg) {
    auto req = read_struct<IrqInfoPayload>(msg.payload);
    if (!req) return invalid(fmt::format("DEVICE_GET_IRQ_INFO payload of {} bytes is truncated", msg.payload.size()));
    if (req->argsz < sizeof(IrqInfoPayload))
        return invalid(fmt::format("DEVICE_GET_IRQ_INFO argsz {} is smaller than the reply ({} bytes)", req->argsz,
                                   sizeof(IrqInfoPayload)));
    if (req->index >= kNumIrqs)
        return invalid(fmt::format("IRQ index {} is out of range (the device has {})", req->index, kNumIrqs));
    IrqInfoPayload info{sizeof(IrqInfoPayload), 0, req->index, 0};
    if (req->index == VFIO_PCI_MSIX_IRQ_INDEX) {
        info.flags = VFIO_IRQ_INFO_EVENTFD | VFIO_IRQ_INFO_MASKABLE;
        info.count = device_.msix().vector_count();
    } else if (req->index == VFIO_PCI_ERR_IRQ_INDEX || req->index == VFIO_PCI_REQ_IRQ_INDEX) {
        // As vfio-pci offers them for a PCIe function: QEMU arms both and warns without them.
        info.flags = VFIO_IRQ_INFO_EVENTFD;
        info.count = 1;
    }
    Reply reply;
    append_struct(reply.payload, info);
    return reply;
}

Result<VfioUserServer::Reply> VfioUserServer::handle_set_irqs(Message& msg) {
    auto req = read_struct<IrqSetPayload>(msg.payload);
    if (!req) return invalid(fmt::format("DEVICE_SET_IRQS payload of {} bytes is truncated", msg.payload.size()));
    if (req->argsz < sizeof(IrqSetPayload) || req->argsz > msg.payload.size())
        return invalid(fmt::format("DEVICE_SET_IRQS argsz {} does not match its payload of {} bytes", req->argsz,
                                   msg.payload.size()));
    const uint32_t data_type = req->flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
    const uint32_t action = req->flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
    if (req->flags & ~(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK))
        return invalid(fmt::format("DEVICE_SET_IRQS flags {:#x} has unknown bits", req->flags));
    if (std::popcount(data_type) != 1 || std::popcount(action) != 1)
        return invalid(fmt::format("DEVICE_SET_IRQS flags {:#x} must name one data type and one action", req->flags));
    if (req->index >= kNumIrqs)
        return invalid(fmt::format("IRQ index {} is out of range (the device has {})", req->index, kNumIrqs));
    if (data_type != VFIO_IRQ_SET_DATA_EVENTFD && !msg.fds.empty())
        return invalid("DEVICE_SET_IRQS carries file descriptors without VFIO_IRQ_SET_DATA_EVENTFD");

    Msix& msix = device_.msix();
    const bool notifier = req->index == VFIO_PCI_ERR_IRQ_INDEX || req->index == VFIO_PCI_REQ_IRQ_INDEX;
    const uint32_t vectors = req->index == VFIO_PCI_MSIX_IRQ_INDEX ? msix.vector_count() : notifier ? 1 : 0;
    // start = count = 0 with DATA_NONE and TRIGGER turns the whole index off.
    if (req->count == 0) {
        if (data_type == VFIO_IRQ_SET_DATA_NONE && action == VFIO_IRQ_SET_ACTION_TRIGGER && req->start == 0) {
            if (req->index == VFIO_PCI_MSIX_IRQ_INDEX) msix.release_all();
            if (notifier) notifiers_[req->index - VFIO_PCI_ERR_IRQ_INDEX].reset();
            return Reply{};
        }
        return invalid("DEVICE_SET_IRQS with count 0 must be DATA_NONE | ACTION_TRIGGER with start 0");
    }
    if (req->start >= vectors || req->count > vectors - req->start)
        return invalid(fmt::format("DEVICE_SET_IRQS vectors {}..{} are out of range ({} has {})", req->start,
                                   uint64_t{req->start} + req->count - 1, irq_name(req->index), vectors));

    std::span<const uint8_t> which;
    if (data_type == VFIO_IRQ_SET_DATA_BOOL) {
        const size_t data_len = req->argsz - sizeof(IrqSetPayload);
        if (data_len != req->count)
            return invalid(fmt::format("DEVICE_SET_IRQS has {} bool bytes for {} vectors", data_len, req->count));
        which = {reinterpret_cast<const uint8_t*>(msg.payload.data()) + sizeof(IrqSetPayload), req->count};
    } else if (req->argsz != sizeof(IrqSetPayload)) {
        return invalid(fmt::format("DEVICE_SET_IRQS argsz {} carries data without VFIO_IRQ_SET_DATA_BOOL", req->argsz));
    }

    if (notifier) return set_notifier(req->index, data_type, action, which, msg.fds);
    if (data_type == VFIO_IRQ_SET_DATA_EVENTFD) {
        if (action != VFIO_IRQ_SET_ACTION_TRIGGER)
            return make_error(ENOTSUP, "eventfds for mask/unmask notifications are not supported");
        if (msg.fds.empty()) {
            msix.release(req->start, req->count);
            return Reply{};
        }
        if (msg.fds.size() != req->count)
            return invalid(fmt::format("DEVICE_SET_IRQS for {} vectors carries {} eventfds", req->count,
                                       msg.fds.size()));
        msix.assign(req->start, std::move(msg.fds));
        return Reply{};
    }
    switch (action) {
        case VFIO_IRQ_SET_ACTION_MASK: msix.set_masked(req->start, req->count, which, true); break;
        case VFIO_IRQ_SET_ACTION_UNMASK: msix.set_masked(req->start, req->count, which, false); break;
        default: msix.trigger(req->start, req->count, which); break;
    }
    return Reply{};
}

Result<VfioUserServer::Reply> VfioUserServer::set_notifier(uint32_t index, uint32_t data_type, uint32_t action,
                                                           std::span<const uint8_t> which,
                                                           std::vector<UniqueFd>& fds) {
    if (action != VFIO_IRQ_SET_ACTION_TRIGGER)
        return invalid(fmt::format("{} can only be triggered, not masked or unmasked", irq_name(index)));
    UniqueFd& slot = notifiers_[index - VFIO_PCI_ERR_IRQ_INDEX];
    if (data_type == VFIO_IRQ_SET_DATA_EVENTFD) {
        if (fds.size() > 1)
            return invalid(fmt::format("DEVICE_SET_IRQS for {} carries {} eventfds", irq_name(index), fds.size()));
        slot = fds.empty() ? UniqueFd() : std::move(fds[0]);
        return Reply{};
    }
    // DATA_NONE, or DATA_BOOL with its one flag set: signal it, as the kernel does.
    if ((which.empty() || which[0]) && slot.valid()) {
        const uint64_t one = 1;
        if (::write(slot.get(), &one, sizeof(one)) < 0) {
            // A full counter already says the event is pending.
        }
    }
    return Reply{};
}

Result<VfioUserServer::Reply> VfioUserServer::handle_region_read(const Message& msg) {
    auto req = read_struct<RegionAccessPayload>(msg.payload);
    if (!req || msg.payload.size() != sizeof(RegionAccessPayload))
        return invalid(fmt::format("REGION_READ payload of {} bytes (expected {})", msg.payload.size(),
                                   sizeof(RegionAccessPayload)));
    if (req->count > kMaxDataXferSize)
        return make_error(E2BIG, fmt::format("REGION_READ of {} bytes exceeds max_data_xfer_size {}", req->count,
                                             kMaxDataXferSize));
    if (req->region >= kNumRegions)
        return invalid(fmt::format("REGION_READ of region index {} (the device has {})", req->region, kNumRegions));
    Reply reply;
    append_struct(reply.payload, *req);
    reply.payload.resize(sizeof(RegionAccessPayload) + req->count);
    auto data = std::span(reply.payload).subspan(sizeof(RegionAccessPayload));
    if (auto r = device_.region_read(req->region, req->offset, data); !r) return r.error();
    return reply;
}

Result<VfioUserServer::Reply> VfioUserServer::handle_region_write(const Message& msg) {
    auto req = read_struct<RegionAccessPayload>(msg.payload);
    if (!req) return invalid(fmt::format("REGION_WRITE payload of {} bytes is truncated", msg.payload.size()));
    if (req->count > kMaxDataXferSize)
        return make_error(E2BIG, fmt::format("REGION_WRITE of {} bytes exceeds max_data_xfer_size {}", req->count,
                                             kMaxDataXferSize));
    if (msg.payload.size() != sizeof(RegionAccessPayload) + req->count)
        return invalid(fmt::format("REGION_WRITE count {} does not match its {} data bytes", req->count,
                                   msg.payload.size() - sizeof(RegionAccessPayload)));
    if (req->region >= kNumRegions)
        return invalid(fmt::format("REGION_WRITE of region index {} (the device has {})", req->region, kNumRegions));
    if (auto r = device_.region_write(req->region, req->offset, std::span(msg.payload).subspan(sizeof(*req))); !r)
        return r.error();
    Reply reply;
    append_struct(reply.payload, *req);
    return reply;
}

Result<VfioUserServer::Reply> VfioUserServer::handle_dma_map(Message& msg) {
    auto req = read_struct<DmaMapPayload>(msg.payload);
    if (!req || msg.payload.size() != sizeof(DmaMapPayload))
        return invalid(fmt::format("DMA_MAP payload of {} bytes (expected {})", msg.payload.size(),
                                   sizeof(DmaMapPayload)));
    if (req->argsz != sizeof(DmaMapPayload))
        return invalid(fmt::format("DMA_MAP argsz {} (expected {})", req->argsz, sizeof(DmaMapPayload)));
    if (req->flags & ~(kDmaFlagReadable | kDmaFlagWritable))
        return invalid(fmt::format("DMA_MAP flags {:#x} has unknown bits", req->flags));
    if (msg.fds.size() > 1) return invalid(fmt::format("DMA_MAP carries {} file descriptors", msg.fds.size()));
    if (req->address % 4096 != 0 || req->size % 4096 != 0)
        return invalid(fmt::format("DMA_MAP window at {:#x} of {:#x} bytes is not 4 KiB aligned", req->address,
                                   req->size));
    UniqueFd fd = msg.fds.empty() ? UniqueFd() : std::move(msg.fds[0]);
    if (auto r = device_.dma().map(req->address, req->size, req->flags & kDmaFlagReadable,
                                   req->flags & kDmaFlagWritable, std::move(fd), req->offset,
                                   device_.config().max_dma_maps);
        !r)
        return r.error();
    return Reply{};
}

Result<VfioUserServer::Reply> VfioUserServer::handle_dma_unmap(const Message& msg) {
    auto req = read_struct<DmaUnmapPayload>(msg.payload);
    if (!req || msg.payload.size() != sizeof(DmaUnmapPayload) || req->argsz < sizeof(DmaUnmapPayload))
        return invalid(fmt::format("DMA_UNMAP payload of {} bytes (expected {})", msg.payload.size(),
                                   sizeof(DmaUnmapPayload)));
    if (req->flags == kDmaUnmapFlagAll) {
        if (req->address != 0 || req->size != 0)
            return invalid(fmt::format("DMA_UNMAP of every window gives address {:#x} and size {:#x} (both must be 0)",
                                       req->address, req->size));
        device_.dma().clear();
    } else if (req->flags != 0) {
        return make_error(ENOTSUP, fmt::format("DMA_UNMAP flags {:#x} are not supported (dirty bitmaps are not "
                                               "tracked)",
                                               req->flags));
    } else {
        if (req->address % 4096 != 0 || req->size % 4096 != 0)
            return invalid(fmt::format("DMA_UNMAP of {:#x} bytes at {:#x} is not 4 KiB aligned", req->size,
                                       req->address));
        if (auto r = device_.dma().unmap(req->address, req->size); !r) return r.error();
    }
    Reply reply;
    append_struct(reply.payload, *req);
    return reply;
}

Result<void> VfioUserServer::send_reply(const Header& request, const Reply& reply) {
    Header h{request.msg_id, request.command, 0, kFlagTypeReply, 0};
    std::lock_guard lock(send_mutex_);
    return socket_.send(h, reply.payload, reply.fds);
}

Result<void> VfioUserServer::send_error(const Header& request, int code) {
    Header h{request.msg_id, request.command, 0, kFlagTypeReply | kFlagError, static_cast<uint32_t>(code)};
    std::lock_guard lock(send_mutex_);
    return socket_.send(h, {});
}

void VfioUserServer::route_reply(Message msg) {
    std::lock_guard lock(pending_mutex_);
    if (!pending_id_ || *pending_id_ != msg.header.msg_id) {
        log::logger<log::kModel>().warn("dropped a reply with id {} ({}) that answers no request of ours",
                                        msg.header.msg_id, command_name(msg.header.command));
        return;
    }
    pending_reply_ = std::move(msg);
    pending_cv_.notify_all();
}

Result<void> VfioUserServer::client_dma(bool to_host, uint64_t iova, std::span<std::byte> data) {
    if (std::this_thread::get_id() == serving_thread_)
        return make_error(EDEADLK, "client DMA requested from the thread that serves the client");
    std::lock_guard request_lock(dma_request_mutex_);
    const uint64_t chunk = std::max<uint64_t>(1, std::min<uint64_t>(client_caps_.max_data_xfer_size,
                                                                     kMaxDataXferSize));
    for (uint64_t done = 0; done < data.size(); done += chunk) {
        const uint64_t n = std::min<uint64_t>(chunk, data.size() - done);
        if (auto r = client_dma_chunk(to_host, iova + done, data.subspan(done, n)); !r) return r;
    }
    return {};
}

Result<void> VfioUserServer::client_dma_chunk(bool to_host, uint64_t iova, std::span<std::byte> data) {
    const Command command = to_host ? Command::kDmaWrite : Command::kDmaRead;
    uint16_t id;
    {
        std::lock_guard lock(pending_mutex_);
        if (!connected_) return make_error(ENOTCONN, "no client is connected");
        id = next_id_++;
        pending_id_ = id;
        pending_reply_.reset();
    }
    std::vector<std::byte> payload;
    append_struct(payload, DmaAccessPayload{iova, data.size()});
    if (to_host) payload.insert(payload.end(), data.begin(), data.end());
    {
        std::lock_guard lock(send_mutex_);
        if (auto r = socket_.send(Header{id, static_cast<uint16_t>(command), 0, kFlagTypeCommand, 0}, payload); !r)
            return r.error();
    }
    std::unique_lock lock(pending_mutex_);
    const bool answered = pending_cv_.wait_for(lock, kClientDmaTimeout,
                                               [&] { return pending_reply_.has_value() || !connected_; });
    pending_id_.reset();
    if (!pending_reply_) {
        return make_error(answered ? ENOTCONN : ETIMEDOUT,
                          answered ? "the client disconnected" : "the client did not answer within 5 s");
    }
    Message reply = std::move(*pending_reply_);
    pending_reply_.reset();
    lock.unlock();
    if (reply.is_error())
        return make_error(reply.header.error_reply ? static_cast<int>(reply.header.error_reply) : EFAULT,
                          fmt::format("the client refused {}: {}", command_name(reply.header.command),
                                      std::strerror(reply.header.error_reply ? reply.header.error_reply : EFAULT)));
    if (to_host) {
        // The spec's table gives the DMA_WRITE reply a 4-byte count, common servers
        // and clients an 8-byte one; little-endian, the low 4 bytes agree.
        auto address = read_struct<uint64_t>(reply.payload);
        auto count = read_struct<uint32_t>(reply.payload, 8);
        if (!address || !count || *address != iova || *count != data.size())
            return make_error(EPROTO, "malformed DMA_WRITE reply from the client");
        return {};
    }
    auto echo = read_struct<DmaAccessPayload>(reply.payload);
    if (!echo || echo->address != iova || echo->count != data.size() ||
        reply.payload.size() != sizeof(DmaAccessPayload) + data.size())
        return make_error(EPROTO, "malformed DMA_READ reply from the client");
    std::memcpy(data.data(), reply.payload.data() + sizeof(DmaAccessPayload), data.size());
    return {};
}

}  // namespace vfioq::model
