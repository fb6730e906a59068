// SPDX-License-Identifier: MIT
// vfioq-regs: peek and poke the card's registers, by name or by BAR and offset.
#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <fstream>
#include <string>
#include <vector>

#include "cli.hpp"
#include "vfioq/device.hpp"
#include "vfioq/model.hpp"
#include "vfioq/sgq_identity.hpp"
#include "vfioq/sgq_registers.hpp"

namespace {

constexpr std::string_view kTool = "vfioq-regs";

// Where the operation at hand came from ("ops.txt line 3: "), so that an error names it.
std::string g_where;

[[noreturn]] void fail(const std::string& message, int status = 1) {
    vfioq::cli::fail(kTool, g_where + message, status);
}

void usage(FILE* out) {
    fmt::print(out,
               "usage: vfioq-regs [--log-level LEVEL] DEVICE COMMAND ...\n"
               "       vfioq-regs [--log-level LEVEL] DEVICE -f FILE\n"
               "\n"
               "  DEVICE read NAME                     read a register by name, fields decoded\n"
               "  DEVICE write NAME VALUE              write a register by name\n"
               "  DEVICE read REGION OFFSET [WIDTH]    read WIDTH bits (8, 16, 32, 64; default 32)\n"
               "  DEVICE write REGION OFFSET WIDTH VALUE\n"
               "  DEVICE list                          list register names\n"
               "Several commands may follow one DEVICE (write SCRATCH 0x1 read SCRATCH): they run\n"
               "in order on one opening of the device. vfio-pci resets a device when it is\n"
               "opened and closed (and the model, as the card's contract says, when its client goes),\n"
               "so a value read back must be read in the same call.\n"
               "-f FILE (or --file FILE) takes the commands from FILE, one a line; '#' starts a comment.\n"
               "Every command is checked before the device is opened; they run in order and the first\n"
               "that fails stops the run, named by its line in FILE.\n"
               "\n"
               "DEVICE is model (the built-in model), vfio-user:PATH or a PCI address.\n"
               "NAME is a register of the SGQ card (SCRATCH, CAP, CTRL, ...), a queue-pair\n"
               "register Q<n>.<NAME> (Q0.SQ_BASE) or a doorbell SQ<n>_TAIL / CQ<n>_HEAD.\n"
               "REGION is bar0..bar5 or cfg (config space). Numbers take 0x for hex.\n"
               "Registers by name need the SGQ card; by REGION and OFFSET any device will do.\n"
               "\n"
               "exit status: 0 every command done; 1 the device could not be opened or a command\n"
               "failed on it (not an SGQ card, for a name); 2 a usage error (an unknown command,\n"
               "register or option, a bad number, a FILE that cannot be read).\n");
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
    if (!v) fail(fmt::format("{} '{}' is not a number", what, s), 2);
    return *v;
}

template <typename T>
T check(vfioq::Result<T> r) {
    if (!r) fail(r.error().message);
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
    if (auto why = vfioq::sgq::why_not_sgq(dev))
        fail(fmt::format("{}: cannot name register '{}': not an SGQ card ({}); any device's registers can be read by "
                         "region and offset (read bar0 0x0)",
                         dev.name(), name, *why));
    const auto cap = vfioq::sgq::Cap::decode(check(dev.read64(vfioq::sgq::kRegisterBar, vfioq::sgq::kRegCap)));
    auto reg = vfioq::sgq::resolve_register(name, cap.nqp, cap.dstrd);
    if (!reg)
        fail(fmt::format("{}: no register named '{}' (this device has queue pairs 0..{}; "
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

// One read or write of the command line, checked before the device is opened.
struct RegCommand {
    bool write = false;
    std::optional<uint32_t> region;  // else by name
    std::string_view name;           // register name, or the region as given
    uint64_t offset = 0;
    unsigned width = 32;
    uint64_t value = 0;
    std::string where;  // "FILE line N: " for a command from a file
};

bool is_verb(std::string_view s) { return s == "read" || s == "write"; }

unsigned parse_width(std::string_view s) {
    const auto w = parse_number("width", s);
    if (w != 8 && w != 16 && w != 32 && w != 64)
        fail(fmt::format("width {} is not one of 8, 16, 32, 64", w), 2);
    return static_cast<unsigned>(w);
}

// read NAME | read REGION OFFSET [WIDTH] | write NAME VALUE | write REGION OFFSET WIDTH VALUE, repeated.
std::vector<RegCommand> parse_commands(std::span<const std::string_view> args) {
    std::vector<RegCommand> out;
    const std::string where = g_where;
    size_t i = 0;
    auto next = [&](const char* what) {
        if (i >= args.size() || is_verb(args[i]))
            fail(fmt::format("{} needs {}", out.empty() ? "the command" : "a command", what), 2);
        return args[i++];
    };
    while (i < args.size()) {
        RegCommand c;
        c.where = where;
        if (!is_verb(args[i]))
            fail(fmt::format("'{}' is not a command (read, write or list)", args[i]), 2);
        c.write = args[i++] == "write";
        c.name = next(c.write ? "a register and a value" : "a register");
        c.region = parse_region(c.name);
        if (c.region) {
            c.offset = parse_number("offset", next("an offset"));
            if (c.write) {
                c.width = parse_width(next("a width"));
                c.value = parse_number("value", next("a value"));
            } else if (i < args.size() && !is_verb(args[i])) {
                c.width = parse_width(args[i++]);
            }
        } else if (c.write) {
            c.value = parse_number("value", next("a value"));
        }
        out.push_back(c);
    }
    return out;
}

// The commands of a file: one a line, '#' to the end of a line a comment. The lines are kept in `lines`,
// which the commands' names point into.
std::vector<RegCommand> parse_file(const std::string& path, std::deque<std::string>& lines) {
    std::ifstream in(path);
    if (!in) fail(fmt::format("cannot read {}: {}", path, std::strerror(errno)), 2);
    std::vector<RegCommand> out;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (auto hash = line.find('#'); hash != std::string::npos) line.erase(hash);
        lines.push_back(line);
        std::vector<std::string_view> words;
        const std::string_view text = lines.back();
        for (size_t at = 0; at < text.size();) {
            at = text.find_first_not_of(" \t\r", at);
            if (at == std::string_view::npos) break;
            const size_t end = std::min(text.find_first_of(" \t\r", at), text.size());
            words.push_back(text.substr(at, end - at));
            at = end;
        }
        if (words.empty()) continue;
        g_where = fmt::format("{} line {}: ", path, number);
        auto commands = parse_commands(words);
        out.insert(out.end(), commands.begin(), commands.end());
    }
    g_where.clear();
    if (out.empty()) fail(fmt::format("{} holds no command", path), 2);
    return out;
}

void run(vfioq::Device& device, const RegCommand& c) {
    if (c.region) {
        if (c.write) {
            raw_write(device, *c.region, c.offset, c.width, c.value);
        } else {
            const uint64_t value = raw_read(device, *c.region, c.offset, c.width);
            fmt::print("{}+{:#x} = {:#0{}x}\n", c.name, c.offset, value, c.width / 4 + 2);
        }
        return;
    }
    const auto reg = resolve(device, c.name);
    if (!c.write) {
        if (reg.access == vfioq::sgq::Access::kWO)
            fmt::print(stderr, "{}: note: {} is write-only; it reads as 0\n", kTool, reg.name);
        print_register(reg, check(device.read(vfioq::sgq::kRegisterBar, reg.offset, reg.width)));
        return;
    }
    if (reg.width < 64 && (c.value >> reg.width) != 0)
        fail(fmt::format("{:#x} does not fit the {}-bit register {}", c.value, reg.width, reg.name), 2);
    if (reg.access == vfioq::sgq::Access::kRO)
        fmt::print(stderr, "{}: note: {} is read-only; the device ignores the write\n", kTool, reg.name);
    check(device.write(vfioq::sgq::kRegisterBar, reg.offset, reg.width, c.value));
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string_view> args;
    std::optional<std::string_view> log_level;
    std::optional<std::string> file;
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            usage(stdout);
            return 0;
        }
        if (a == "--log-level") {
            if (i + 1 >= argc) fail("--log-level needs a value", 2);
            log_level = argv[++i];
        } else if (a.starts_with("--log-level=")) {
            log_level = a.substr(12);
        } else if (a == "-f" || a == "--file") {
            if (i + 1 >= argc) fail(std::string(a) + " needs a file", 2);
            file = argv[++i];
        } else {
            args.push_back(a);
        }
    }
    vfioq::cli::setup_logging(kTool, log_level);
    // `model` is an address like any other here; the model library serves it.
    vfioq::model::enable_model_address();
    if (file && args.size() != 1) fail("-f FILE takes the commands from FILE: give only DEVICE besides", 2);
    if (!file && args.size() < 2) {
        usage(stderr);
        return 2;
    }
    if (!file && args[1] == "list" && args.size() == 2) {
        list_registers();
        return 0;
    }
    // Every command is checked before the device is opened: a typo in the third
    // command must not leave the first two done.
    std::deque<std::string> lines;
    auto commands = file ? parse_file(*file, lines) : parse_commands(std::span(args).subspan(1));
    auto device = check(vfioq::Device::open(args[0]));
    for (const auto& c : commands) {
        g_where = c.where;
        run(*device, c);
    }
    g_where.clear();
    // A kernel VFIO device is reset by vfio-pci when it is closed (and when it is opened), and a vfio-user
    // card when its client goes (device interface, section 6), so a value written here does not survive this
    // process: say so once.
    const auto address = vfioq::DeviceAddress::parse(args[0]);
    if (commands.size() == 1 && commands[0].write && address && address->kind != vfioq::DeviceAddress::Kind::kModel)
        fmt::print(stderr,
                   "{}: note: {} resets {} when it is closed, so the value is gone once this command "
                   "exits; to see it, read it in the same call: {} {} write ... read ...\n",
                   kTool, address->kind == vfioq::DeviceAddress::Kind::kPci ? "vfio-pci" : "the card", args[0],
                   kTool, args[0]);
    return 0;
}
