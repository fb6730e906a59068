// SPDX-License-Identifier: MIT
// Device addresses and the transport each one picks.
#include <fmt/format.h>

#include <atomic>
#include <cctype>
#include <cstdio>
#include <optional>

#include "vfioq/device.hpp"

namespace vfioq {
namespace {

constexpr std::string_view kVfioUserPrefix = "vfio-user:";

// Constant-initialised, so an opener installed from another library's static constructor is never lost.
std::atomic<ModelOpener> g_model_opener{nullptr};

// "0000:03:00.0" or "03:00.0" (domain 0); hex digits; device <= 0x1f, function <= 7.
std::optional<std::string> canonical_pci_address(std::string_view text) {
    unsigned domain = 0, bus = 0, dev = 0, fn = 0;
    char tail = 0;
    const std::string s(text);
    for (char c : s)
        if (!std::isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') return std::nullopt;
    int n = std::sscanf(s.c_str(), "%x:%x:%x.%x%c", &domain, &bus, &dev, &fn, &tail);
    if (n != 4) {
        domain = 0;
        n = std::sscanf(s.c_str(), "%x:%x.%x%c", &bus, &dev, &fn, &tail);
        if (n != 3) return std::nullopt;
    }
    if (domain > 0xFFFF || bus > 0xFF || dev > 0x1F || fn > 7) return std::nullopt;
    return fmt::format("{:04x}:{:02x}:{:02x}.{:x}", domain, bus, dev, fn);
}

}  // namespace

Result<DeviceAddress> DeviceAddress::parse(std::string_view text) {
    if (text == "model") return DeviceAddress{Kind::kModel, ""};
    if (text.starts_with(kVfioUserPrefix)) {
        auto path = text.substr(kVfioUserPrefix.size());
        if (path.empty()) return make_error(EINVAL, "device address 'vfio-user:' needs a socket path after the colon");
        return DeviceAddress{Kind::kVfioUser, std::string(path)};
    }
    if (auto pci = canonical_pci_address(text)) return DeviceAddress{Kind::kPci, *pci};
    return make_error(EINVAL, fmt::format("unknown device address '{}': use model, vfio-user:PATH or a PCI address "
                                          "such as 0000:03:00.0",
                                          text));
}

void set_model_opener(ModelOpener opener) { g_model_opener.store(opener, std::memory_order_release); }

Result<std::unique_ptr<Device>> Device::open(std::string_view text, const OpenOptions& options) {
    auto address = DeviceAddress::parse(text);
    if (!address) return address.error();
    switch (address->kind) {
        case DeviceAddress::Kind::kModel: {
            if (ModelOpener opener = g_model_opener.load(std::memory_order_acquire)) return opener(options);
            return make_error(ENOTSUP,
                              "device address 'model': this program has no device model; the model is in "
                              "libvfioq-model, and vfioq::model::enable_model_address() lets "
                              "Device::open reach it (or use vfio-user:PATH with vfioq-devsim)");
        }
        case DeviceAddress::Kind::kVfioUser: {
            auto transport = connect_vfio_user(address->target, options.vfio_user);
            if (!transport) return transport.error();
            return from_transport(std::move(*transport), {}, options.dma);
        }
        case DeviceAddress::Kind::kPci: {
            auto transport = open_kernel_vfio(address->target, options.kernel);
            if (!transport) return transport.error();
            return from_transport(std::move(*transport), {}, options.dma);
        }
    }
    return make_error(EINVAL, "unreachable device address kind");
}

}  // namespace vfioq
