// SPDX-License-Identifier: MIT
// The NVMe controller registers, admin and I/O opcodes vfioq uses (NVM
// Express Base Specification 2.0, section 3.1; NVM Command Set 1.0).
#pragma once

#include <cstddef>
#include <cstdint>

namespace vfioq::nvme {

inline constexpr uint32_t kClassCode = 0x010802;  // mass storage, NVM, NVMe

inline constexpr uint64_t kRegCap = 0x00;
inline constexpr uint64_t kRegVs = 0x08;
inline constexpr uint64_t kRegCc = 0x14;
inline constexpr uint64_t kRegCsts = 0x1C;
inline constexpr uint64_t kRegAqa = 0x24;
inline constexpr uint64_t kRegAsq = 0x28;
inline constexpr uint64_t kRegAcq = 0x30;
inline constexpr uint64_t kDoorbellBase = 0x1000;

inline constexpr uint32_t kCcEnable = 1u << 0;
inline constexpr uint32_t kCcIosqes = 6u << 16;  // 64-byte SQ entries
inline constexpr uint32_t kCcIocqes = 4u << 20;  // 16-byte CQ entries
inline constexpr uint32_t kCcShnNormal = 1u << 14;
inline constexpr uint32_t kCstsRdy = 1u << 0;
inline constexpr uint32_t kCstsCfs = 1u << 1;
inline constexpr uint32_t kCstsShstMask = 3u << 2;
inline constexpr uint32_t kCstsShstComplete = 2u << 2;

struct Cap {
    uint32_t mqes;     // entries minus 1
    uint32_t timeout;  // 500 ms units
    uint32_t dstrd;
    uint32_t mpsmin;   // 4 KiB << mpsmin
    bool nvm_command_set;

    static Cap decode(uint64_t v) {
        return Cap{static_cast<uint32_t>(v & 0xFFFF), static_cast<uint32_t>(v >> 24) & 0xFF,
                   static_cast<uint32_t>(v >> 32) & 0xF, static_cast<uint32_t>(v >> 48) & 0xF, ((v >> 37) & 1) != 0};
    }
};

inline constexpr uint64_t sq_tail_doorbell(uint32_t qid, uint32_t dstrd) {
    return kDoorbellBase + (2ull * qid) * (4ull << dstrd);
}
inline constexpr uint64_t cq_head_doorbell(uint32_t qid, uint32_t dstrd) {
    return kDoorbellBase + (2ull * qid + 1) * (4ull << dstrd);
}

// Admin opcodes.
inline constexpr uint8_t kAdminDeleteSq = 0x00;
inline constexpr uint8_t kAdminCreateSq = 0x01;
inline constexpr uint8_t kAdminDeleteCq = 0x04;
inline constexpr uint8_t kAdminCreateCq = 0x05;
inline constexpr uint8_t kAdminIdentify = 0x06;
inline constexpr uint8_t kAdminSetFeatures = 0x09;
inline constexpr uint8_t kAdminDoorbellBufferConfig = 0x7C;
// Identify controller: OACS (bytes 257:256), bit 8 says Doorbell Buffer Config is supported.
inline constexpr size_t kIdentifyOacs = 256;
inline constexpr uint16_t kOacsDoorbellBufferConfig = 1u << 8;
inline constexpr uint8_t kFeatureNumberOfQueues = 0x07;

// NVM I/O opcodes.
inline constexpr uint8_t kIoFlush = 0x00;
inline constexpr uint8_t kIoWrite = 0x01;
inline constexpr uint8_t kIoRead = 0x02;

// CDW0 bits 15:14 (byte 1 bits 7:6): PSDT, 01b = SGL for the data.
inline constexpr uint8_t kPsdtSgl = 0x40;

// A submission entry as 16 dwords.
struct Command {
    uint32_t dw[16];
};
static_assert(sizeof(Command) == 64);

}  // namespace vfioq::nvme
