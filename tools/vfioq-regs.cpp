// SPDX-License-Identifier: MIT
// vfioq-regs: peek and poke the card's registers, by name or by BAR and offset.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "cli.hpp"
#include "vfioq/device.hpp"
#include "vfioq/sgq_registers.hpp"

namespace {

constexpr std::string_view kTool = "vfioq-regs";

void usage(FILE* out) {
    fmt::print(out,
               "usage: vfioq-regs [--log-level LEVEL] DEVICE COMMAND ...\n"
               "\n"
               "  DEVICE read NAME                     read a register by name, fields decoded\n"
               "  DEVICE write NAME VALUE              write a register by name\n"
               "  DEVICE read REGION OFFSET [WIDTH]    read WIDTH bits (8, 16, 32, 64; default 32)\n"
               "  DEVICE write REGION OFFSET WIDTH VALUE\n"
               "  DEVICE list                          list register names\n"
               "\n"
               "DEVICE is model (the built-in model), vfio-user:PATH or a PCI address.\n"
               "NAME is a register of the SGQ card (SCRATCH, CAP, CTRL, ...), a queue-pair\n"
               "register Q<n>.<NAME> (Q0.SQ_BASE) or a doorbell SQ<n>_TAIL / CQ<n>_HEAD.\n"
               "REGION is bar0..bar5 or cfg (config space). Numbers take 0x for hex.\n");
}

std::optional<uint32_t> parse_region(std::string_view s) {
    std::string lower(s);
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    if (lower == "cfg" || lower == "config") return static_cast<uint32_t>(vfioq::PciRegion::kConfig);
    if (lower.size() == 4 && lower.starts_with("bar") && lower[3] >= '0' && lower[3] <= '5')
        return static_cast<uint32_t>(lower[3] - '0');
    return std::nullopt;
}

uint64_t parse_number(std::string_view what, std::string_view s) {
    auto v = vfioq::cli::parse_u64(s);
    if (!v) vfioq::cli::fail(kTool, fmt::format("{} '{}' is not a number", what, s), 2);
    return *v;
}

template <typename T>
T check(vfioq::Result<T> r) {
    if (!r) vfioq::cli::fail(kTool, r.error().message);
    if constexpr (!std::is_void_v<T>) return std::move(r).value();
}

uint64_t raw_read(vfioq::Device& dev, uint32_t region, uint64_t offset, unsigned width) {
    if (region == static_cast<uint32_t>(vfioq::PciRegion::kConfig)) return check(dev.config_read(offset, width));
    return check(dev.read(region, offset, width));
}

void raw_write(vfioq::Device& dev, uint32_t region, uint64_t offset, unsigned width, uint64_t value) {
    if (region == static_cast<uint32_t>(vfioq::PciRegion::kConfig))
        check(dev.config_write(offset, width, value));
    else
        check(dev.write(region, offset, width, value));
}

vfioq::sgq::ResolvedRegister resolve(vfioq::Device& dev, std::string_view name) {
    const auto cap = vfioq::sgq::Cap::decode(check(dev.read64(vfioq::sgq::kRegisterBar, vfioq::sgq::kRegCap)));
    auto reg = vfioq::sgq::resolve_register(name, cap.nqp, cap.dstrd);
    if (!reg)
        vfioq::cli::fail(kTool, fmt::format("{}: no register named '{}' (this device has queue pairs 0..{}; "
                                            "'vfioq-regs {} list' shows the names)",
                                            dev.name(), name, cap.nqp, dev.name()),
                         2);
    return *reg;
}

void print_register(const vfioq::sgq::ResolvedRegister& reg, uint64_t value) {
    fmt::print("{} = {:#x}\n", reg.name, value);
    const bool single_field = reg.fields.size() == 1 && reg.fields[0].lsb == 0 && reg.fields[0].width >= reg.width;
    if (single_field) return;
    size_t width = 0;
    for (const auto& f : reg.fields) width = std::max(width, f.name.size());
    for (const auto& f : reg.fields) {
        const uint64_t mask = f.width >= 64 ? ~0ull : (1ull << f.width) - 1;
        fmt::print("  {:<{}} = {:#x}  {}\n", f.name, width, (value >> f.lsb) & mask, f.meaning);
    }
}

void list_registers() {
    fmt::print("{:<12} {:>6} {:>5} {:<5} {}\n", "NAME", "OFFSET", "BITS", "ACCESS", "FIELDS");
    for (const auto& r : vfioq::sgq::registers()) {
        std::string fields;
        for (const auto& f : r.fields) fields += (fields.empty() ? "" : " ") + std::string(f.name);
        fmt::print("{:<12} {:>#6x} {:>5} {:<6} {}\n", r.per_queue ? "Q<n>." + std::string(r.name) : r.name,
                   r.per_queue ? vfioq::sgq::kQueueRegsBase + r.offset : r.offset, r.width,
                   vfioq::sgq::access_name(r.access), fields);
    }
    fmt::print("{:<12} {:>#6x} {:>5} {:<6} {}\n", "SQ<n>_TAIL", vfioq::sgq::kDoorbellBase, 32, "RW",
               "doorbell at 0x2000 + 2n * (4 << DSTRD)");
    fmt::print("{:<12} {:>6} {:>5} {:<6} {}\n", "CQ<n>_HEAD", "", 32, "RW",
               "doorbell at 0x2000 + (2n + 1) * (4 << DSTRD)");
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string_view> args;
    std::optional<std::string_view> log_level;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        }
        if (a == "--log-level") {
            if (i + 1 >= argc) vfioq::cli::fail(kTool, "--log-level needs a value", 2);
            log_level = argv[++i];
        } else if (a.starts_with("--log-level=")) {
            log_level = a.substr(12);
        } else {
            args.push_back(a);
        }
    }
    vfioq::cli::setup_logging(kTool, log_level);
    if (args.size() < 2) {
        usage(stderr);
        return 2;
    }
    const std::string_view command = args[1];
    if (command == "list" && args.size() == 2) {
        list_registers();
        return 0;
    }
    if (command != "read" && command != "write") {
        usage(stderr);
        return 2;
    }
    auto device = check(vfioq::Device::open(args[0]));
    auto region = args.size() > 2 ? parse_region(args[2]) : std::nullopt;

    if (command == "read") {
        if (region) {
            if (args.size() < 4 || args.size() > 5) vfioq::cli::fail(kTool, "read REGION OFFSET [WIDTH]", 2);
            const uint64_t offset = parse_number("offset", args[3]);
            const auto width = static_cast<unsigned>(args.size() == 5 ? parse_number("width", args[4]) : 32);
            const uint64_t value = raw_read(*device, *region, offset, width);
            fmt::print("{}+{:#x} = {:#0{}x}\n", args[2], offset, value, width / 4 + 2);
            return 0;
        }
        if (args.size() != 3) vfioq::cli::fail(kTool, "read NAME", 2);
        const auto reg = resolve(*device, args[2]);
        if (reg.access == vfioq::sgq::Access::kWO)
            fmt::print(stderr, "{}: note: {} is write-only; it reads as 0\n", kTool, reg.name);
        print_register(reg, check(device->read(vfioq::sgq::kRegisterBar, reg.offset, reg.width)));
        return 0;
    }

    if (region) {
        if (args.size() != 6) vfioq::cli::fail(kTool, "write REGION OFFSET WIDTH VALUE", 2);
        const uint64_t offset = parse_number("offset", args[3]);
        const auto width = static_cast<unsigned>(parse_number("width", args[4]));
        raw_write(*device, *region, offset, width, parse_number("value", args[5]));
        return 0;
    }
    if (args.size() != 4) vfioq::cli::fail(kTool, "write NAME VALUE", 2);
    const auto reg = resolve(*device, args[2]);
    const uint64_t value = parse_number("value", args[3]);
    if (reg.width < 64 && (value >> reg.width) != 0)
        vfioq::cli::fail(kTool, fmt::format("{:#x} does not fit the {}-bit register {}", value, reg.width, reg.name), 2);
    if (reg.access == vfioq::sgq::Access::kRO)
        fmt::print(stderr, "{}: note: {} is read-only; the device ignores the write\n", kTool, reg.name);
    check(device->write(vfioq::sgq::kRegisterBar, reg.offset, reg.width, value));
    return 0;
}
