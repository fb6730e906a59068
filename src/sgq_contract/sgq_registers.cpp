// SPDX-License-Identifier: MIT
#include "vfioq/sgq_registers.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>

namespace vfioq::sgq {
namespace {

constexpr Field kIdFields[] = {{"ID", 0, 32, "0x44514753 (\"SGQD\")"}};
constexpr Field kVersionFields[] = {{"MINOR", 0, 16, "minor version"}, {"MAJOR", 16, 16, "major version"}};
constexpr Field kCapFields[] = {
    {"MQES", 0, 16, "maximum entries per queue minus 1"},
    {"NQP", 16, 8, "number of queue pairs minus 1"},
    {"TO", 24, 8, "worst-case EN/RDY transition time, 100 ms units"},
    {"DSTRD", 32, 4, "doorbell stride: 4 << DSTRD bytes"},
    {"SGE_ALIGN", 36, 4, "DATA descriptor alignment, log2 bytes"},
    {"MAX_XFER", 40, 8, "maximum bytes per command, log2"},
    {"MAX_SGE", 48, 16, "maximum DATA descriptors per command"},
};
constexpr Field kDevmemFields[] = {{"DEVMEM_SIZE", 0, 64, "bytes of on-card memory"}};
constexpr Field kCtrlFields[] = {{"EN", 0, 1, "enable"}, {"SHN", 14, 2, "shutdown notification (1 = normal)"}};
constexpr Field kStatusFields[] = {{"RDY", 0, 1, "ready"},
                                   {"CFS", 1, 1, "controller fatal status"},
                                   {"SHST", 2, 2, "shutdown status (0 normal, 1 in progress, 2 complete)"}};
constexpr Field kScratchFields[] = {{"SCRATCH", 0, 32, "reads back what was written"}};
constexpr Field kResetFields[] = {{"RESET", 0, 32, "write 0x52534554 (\"RSET\") to reset"}};
constexpr Field kErrStatusFields[] = {{"DMA_FAULT", 0, 1, "DMA fault"},
                                      {"SGL_ERROR", 1, 1, "SGL error"},
                                      {"DOORBELL_ERROR", 2, 1, "doorbell error"},
                                      {"QUEUE_FETCH_FAULT", 3, 1, "queue fetch fault"}};
constexpr Field kErrQidFields[] = {{"QID", 0, 16, "queue of the last error"},
                                   {"CID", 16, 16, "command of the last error"}};
constexpr Field kErrAddrFields[] = {{"ERR_ADDR", 0, 64, "IOVA of the last DMA fault"}};
constexpr Field kStatCmdsFields[] = {{"STAT_CMDS", 0, 64, "commands completed since reset"}};
constexpr Field kStatBytesFields[] = {{"STAT_BYTES", 0, 64, "data bytes moved since reset"}};
constexpr Field kBaseFields[] = {{"BASE", 0, 64, "IOVA of the ring (4 KiB aligned)"}};
constexpr Field kSizeFields[] = {{"SIZE", 0, 32, "entries minus 1"}};
constexpr Field kQCtrlFields[] = {
    {"ENABLE", 0, 1, "queue enable"}, {"IEN", 1, 1, "interrupt enable"}, {"VECTOR", 16, 16, "MSI-X vector"}};
constexpr Field kQStatusFields[] = {{"ENABLED", 0, 1, "queue enabled"}, {"ERROR", 1, 1, "queue halted"}};
constexpr Field kQCoalFields[] = {{"THRESHOLD", 0, 16, "aggregation threshold, entries (0 = every entry)"},
                                  {"TIME", 16, 16, "aggregation time, microseconds"}};
constexpr Field kDoorbellFields[] = {{"VALUE", 0, 32, "ring index"}};

constexpr RegisterDef kRegisters[] = {
    {"ID", kRegId, 32, Access::kRO, kIdFields, false},
    {"VERSION", kRegVersion, 32, Access::kRO, kVersionFields, false},
    {"CAP", kRegCap, 64, Access::kRO, kCapFields, false},
    {"DEVMEM_SIZE", kRegDevmemSize, 64, Access::kRO, kDevmemFields, false},
    {"CTRL", kRegCtrl, 32, Access::kRW, kCtrlFields, false},
    {"STATUS", kRegStatus, 32, Access::kRO, kStatusFields, false},
    {"SCRATCH", kRegScratch, 32, Access::kRW, kScratchFields, false},
    {"RESET", kRegReset, 32, Access::kWO, kResetFields, false},
    {"ERR_STATUS", kRegErrStatus, 32, Access::kRW1C, kErrStatusFields, false},
    {"ERR_QID", kRegErrQid, 32, Access::kRO, kErrQidFields, false},
    {"ERR_ADDR", kRegErrAddr, 64, Access::kRO, kErrAddrFields, false},
    {"STAT_CMDS", kRegStatCmds, 64, Access::kRO, kStatCmdsFields, false},
    {"STAT_BYTES", kRegStatBytes, 64, Access::kRO, kStatBytesFields, false},
    {"SQ_BASE", kQRegSqBase, 64, Access::kRW, kBaseFields, true},
    {"CQ_BASE", kQRegCqBase, 64, Access::kRW, kBaseFields, true},
    {"SQ_SIZE", kQRegSqSize, 32, Access::kRW, kSizeFields, true},
    {"CQ_SIZE", kQRegCqSize, 32, Access::kRW, kSizeFields, true},
    {"Q_CTRL", kQRegCtrl, 32, Access::kRW, kQCtrlFields, true},
    {"Q_STATUS", kQRegStatus, 32, Access::kRO, kQStatusFields, true},
    {"Q_COAL", kQRegCoal, 32, Access::kRW, kQCoalFields, true},
};

std::string upper(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::toupper(c); });
    return out;
}

