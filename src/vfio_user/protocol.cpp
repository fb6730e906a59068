// SPDX-License-Identifier: MIT
#include "protocol.hpp"

#include <nlohmann/json.hpp>

namespace vfioq::vfio_user {

const char* command_name(uint16_t command) {
    switch (static_cast<Command>(command)) {
        case Command::kVersion: return "VERSION";
        case Command::kDmaMap: return "DMA_MAP";
        case Command::kDmaUnmap: return "DMA_UNMAP";
        case Command::kDeviceGetInfo: return "DEVICE_GET_INFO";
        case Command::kDeviceGetRegionInfo: return "DEVICE_GET_REGION_INFO";
        case Command::kDeviceGetRegionIoFds: return "DEVICE_GET_REGION_IO_FDS";
        case Command::kDeviceGetIrqInfo: return "DEVICE_GET_IRQ_INFO";
        case Command::kDeviceSetIrqs: return "DEVICE_SET_IRQS";
        case Command::kRegionRead: return "REGION_READ";
        case Command::kRegionWrite: return "REGION_WRITE";
        case Command::kDmaRead: return "DMA_READ";
        case Command::kDmaWrite: return "DMA_WRITE";
        case Command::kDeviceReset: return "DEVICE_RESET";
        case Command::kRegionWriteMulti: return "REGION_WRITE_MULTI";
        case Command::kDeviceFeature: return "DEVICE_FEATURE";
        case Command::kMigDataRead: return "MIG_DATA_READ";
        case Command::kMigDataWrite: return "MIG_DATA_WRITE";
    }
    return "unknown command";
}

std::string capabilities_to_json(const Capabilities& caps) {
    nlohmann::json c = {
        {"max_msg_fds", caps.max_msg_fds},
        {"max_data_xfer_size", caps.max_data_xfer_size},
        {"max_dma_maps", caps.max_dma_maps},
        {"pgsizes", caps.pgsizes},
    };
    if (caps.twin_socket_supported) {
        nlohmann::json twin = {{"supported", true}};
        if (caps.twin_socket_fd_index) twin["fd_index"] = *caps.twin_socket_fd_index;
        c["twin_socket"] = twin;
    }
    return nlohmann::json{{"capabilities", c}}.dump();
}

namespace {

template <typename T>
std::optional<std::string> read_number(const nlohmann::json& obj, const char* name, T& out) {
    auto it = obj.find(name);
    if (it == obj.end()) return std::nullopt;
    if (!it->is_number_unsigned()) return std::string("capability '") + name + "' is not an unsigned number";
    auto v = it->get<uint64_t>();
    if (v > std::numeric_limits<T>::max()) return std::string("capability '") + name + "' is out of range";
    out = static_cast<T>(v);
    return std::nullopt;
}

}  // namespace

std::optional<std::string> parse_capabilities(std::span<const std::byte> json, Capabilities& caps) {
    // The JSON is NUL-terminated on the wire; tolerate its absence and stop at the first NUL.
    size_t len = 0;
    while (len < json.size() && json[len] != std::byte{0}) ++len;
    if (len == 0) return std::nullopt;
    const auto* begin = reinterpret_cast<const char*>(json.data());
    auto doc = nlohmann::json::parse(begin, begin + len, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) return "version data is not valid JSON";
    if (!doc.is_object()) return "version data is not a JSON object";
    auto it = doc.find("capabilities");
    if (it == doc.end()) return std::nullopt;
    if (!it->is_object()) return "'capabilities' is not a JSON object";
    const auto& c = *it;
    if (auto e = read_number(c, "max_msg_fds", caps.max_msg_fds)) return e;
    if (auto e = read_number(c, "max_data_xfer_size", caps.max_data_xfer_size)) return e;
    if (auto e = read_number(c, "max_dma_maps", caps.max_dma_maps)) return e;
    if (auto e = read_number(c, "pgsizes", caps.pgsizes)) return e;
    if (auto twin = c.find("twin_socket"); twin != c.end()) {
        if (!twin->is_object()) return "'twin_socket' is not a JSON object";
        if (auto s = twin->find("supported"); s != twin->end()) {
            if (!s->is_boolean()) return "'twin_socket.supported' is not a boolean";
            caps.twin_socket_supported = s->get<bool>();
        }
        uint32_t index = 0;
        if (twin->contains("fd_index")) {
            if (auto e = read_number(*twin, "fd_index", index)) return e;
            caps.twin_socket_fd_index = index;
        }
    }
    return std::nullopt;
}

}  // namespace vfioq::vfio_user
