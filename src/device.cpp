// SPDX-License-Identifier: MIT
#include "vfioq/device.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <cstring>

#include "vfioq/log.hpp"

namespace vfioq {
namespace {

constexpr uint32_t kBarCount = 6;

bool valid_width(unsigned width) { return width == 8 || width == 16 || width == 32 || width == 64; }

}  // namespace

// Opening a device by address lives in device_open.cpp, beside the transports it picks.

Result<std::unique_ptr<Device>> Device::from_transport(std::unique_ptr<Transport> transport,
                                                       std::shared_ptr<void> keepalive, const DmaOptions& dma) {
    std::unique_ptr<Device> device(new Device());
    device->keepalive_ = std::move(keepalive);
    device->transport_ = std::move(transport);
    if (auto r = device->map_bars(); !r) return r.error();
    device->dma_ = std::make_unique<DmaContext>(*device->transport_, device->transport_->name(), dma);
    Device* d = device.get();
    d->transport_->on_connection_lost([d](const Error& why) { d->mark_gone(why.message); });
    return device;
}

Device::~Device() {
    transport_->on_connection_lost({});
    dma_.reset();
    mappings_.clear();
    transport_.reset();
}

Result<void> Device::map_bars() {
    const uint32_t count = std::min(kBarCount, transport_->device_info().num_regions);
    for (uint32_t bar = 0; bar < count; ++bar) {
        auto info = transport_->region_info(bar);
        if (!info) return info.error();
        bars_.push_back(*info);
        for (const auto& area : info->mmap_areas) {
            auto mapping = transport_->map_region(bar, area);
            if (!mapping) {
                // Messages still reach the area; slower, but nothing is lost.
                log::logger<log::kDevice>().warn("{}: {}", name(), mapping.error().message);
                continue;
            }
            mappings_.push_back(std::move(*mapping));
            mapping_bar_.push_back(bar);
        }
    }
    return {};
}

volatile void* Device::mapped(uint32_t bar, uint64_t offset, size_t size) const {
    for (size_t i = 0; i < mappings_.size(); ++i)
        if (mapping_bar_[i] == bar && mappings_[i].contains(offset, size))
            return static_cast<std::byte*>(mappings_[i].data()) + (offset - mappings_[i].region_offset());
    return nullptr;
}

std::string Device::gone_reason() const {
    std::lock_guard lock(gone_mutex_);
    return gone_reason_;
}

void Device::mark_gone(const std::string& why) {
    {
        std::lock_guard lock(gone_mutex_);
        if (gone_.load()) return;
        gone_reason_ = why;
        for (auto& m : mappings_) m.replace_with_all_ones();
        gone_.store(true, std::memory_order_release);
    }
    log::logger<log::kDevice>().error("{}: the device is gone: {}", name(), why);
}

Error Device::gone_error(const char* verb, uint32_t index, uint64_t offset) const {
    return make_error(ENODEV, fmt::format("{}: {} at {:#x} of {}: the device is gone ({})", name(), verb, offset,
                                          region_name(index), gone_reason()));
}

Result<void> Device::check_access(const char* verb, uint32_t index, uint64_t offset, unsigned width) const {
    if (!valid_width(width))
        return make_error(EINVAL, fmt::format("{}: {} of {}: width {} is not 8, 16, 32 or 64 bits", name(), verb,
                                              region_name(index), width));
    if (offset % (width / 8) != 0)
        return make_error(EINVAL, fmt::format("{}: {} of {} bits at {:#x} in {} is not naturally aligned", name(),
                                              verb, width, offset, region_name(index)));
    if (index < kBarCount) {
        if (index >= bars_.size() || bars_[index].size == 0)
            return make_error(EINVAL, fmt::format("{}: {} is not implemented by this device", name(),
                                                  region_name(index)));
        if (offset >= bars_[index].size || width / 8 > bars_[index].size - offset)
            return make_error(EINVAL, fmt::format("{}: {} at {:#x} is beyond {} ({:#x} bytes)", name(), verb, offset,
                                                  region_name(index), bars_[index].size));
    }
    return {};
}

Result<uint64_t> Device::read(uint32_t bar, uint64_t offset, unsigned width) {
    if (auto r = check_access("read", bar, offset, width); !r) return r.error();
    if (gone()) return gone_error("read", bar, offset);
    if (volatile void* p = mapped(bar, offset, width / 8)) {
        switch (width) {
            case 8: return *static_cast<volatile uint8_t*>(p);
            case 16: return *static_cast<volatile uint16_t*>(p);
            case 32: return *static_cast<volatile uint32_t*>(p);
            default: return *static_cast<volatile uint64_t*>(p);
        }
    }
    uint64_t value = 0;
    auto r = transport_->region_read(bar, offset, {reinterpret_cast<std::byte*>(&value), width / 8});
    if (!r) return r.error();
    return value;
}

Result<void> Device::write(uint32_t bar, uint64_t offset, unsigned width, uint64_t value) {
    if (auto r = check_access("write", bar, offset, width); !r) return r.error();
    if (width < 64 && (value >> width) != 0)
        return make_error(EINVAL, fmt::format("{}: value {:#x} does not fit in {} bits", name(), value, width));
    if (gone()) return gone_error("write", bar, offset);
    if (volatile void* p = mapped(bar, offset, width / 8)) {
        switch (width) {
            case 8: *static_cast<volatile uint8_t*>(p) = static_cast<uint8_t>(value); break;
            case 16: *static_cast<volatile uint16_t*>(p) = static_cast<uint16_t>(value); break;
            case 32: *static_cast<volatile uint32_t*>(p) = static_cast<uint32_t>(value); break;
            default: *static_cast<volatile uint64_t*>(p) = value; break;
        }
        return {};
    }
    return transport_->region_write(bar, offset, {reinterpret_cast<const std::byte*>(&value), width / 8});
}

Result<uint32_t> Device::read32(uint32_t bar, uint64_t offset) {
    auto v = read(bar, offset, 32);
    if (!v) return v.error();
    return static_cast<uint32_t>(*v);
}

Result<uint64_t> Device::read64(uint32_t bar, uint64_t offset) { return read(bar, offset, 64); }

Result<void> Device::write32(uint32_t bar, uint64_t offset, uint32_t value) { return write(bar, offset, 32, value); }

Result<void> Device::write64(uint32_t bar, uint64_t offset, uint64_t value) { return write(bar, offset, 64, value); }

Result<uint64_t> Device::config_read(uint64_t offset, unsigned width) {
    const auto config = static_cast<uint32_t>(PciRegion::kConfig);
    if (auto r = check_access("read", config, offset, width); !r) return r.error();
    if (gone()) return gone_error("read", config, offset);
    uint64_t value = 0;
    if (auto r = transport_->config_read(offset, {reinterpret_cast<std::byte*>(&value), width / 8}); !r)
        return r.error();
    return value;
}

Result<void> Device::config_write(uint64_t offset, unsigned width, uint64_t value) {
    const auto config = static_cast<uint32_t>(PciRegion::kConfig);
    if (auto r = check_access("write", config, offset, width); !r) return r.error();
    if (gone()) return gone_error("write", config, offset);
    return transport_->config_write(offset, {reinterpret_cast<const std::byte*>(&value), width / 8});
}

}  // namespace vfioq
