// SPDX-License-Identifier: MIT
// The vfio-user wire format (QEMU docs/interop/vfio-user.rst), shared by the
// client transport and the model's server. Flag values are those of
// <linux/vfio.h>, which the protocol reuses.
#pragma once

#include <linux/vfio.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace vfioq::vfio_user {

inline constexpr uint16_t kVersionMajor = 0;
inline constexpr uint16_t kVersionMinor = 1;

// Defaults the protocol assumes when a peer does not state a capability.
inline constexpr uint32_t kDefaultMaxMsgFds = 1;
inline constexpr uint64_t kDefaultMaxDataXferSize = 1 << 20;
inline constexpr uint64_t kDefaultMaxDmaMaps = 65535;
inline constexpr uint64_t kDefaultPgsizes = 4096;

// What we accept in one message: room for the largest data transfer plus its
// fixed fields, and a bound on fds so a peer cannot exhaust our table.
inline constexpr uint32_t kMaxMsgFds = 16;
inline constexpr uint64_t kMaxDataXferSize = 1 << 20;
inline constexpr uint32_t kMaxMessageSize = kMaxDataXferSize + 4096;

enum class Command : uint16_t {
    kVersion = 1,
    kDmaMap = 2,
    kDmaUnmap = 3,
    kDeviceGetInfo = 4,
    kDeviceGetRegionInfo = 5,
    kDeviceGetRegionIoFds = 6,
    kDeviceGetIrqInfo = 7,
    kDeviceSetIrqs = 8,
    kRegionRead = 9,
    kRegionWrite = 10,
    kDmaRead = 11,
    kDmaWrite = 12,
    kDeviceReset = 13,
    kRegionWriteMulti = 15,
    kDeviceFeature = 16,
    kMigDataRead = 17,
    kMigDataWrite = 18,
};

const char* command_name(uint16_t command);

inline constexpr uint32_t kFlagTypeMask = 0xf;
inline constexpr uint32_t kFlagTypeCommand = 0x0;
inline constexpr uint32_t kFlagTypeReply = 0x1;
inline constexpr uint32_t kFlagNoReply = 1u << 4;
inline constexpr uint32_t kFlagError = 1u << 5;

struct Header {
    uint16_t msg_id;
    uint16_t command;
    uint32_t msg_size;  // including this header
    uint32_t flags;
    uint32_t error_reply;
};
static_assert(sizeof(Header) == 16);

struct VersionPayload {
    uint16_t major;
    uint16_t minor;
    // followed by optional NUL-terminated JSON
};
static_assert(sizeof(VersionPayload) == 4);

inline constexpr uint32_t kDmaFlagReadable = 1u << 0;
inline constexpr uint32_t kDmaFlagWritable = 1u << 1;

struct DmaMapPayload {
    uint32_t argsz;
    uint32_t flags;
    uint64_t offset;
    uint64_t address;
    uint64_t size;
};
static_assert(sizeof(DmaMapPayload) == 32);

// DMA_UNMAP flags, as VFIO's type1 IOMMU defines them.
inline constexpr uint32_t kDmaUnmapFlagAll = 1u << 1;

struct DmaUnmapPayload {
    uint32_t argsz;
    uint32_t flags;
    uint64_t address;
    uint64_t size;
};
static_assert(sizeof(DmaUnmapPayload) == 24);

struct DeviceInfoPayload {
    uint32_t argsz;
    uint32_t flags;
    uint32_t num_regions;
    uint32_t num_irqs;
};
static_assert(sizeof(DeviceInfoPayload) == 16);

struct RegionInfoPayload {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t cap_offset;
    uint64_t size;
    uint64_t offset;
};
static_assert(sizeof(RegionInfoPayload) == 32);

struct CapHeader {
    uint16_t id;
    uint16_t version;
    uint32_t next;
};
static_assert(sizeof(CapHeader) == 8);

struct SparseMmapHeader {
    uint32_t nr_areas;
    uint32_t reserved;
};
struct SparseMmapArea {
    uint64_t offset;
    uint64_t size;
};
static_assert(sizeof(SparseMmapHeader) == 8 && sizeof(SparseMmapArea) == 16);

struct IrqInfoPayload {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t count;
};
static_assert(sizeof(IrqInfoPayload) == 16);

struct IrqSetPayload {
    uint32_t argsz;
    uint32_t flags;
    uint32_t index;
    uint32_t start;
    uint32_t count;
    // followed by count bool bytes with VFIO_IRQ_SET_DATA_BOOL
};
static_assert(sizeof(IrqSetPayload) == 20);

struct RegionAccessPayload {
    uint64_t offset;
    uint32_t region;
    uint32_t count;
    // followed by data (write request, read reply)
};
static_assert(sizeof(RegionAccessPayload) == 16);

struct DmaAccessPayload {
    uint64_t address;
    uint64_t count;
    // followed by data (write request, read reply)
};
static_assert(sizeof(DmaAccessPayload) == 16);

// Copies a fixed-size struct out of a payload; nullopt when it is too short.
template <typename T>
std::optional<T> read_struct(std::span<const std::byte> payload, size_t at = 0) {
    if (payload.size() < at || payload.size() - at < sizeof(T)) return std::nullopt;
    T value;
    std::memcpy(&value, payload.data() + at, sizeof(T));
    return value;
}

template <typename T>
void append_struct(std::vector<std::byte>& out, const T& value) {
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    out.insert(out.end(), p, p + sizeof(T));
}

// The capabilities one side states in VERSION.
struct Capabilities {
    uint32_t max_msg_fds = kDefaultMaxMsgFds;
    uint64_t max_data_xfer_size = kDefaultMaxDataXferSize;
    uint64_t max_dma_maps = kDefaultMaxDmaMaps;
    uint64_t pgsizes = kDefaultPgsizes;
    bool twin_socket_supported = false;
    std::optional<uint32_t> twin_socket_fd_index;
};

// VERSION payload JSON: {"capabilities": {...}}.
std::string capabilities_to_json(const Capabilities& caps);

// Parses the optional JSON of a VERSION payload. Absent fields keep the
// protocol's defaults. A malformed document or a field of the wrong type is
// an error message, never an exception.
std::optional<std::string> parse_capabilities(std::span<const std::byte> json, Capabilities& caps);

}  // namespace vfioq::vfio_user
