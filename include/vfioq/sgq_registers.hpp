// SPDX-License-Identifier: MIT
// The SGQ card's register map (docs/device-interface.md, section 2): offsets,
// fields and a description table that tools use to read and write registers
// by name. Shared by the driver and the reference model: one contract.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "vfioq/export.hpp"

namespace vfioq::sgq {

inline constexpr uint16_t kDefaultVendorId = 0x1234;
inline constexpr uint16_t kDefaultDeviceId = 0x5147;
inline constexpr uint32_t kClassCode = 0x088000;

inline constexpr uint32_t kRegisterBar = 0;
inline constexpr uint32_t kMsixBar = 2;
inline constexpr uint64_t kBar0Size = 16 * 1024;
inline constexpr uint64_t kBar2Size = 8 * 1024;
inline constexpr uint32_t kMsixTableOffset = 0x0000;
inline constexpr uint32_t kMsixPbaOffset = 0x1000;

inline constexpr uint64_t kQueueRegsBase = 0x1000;
inline constexpr uint64_t kQueueRegsStride = 0x40;
inline constexpr uint64_t kDoorbellBase = 0x2000;
inline constexpr uint64_t kDoorbellPageSize = 0x1000;

// Global registers.
inline constexpr uint64_t kRegId = 0x000;
inline constexpr uint64_t kRegVersion = 0x004;
inline constexpr uint64_t kRegCap = 0x008;
inline constexpr uint64_t kRegDevmemSize = 0x010;
inline constexpr uint64_t kRegCtrl = 0x018;
inline constexpr uint64_t kRegStatus = 0x01C;
inline constexpr uint64_t kRegScratch = 0x020;
inline constexpr uint64_t kRegReset = 0x024;
inline constexpr uint64_t kRegErrStatus = 0x030;
inline constexpr uint64_t kRegErrQid = 0x034;
inline constexpr uint64_t kRegErrAddr = 0x038;
inline constexpr uint64_t kRegStatCmds = 0x040;
inline constexpr uint64_t kRegStatBytes = 0x048;

// Queue-pair registers, relative to kQueueRegsBase + kQueueRegsStride * q.
inline constexpr uint64_t kQRegSqBase = 0x00;
inline constexpr uint64_t kQRegCqBase = 0x08;
inline constexpr uint64_t kQRegSqSize = 0x10;
inline constexpr uint64_t kQRegCqSize = 0x14;
inline constexpr uint64_t kQRegCtrl = 0x18;
inline constexpr uint64_t kQRegStatus = 0x1C;
inline constexpr uint64_t kQRegCoal = 0x20;

inline constexpr uint32_t kIdValue = 0x44514753;     // "SGQD"
inline constexpr uint32_t kVersionValue = 0x00010000;
inline constexpr uint32_t kResetMagic = 0x52534554;  // "RSET"

inline constexpr uint32_t kCtrlEn = 1u << 0;
inline constexpr uint32_t kCtrlShnShift = 14;
inline constexpr uint32_t kCtrlShnMask = 3u << kCtrlShnShift;
inline constexpr uint32_t kCtrlShnNormal = 1u << kCtrlShnShift;

inline constexpr uint32_t kStatusRdy = 1u << 0;
inline constexpr uint32_t kStatusCfs = 1u << 1;
inline constexpr uint32_t kStatusShstShift = 2;
inline constexpr uint32_t kStatusShstMask = 3u << kStatusShstShift;
inline constexpr uint32_t kShstNormal = 0;
inline constexpr uint32_t kShstInProgress = 1;
inline constexpr uint32_t kShstComplete = 2;

inline constexpr uint32_t kErrDmaFault = 1u << 0;
inline constexpr uint32_t kErrSgl = 1u << 1;
inline constexpr uint32_t kErrDoorbell = 1u << 2;
inline constexpr uint32_t kErrQueueFetch = 1u << 3;

inline constexpr uint32_t kQCtrlEnable = 1u << 0;
inline constexpr uint32_t kQCtrlIen = 1u << 1;
inline constexpr uint32_t kQCtrlVectorShift = 16;
inline constexpr uint32_t kQStatusEnabled = 1u << 0;
inline constexpr uint32_t kQStatusError = 1u << 1;

// CAP fields.
struct VFIOQ_API Cap {
    uint32_t mqes;       // entries minus 1
    uint32_t nqp;        // queue pairs minus 1
    uint32_t timeout;    // 100 ms units
    uint32_t dstrd;
    uint32_t sge_align;  // log2 bytes
    uint32_t max_xfer;   // log2 bytes
    uint32_t max_sge;

    static Cap decode(uint64_t cap);
    [[nodiscard]] uint64_t doorbell_stride() const { return 4ull << dstrd; }
    // Why a driver cannot use these fields as the contract means them (none when it can):
    // no entries or descriptors, MAX_XFER beyond what the 32-bit LENGTH carries or below
    // SGE_ALIGN, doorbells that overflow their page. Checked before any is used as a shift.
    [[nodiscard]] std::optional<std::string> problem() const;
    // 2^MAX_XFER, or 0 when MAX_XFER is out of range (so never a shift past 63).
    [[nodiscard]] uint64_t max_transfer_bytes() const { return max_xfer <= kMaxXferLog2 ? 1ull << max_xfer : 0; }
    static constexpr uint32_t kMaxXferLog2 = 31;  // LENGTH is 32 bits
};

inline constexpr uint64_t queue_register(uint32_t qid, uint64_t reg) {
    return kQueueRegsBase + kQueueRegsStride * qid + reg;
}
inline constexpr uint64_t sq_tail_doorbell(uint32_t qid, uint32_t dstrd) {
    return kDoorbellBase + (2ull * qid) * (4ull << dstrd);
}
inline constexpr uint64_t cq_head_doorbell(uint32_t qid, uint32_t dstrd) {
    return kDoorbellBase + (2ull * qid + 1) * (4ull << dstrd);
}

enum class Access { kRO, kRW, kRW1C, kWO };
VFIOQ_API const char* access_name(Access access);

struct Field {
    std::string_view name;
    uint32_t lsb;
    uint32_t width;
    std::string_view meaning;
};

struct RegisterDef {
    std::string_view name;
    uint64_t offset;  // within the register block (global) or a queue pair's block
    uint32_t width;   // bits: 32 or 64
    Access access;
    std::span<const Field> fields;
    bool per_queue;   // offset is relative to a queue pair's block
};

// Every global and queue-pair register, in address order.
VFIOQ_API std::span<const RegisterDef> registers();

// A register resolved to an absolute BAR0 offset: "SCRATCH", "Q3.SQ_BASE",
// "SQ3_TAIL" / "CQ3_HEAD" (doorbells; need DSTRD). Case-insensitive.
struct ResolvedRegister {
    std::string name;     // canonical spelling
    uint64_t offset;      // in BAR0
    uint32_t width;       // bits
    Access access;
    std::span<const Field> fields;
};
VFIOQ_API std::optional<ResolvedRegister> resolve_register(std::string_view name, uint32_t nqp, uint32_t dstrd);

// "EN=1 SHN=0x0" style decoding of a value into its fields.
VFIOQ_API std::string decode_fields(std::span<const Field> fields, uint64_t value);

}  // namespace vfioq::sgq
