// SPDX-License-Identifier: MIT
// The SGQ card's queue entries (docs/device-interface.md, section 3): the
// 64-byte submission entry, the 16-byte completion entry, the SGL descriptor
// and the status codes. Shared by the driver and the reference model.
#pragma once

#include <cstdint>

#include "vfioq/export.hpp"

namespace vfioq::sgq {

inline constexpr uint8_t kOpNop = 0x00;
inline constexpr uint8_t kOpWrite = 0x01;  // H2C: host buffers -> card memory
inline constexpr uint8_t kOpRead = 0x02;   // C2H: card memory -> host buffers

// SGL descriptor types, in bits 7:4 of byte 15.
inline constexpr uint8_t kSglData = 0x0;
inline constexpr uint8_t kSglSegment = 0x2;
inline constexpr uint8_t kSglLastSegment = 0x3;

struct SglDescriptor {
    uint64_t addr;
    uint32_t len;
    uint8_t reserved[3];
    uint8_t type;  // bits 7:4; bits 3:0 reserved

    [[nodiscard]] uint8_t kind() const { return type >> 4; }
    // "All zero when unused" (DPTR2).
    [[nodiscard]] bool unused() const {
        return addr == 0 && len == 0 && type == 0 && !reserved[0] && !reserved[1] && !reserved[2];
    }
    static SglDescriptor make(uint8_t kind, uint64_t addr, uint32_t len) {
        return {addr, len, {0, 0, 0}, static_cast<uint8_t>(kind << 4)};
    }
};
static_assert(sizeof(SglDescriptor) == 16);

struct SubmissionEntry {
    uint8_t opcode;
    uint8_t flags;
    uint16_t cid;
    uint32_t length;
    uint64_t devaddr;
    uint64_t reserved1;
    SglDescriptor dptr1;
    SglDescriptor dptr2;
    uint64_t reserved2;
};
static_assert(sizeof(SubmissionEntry) == 64);

struct CompletionEntry {
    uint32_t result;  // bytes transferred
    uint32_t reserved;
    uint16_t sqhd;
    uint16_t sqid;
    uint16_t cid;
    uint16_t status_phase;  // bit 0 phase, bits 15:1 status

    [[nodiscard]] bool phase() const { return status_phase & 1; }
    [[nodiscard]] uint16_t status() const { return status_phase >> 1; }
};
static_assert(sizeof(CompletionEntry) == 16);

inline constexpr uint32_t kSqEntrySize = sizeof(SubmissionEntry);
inline constexpr uint32_t kCqEntrySize = sizeof(CompletionEntry);

// Completion status codes (section 3.4).
enum class Status : uint16_t {
    kSuccess = 0,
    kInvalidOpcode = 1,
    kInvalidField = 2,
    kDevaddrRange = 3,
    kLengthInvalid = 4,
    kSglInvalid = 5,
    kSglLengthMismatch = 6,
    kDmaFault = 7,
    kAborted = 8,
    kInternal = 9,
};

// "SUCCESS", "DMA_FAULT", ... as the spec spells them; "STATUS_0x2a" for an unknown code.
VFIOQ_API const char* status_name(uint16_t code);

}  // namespace vfioq::sgq