// Parses the decimal queue number at the start of s; nullopt if none.
std::optional<uint32_t> parse_qid(std::string_view& s) {
    uint32_t q = 0;
    auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), q);
    if (ec != std::errc() || ptr == s.data()) return std::nullopt;
    s.remove_prefix(static_cast<size_t>(ptr - s.data()));
    return q;
}

}  // namespace

Cap Cap::decode(uint64_t cap) {
    return Cap{static_cast<uint32_t>(cap & 0xFFFF),        static_cast<uint32_t>((cap >> 16) & 0xFF),
               static_cast<uint32_t>((cap >> 24) & 0xFF),  static_cast<uint32_t>((cap >> 32) & 0xF),
               static_cast<uint32_t>((cap >> 36) & 0xF),   static_cast<uint32_t>((cap >> 40) & 0xFF),
               static_cast<uint32_t>((cap >> 48) & 0xFFFF)};
}

std::optional<std::string> Cap::problem() const {
    if (mqes == 0) return "MQES 0: a queue of one entry can never hold a command";
    if (max_sge == 0) return "MAX_SGE 0: a command can carry no data descriptor";
    if (max_xfer > kMaxXferLog2)
        return fmt::format("MAX_XFER {} claims 2^{} bytes per command; the 32-bit LENGTH carries at most 2^{}",
                           max_xfer, max_xfer, kMaxXferLog2);
    if (max_xfer < sge_align)
        return fmt::format("MAX_XFER {} is below SGE_ALIGN {}: no aligned transfer fits", max_xfer, sge_align);
    const uint64_t doorbell_bytes = (uint64_t{nqp} + 1) * 2 * doorbell_stride();
    if (doorbell_bytes > kDoorbellPageSize)
        return fmt::format(
            "the doorbells of {} queue pairs at DSTRD {} need {} bytes, more than the {}-byte "
            "doorbell page",
            nqp + 1, dstrd, doorbell_bytes, kDoorbellPageSize);
    return std::nullopt;
}

const char* access_name(Access access) {
    switch (access) {
        case Access::kRO: return "RO";
        case Access::kRW: return "RW";
        case Access::kRW1C: return "RW1C";
        case Access::kWO: return "WO";
    }
    return "?";
}

std::span<const RegisterDef> registers() { return kRegisters; }

std::optional<ResolvedRegister> resolve_register(std::string_view name, uint32_t nqp, uint32_t dstrd) {
    const std::string n = upper(name);
    std::string_view s = n;
    // Doorbells: SQ<q>_TAIL, CQ<q>_HEAD.
    for (auto [prefix, suffix, is_cq] : {std::tuple{"SQ", "_TAIL", false}, std::tuple{"CQ", "_HEAD", true}}) {
        std::string_view rest = s;
        if (!rest.starts_with(prefix)) continue;
        rest.remove_prefix(2);
        auto q = parse_qid(rest);
        if (!q || rest != suffix || *q > nqp) continue;
        return ResolvedRegister{fmt::format("{}{}{}", prefix, *q, suffix),
                                is_cq ? cq_head_doorbell(*q, dstrd) : sq_tail_doorbell(*q, dstrd), 32, Access::kRW,
                                kDoorbellFields};
    }
    // Queue-pair registers: Q<q>.<NAME>.
    std::optional<uint32_t> qid;
    if (s.starts_with("Q") && s.size() > 1 && std::isdigit(static_cast<unsigned char>(s[1]))) {
        std::string_view rest = s.substr(1);
        qid = parse_qid(rest);
        if (!qid || !rest.starts_with(".") || *qid > nqp) return std::nullopt;
        s = rest.substr(1);
    }
    for (const auto& r : kRegisters) {
        if (r.name != s || r.per_queue != qid.has_value()) continue;
        if (qid)
            return ResolvedRegister{fmt::format("Q{}.{}", *qid, r.name), queue_register(*qid, r.offset), r.width,
                                    r.access, r.fields};
        return ResolvedRegister{std::string(r.name), r.offset, r.width, r.access, r.fields};
    }
    return std::nullopt;
}

std::string decode_fields(std::span<const Field> fields, uint64_t value) {
    std::string out;
    for (const auto& f : fields) {
        const uint64_t mask = f.width >= 64 ? ~0ull : ((1ull << f.width) - 1);
        const uint64_t v = (value >> f.lsb) & mask;
        if (!out.empty()) out += ' ';
        out += f.width == 1 ? fmt::format("{}={}", f.name, v) : fmt::format("{}={:#x}", f.name, v);
    }
    return out;
}

}  // namespace vfioq::sgq
