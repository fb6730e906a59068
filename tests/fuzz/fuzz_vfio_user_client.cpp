// SPDX-License-Identifier: MIT
// Fuzz target: the vfio-user client against a hostile server. The server
// side of a socket pair answers each request the client makes with a reply
// whose payload, flags, error, file descriptors and id come from the input,
// and may slip in requests of its own (DMA_READ, DMA_WRITE, anything). The
// client is driven through what the library does with a device: negotiation,
// device and region info, BAR mappings, register and config access, IRQs,
// DMA mapping and reset. Nothing it is sent may crash it or hang it.
#include <chrono>
#include <thread>

#include "fuzz_input.hpp"
#include "fuzz_peer.hpp"
#include "vfio_user/message_socket.hpp"
#include "vfioq/device.hpp"
#include "vfioq/log.hpp"
#include "vfioq/vfio_user.hpp"

namespace {

using namespace vfioq;
using namespace vfioq::vfio_user;
using namespace std::chrono_literals;

void serve(fuzz::Input& in, UniqueFd fd) {
    MessageSocket sock(std::move(fd));
    uint16_t own_id = 0x8000;
    while (!in.empty()) {
        auto req = sock.receive(500ms);
        if (!req) break;
        const uint8_t kind = in.take<uint8_t>();
        if (kind & 0x40) {
            // A request of the server's own before the reply.
            Header h{own_id++, in.take<uint16_t>(), 0, static_cast<uint32_t>(in.take<uint8_t>() & 0x30), 0};
            auto payload = in.bytes(in.take<uint8_t>());
            if (!sock.send(h, payload)) break;
        }
        std::vector<std::byte> payload;
        if ((kind & 0x80) && req->header.command == static_cast<uint16_t>(Command::kVersion)) {
            // Well-formed, so that most inputs get past negotiation.
            payload = fuzz::version_payload(R"({"capabilities":{"max_msg_fds":8,"max_data_xfer_size":1048576}})");
        } else {
            auto b = in.bytes(in.take<uint16_t>() % 2048);
            payload.assign(b.begin(), b.end());
        }
        Header h{req->header.msg_id, req->header.command, 0, kFlagTypeReply, 0};
        if (kind & 1) h.flags |= kFlagError, h.error_reply = in.take<uint8_t>();
        if (kind & 2) h.msg_id = in.take<uint16_t>();
        if (kind & 4) h.command = in.take<uint16_t>();
        if (kind & 8) h.flags = in.take<uint32_t>();
        std::vector<UniqueFd> fds;
        std::vector<int> raw;
        if (kind & 0x10) {
            for (int i = 0, n = 1 + in.take<uint8_t>() % 3; i < n; ++i) {
                fds.push_back(fuzz::small_memfd(4096u << (in.take<uint8_t>() % 4)));
                raw.push_back(fds.back().get());
            }
        }
        if (!sock.send(h, payload, raw)) break;
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool quiet = [] { return log::set_levels("off").has_value(); }();
    (void)quiet;
    fuzz::Input in(data, size);
    auto pair = make_socket_pair();
    if (!pair) return 0;
    std::thread server([&in, fd = std::move(pair->second)]() mutable { serve(in, std::move(fd)); });
    {
        VfioUserOptions o;
        o.reply_timeout = 100ms;
        o.reset_timeout = 100ms;
        auto transport = open_vfio_user(std::move(pair->first), "fuzzed-server", o);
        if (transport) {
            auto device = Device::from_transport(std::move(*transport));
            if (device) {
                Device& d = **device;
                (void)d.read32(0, 0);
                (void)d.write32(0, 0x20, 1);
                (void)d.read64(0, 8);
                (void)d.config_read(0, 32);
                (void)d.transport().irq_info(static_cast<uint32_t>(PciIrq::kMsix));
                (void)d.transport().region_info(static_cast<uint32_t>(PciRegion::kConfig));
                const int fds[1] = {-1};
                (void)d.transport().set_irq_eventfds(static_cast<uint32_t>(PciIrq::kMsix), 0, fds);
                if (auto buf = d.dma().allocate(8192)) (void)buf->data();
                (void)d.transport().reset();
            }
        }
    }
    server.join();
    return 0;
}
