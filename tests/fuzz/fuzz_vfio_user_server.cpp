// SPDX-License-Identifier: MIT
// Fuzz target: the model's vfio-user server against a hostile client. Each
// message's command, flags, payload and file descriptors come from the input
// (most inputs start with a valid VERSION so that the rest gets past
// negotiation), and some are raw bytes that break the framing. The server
// must answer or drop the client, never crash, and keep serving the device.
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <chrono>

#include "fuzz_input.hpp"
#include "fuzz_peer.hpp"
#include "model/model_server.hpp"
#include "vfio_user/message_socket.hpp"
#include "vfioq/log.hpp"

using namespace vfioq;
using namespace vfioq::vfio_user;
using namespace std::chrono_literals;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const bool quiet = [] { return log::set_levels("off").has_value(); }();
    (void)quiet;
    fuzz::Input in(data, size);
    auto pair = make_socket_pair();
    if (!pair) return 0;
    model::ModelConfig config;
    config.devmem_size = 1 << 20;
    config.nqp = 1;
    auto server = model::ModelServer::start(config, std::move(pair->second));
    if (!server) return 0;
    MessageSocket sock(std::move(pair->first));
    uint16_t id = 0;
    if (!(in.take<uint8_t>() & 0x80)) {
        if (!sock.send(Header{id++, static_cast<uint16_t>(Command::kVersion), 0, kFlagTypeCommand, 0},
                       fuzz::version_payload()))
            return 0;
        if (!sock.receive(1000ms)) return 0;
    }
    while (!in.empty()) {
        const uint8_t kind = in.take<uint8_t>();
        if (kind & 0x80) {
            // Raw bytes: a header that lies about its size, a message cut off.
            auto raw = in.bytes(in.take<uint8_t>());
            if (::send(sock.fd(), raw.data(), raw.size(), MSG_NOSIGNAL) < 0) break;
            continue;
        }
        Header h{id++, static_cast<uint16_t>(in.take<uint8_t>() % 24), 0, kFlagTypeCommand, 0};
        if (kind & 1) h.command = in.take<uint16_t>();
        if (kind & 2) h.flags = in.take<uint32_t>();
        if (kind & 4) h.error_reply = in.take<uint32_t>();
        auto payload = in.bytes(in.take<uint16_t>() % 4096);
        std::vector<UniqueFd> fds;
        std::vector<int> raw;
        if (kind & 8) {
            for (int i = 0, n = 1 + in.take<uint8_t>() % 10; i < n; ++i) {
                const uint8_t what = in.take<uint8_t>();
                fds.push_back(what & 1 ? UniqueFd(::eventfd(0, EFD_CLOEXEC)) : fuzz::small_memfd(4096u << (what % 5)));
                raw.push_back(fds.back().get());
            }
        }
        if (!sock.send(h, payload, raw)) break;
        if ((h.flags & kFlagTypeMask) == kFlagTypeCommand && (h.flags & kFlagNoReply) == 0) {
            auto reply = sock.receive(100ms);
            if (!reply && reply.error().code != ETIMEDOUT) break;
        }
    }
    return 0;
}
