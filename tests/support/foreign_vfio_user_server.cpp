// SPDX-License-Identifier: MIT
// A vfio-user server that is not the SGQ card: a plain PCI function (a
// network controller's identity, no capabilities) with a BAR0 of registers
// that read a fixed pattern, or no BAR0, or one of an absurd size. The tools
// must inspect it, say what it is not, and refuse what cannot apply to it.
//
//   foreign-vfio-user-server --socket PATH [--bar0-size BYTES]
// Serves one client after another until SIGTERM.
#include <fmt/format.h>
#include <linux/vfio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "vfio_user/message_socket.hpp"
#include "vfio_user/protocol.hpp"
#include "vfioq/transport.hpp"

namespace {

using namespace vfioq;
using namespace vfioq::vfio_user;

constexpr uint32_t kConfigIndex = static_cast<uint32_t>(PciRegion::kConfig);
constexpr uint32_t kBar0Pattern = 0x12345678;

template <typename T>
std::vector<std::byte> bytes(const T& v) {
    std::vector<std::byte> out(sizeof(T));
    std::memcpy(out.data(), &v, sizeof(T));
    return out;
}

struct Foreign {
    uint64_t bar0_size = 4096;
    std::vector<uint8_t> config = std::vector<uint8_t>(256);

    Foreign() {
        const uint8_t head[] = {0xf4, 0x1a, 0x41, 0x10,  // vendor 0x1af4, device 0x1041
                                0x00, 0x00, 0x00, 0x00,  // command, status: no capability list
                                0x01, 0x00, 0x00, 0x02}; // revision 1, class 0x020000 (Ethernet)
        std::memcpy(config.data(), head, sizeof(head));
    }

    uint64_t size_of(uint32_t index) const {
        if (index == kConfigIndex) return config.size();
        return index == 0 ? bar0_size : 0;
    }

    void serve(MessageSocket& s) {
        for (;;) {
            auto m = s.receive(std::chrono::milliseconds(-1));
            if (!m) return;
            const auto command = static_cast<Command>(m->header.command);
            auto answer = [&](std::span<const std::byte> payload) {
                (void)s.send(Header{m->header.msg_id, m->header.command, 0, kFlagTypeReply, 0}, payload);
            };
            auto refuse = [&](int code) {
                (void)s.send(Header{m->header.msg_id, m->header.command, 0, kFlagTypeReply | kFlagError,
                                    static_cast<uint32_t>(code)},
                             {});
            };
            switch (command) {
                case Command::kVersion: answer(bytes(VersionPayload{kVersionMajor, kVersionMinor})); break;
                case Command::kDeviceGetInfo:
                    answer(bytes(DeviceInfoPayload{16, VFIO_DEVICE_FLAGS_PCI | VFIO_DEVICE_FLAGS_RESET, 9, 5}));
                    break;
                case Command::kDeviceGetRegionInfo: {
                    auto req = read_struct<RegionInfoPayload>(m->payload);
                    if (!req) {
                        refuse(EINVAL);
                        break;
                    }
                    const uint64_t size = size_of(req->index);
                    const uint32_t flags = size ? VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE : 0;
                    answer(bytes(RegionInfoPayload{32, flags, req->index, 0, size, 0}));
                    break;
                }
                case Command::kDeviceGetIrqInfo: {
                    auto req = read_struct<IrqInfoPayload>(m->payload);
                    if (!req) {
                        refuse(EINVAL);
                        break;
                    }
                    answer(bytes(IrqInfoPayload{16, VFIO_IRQ_INFO_EVENTFD, req->index, req->index == 0 ? 1u : 0u}));
                    break;
                }
                case Command::kRegionRead: {
                    auto req = read_struct<RegionAccessPayload>(m->payload);
                    const uint64_t size = req ? size_of(req->region) : 0;
                    if (!req || req->offset >= size || req->count > size - req->offset || req->count > 4096) {
                        refuse(EINVAL);
                        break;
                    }
                    std::vector<std::byte> reply = bytes(*req);
                    for (uint32_t i = 0; i < req->count; ++i) {
                        const uint64_t at = req->offset + i;
                        const uint8_t b = req->region == kConfigIndex
                                              ? config[at]
                                              : static_cast<uint8_t>(kBar0Pattern >> (8 * (at % 4)));
                        reply.push_back(std::byte{b});
                    }
                    answer(reply);
                    break;
                }
                case Command::kRegionWrite: {
                    auto req = read_struct<RegionAccessPayload>(m->payload);
                    if (!req) {
                        refuse(EINVAL);
                        break;
                    }
                    answer(bytes(*req));  // writes are ignored, as by a device without such registers
                    break;
                }
                case Command::kDeviceReset:
                case Command::kDmaMap:
                case Command::kDmaUnmap:
                case Command::kDeviceSetIrqs: answer({}); break;
                default: refuse(ENOSYS); break;
            }
        }
    }
};

volatile std::sig_atomic_t g_stop = 0;

}  // namespace

int main(int argc, char** argv) {
    Foreign device;
    std::string path;
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "--socket") path = argv[i + 1];
        else if (a == "--bar0-size") device.bar0_size = std::strtoull(argv[i + 1], nullptr, 0);
        else {
            fmt::print(stderr, "unknown option {}\n", a);
            return 2;
        }
    }
    if (path.empty()) {
        fmt::print(stderr, "usage: foreign-vfio-user-server --socket PATH [--bar0-size BYTES]\n");
        return 2;
    }
    struct sigaction sa {};
    sa.sa_handler = [](int) { g_stop = 1; };
    ::sigaction(SIGTERM, &sa, nullptr);  // no SA_RESTART: accept() returns
    UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    // Bound under another name and renamed once listening, so the path appears only when it accepts.
    const std::string temporary = path + ".binding";
    sockaddr_un tmp_addr = addr;
    std::strncpy(tmp_addr.sun_path, temporary.c_str(), sizeof(tmp_addr.sun_path) - 1);
    ::unlink(temporary.c_str());
    if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&tmp_addr), sizeof(tmp_addr)) != 0 ||
        ::listen(listener.get(), 1) != 0 || ::rename(temporary.c_str(), path.c_str()) != 0) {
        fmt::print(stderr, "cannot listen on {}: {}\n", path, std::strerror(errno));
        return 1;
    }
    while (!g_stop) {
        UniqueFd client(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
        if (!client) continue;
        MessageSocket s(std::move(client));
        device.serve(s);
    }
    ::unlink(path.c_str());
    return 0;
}
