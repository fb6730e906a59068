// SPDX-License-Identifier: MIT
// vfioq-info: with no device, the host's PCI devices and what it offers for
// VFIO; with a device, its identity, capabilities, regions, IRQs and the
// SGQ registers decoded.
#include <fmt/format.h>
#include <linux/pci_regs.h>
#include <sys/utsname.h>

extern "C" {
#include <pci/pci.h>
}

#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "cli.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/model.hpp"
#include "vfioq/pci_info.hpp"
#include "vfioq/sgq_identity.hpp"
#include "vfioq/sgq_registers.hpp"

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTool = "vfioq-info";

std::string read_line(const fs::path& path) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);
    return line;
}

std::string link_target_name(const fs::path& link) {
    std::error_code ec;
    auto target = fs::read_symlink(link, ec);
    return ec ? std::string("-") : target.filename().string();
}

std::string human_size(uint64_t bytes) {
    if (bytes >= (1ull << 30) && bytes % (1ull << 30) == 0) return fmt::format("{} GiB", bytes >> 30);
    if (bytes >= (1ull << 20) && bytes % (1ull << 20) == 0) return fmt::format("{} MiB", bytes >> 20);
    if (bytes >= 1024 && bytes % 1024 == 0) return fmt::format("{} KiB", bytes >> 10);
    return fmt::format("{} bytes", bytes);
}

// The link as the kernel reports it in sysfs, else from the PCIe capability.
std::string link_of(pci_dev* dev, const fs::path& sysfs) {
    std::string speed = read_line(sysfs / "current_link_speed");
    std::string width = read_line(sysfs / "current_link_width");
    if (!speed.empty() && !width.empty() && speed.find("Unknown") == std::string::npos) return speed + " x" + width;
    if (pci_cap* cap = pci_find_cap(dev, PCI_CAP_ID_EXP, PCI_CAP_NORMAL)) {
        const unsigned sta = pci_read_word(dev, static_cast<int>(cap->addr + PCI_EXP_LNKSTA));
        if ((sta & PCI_EXP_LNKSTA_NLW) != 0)
            return fmt::format("{} x{}", vfioq::pci_link_speed_name(sta & PCI_EXP_LNKSTA_CLS),
                               (sta & PCI_EXP_LNKSTA_NLW) >> 4);
    }
    return "-";
}

// libpci reports fatal errors through a printf-style callback.
// The GNU spelling: clang makes it part of the type that libpci's callback pointer has.
__attribute__((noreturn)) void libpci_error(char* format, ...) {
    va_list args;
    va_start(args, format);
    std::fprintf(stderr, "vfioq-info: libpci: ");
    std::vfprintf(stderr, format, args);
    std::fprintf(stderr, "\n");
    va_end(args);
    std::exit(1);
}

void list_host() {
    pci_access* pacc = pci_alloc();
    pacc->error = libpci_error;
    pci_init(pacc);
    pci_scan_bus(pacc);
    pci_dev* sorted = nullptr;  // insertion sort by address: the kernel's order is not the reader's
    while (pacc->devices) {
        pci_dev* d = pacc->devices;
        pacc->devices = d->next;
        auto key = [](pci_dev* x) { return std::tuple(x->domain, x->bus, x->dev, x->func); };
        pci_dev** at = &sorted;
        while (*at && key(*at) < key(d)) at = &(*at)->next;
        d->next = *at;
        *at = d;
    }
    pacc->devices = sorted;
    fmt::print("{:<13} {:<9} {:<6} {:<12} {:<6} {:<5} {:<22} {}\n", "ADDRESS", "ID", "CLASS", "DRIVER",
               "GROUP", "NUMA", "LINK", "NAME");
    size_t count = 0;
    for (pci_dev* dev = pacc->devices; dev != nullptr; dev = dev->next) {
        pci_fill_info(dev, PCI_FILL_IDENT | PCI_FILL_CLASS | PCI_FILL_NUMA_NODE | PCI_FILL_CAPS);
        const std::string address =
            fmt::format("{:04x}:{:02x}:{:02x}.{:x}", dev->domain, dev->bus, dev->dev, dev->func);
        const fs::path sysfs = fs::path("/sys/bus/pci/devices") / address;
        char name[256];
        const char* n = pci_lookup_name(pacc, name, sizeof(name), PCI_LOOKUP_VENDOR | PCI_LOOKUP_DEVICE,
                                        dev->vendor_id, dev->device_id);
        fmt::print("{:<13} {:04x}:{:04x} {:06x} {:<12} {:<6} {:<5} {:<22} {}\n", address, dev->vendor_id,
                   dev->device_id, dev->device_class << 8 | (pci_read_byte(dev, PCI_CLASS_PROG)),
                   link_target_name(sysfs / "driver"), link_target_name(sysfs / "iommu_group"),
                   dev->numa_node < 0 ? std::string("-") : std::to_string(dev->numa_node), link_of(dev, sysfs),
                   n ? n : "");
        ++count;
    }
    pci_cleanup(pacc);
    if (count == 0) fmt::print("(no PCI devices visible)\n");

    fmt::print("\nVFIO on this host:\n");
    std::error_code ec;
    size_t groups = 0;
    if (fs::exists("/sys/kernel/iommu_groups", ec))
        for ([[maybe_unused]] auto& g : fs::directory_iterator("/sys/kernel/iommu_groups", ec)) ++groups;
    fmt::print("  IOMMU          {}\n", groups ? fmt::format("on ({} groups)", groups)
                                              : "off or absent (no IOMMU groups; add intel_iommu=on or "
                                                "amd_iommu=on to the kernel command line)");
    std::string vfio_pci = "not available";
    if (fs::exists("/sys/bus/pci/drivers/vfio-pci", ec)) {
        vfio_pci = "loaded";
    } else {
        utsname u{};
        ::uname(&u);
        const fs::path mods = fs::path("/lib/modules") / u.release;
        if (fs::exists(mods, ec))
            for (auto it = fs::recursive_directory_iterator(mods, ec); it != fs::recursive_directory_iterator();
                 it.increment(ec)) {
                if (ec) break;
                if (it->path().filename().string().starts_with("vfio-pci.ko")) {
                    vfio_pci = "available as a module (modprobe vfio-pci)";
                    break;
                }
            }
    }
    fmt::print("  vfio-pci       {}\n", vfio_pci);
    fmt::print("  container      {}\n", fs::exists("/dev/vfio/vfio", ec) ? "/dev/vfio/vfio" : "no /dev/vfio/vfio");
    const bool iommufd = fs::exists("/dev/iommu", ec);
    const bool cdev = fs::exists("/dev/vfio/devices", ec);
    fmt::print("  iommufd/cdev   {}\n", iommufd && cdev ? "yes (/dev/iommu, /dev/vfio/devices)"
                                       : iommufd      ? "/dev/iommu only (no VFIO device cdevs)"
                                                      : "no /dev/iommu");
    const fs::path noiommu = "/sys/module/vfio/parameters/enable_unsafe_noiommu_mode";
    fmt::print("  no-IOMMU mode  {}\n", fs::exists(noiommu, ec)
                                            ? (read_line(noiommu) == "Y" ? "enabled (unsafe)" : "supported, off")
                                            : "not offered by this kernel's vfio");
}

template <typename T>
T check(vfioq::Result<T> r) {
    if (!r) vfioq::cli::fail(kTool, r.error().message);
    if constexpr (!std::is_void_v<T>) return std::move(r).value();
}

// An NVMe controller: brought up through the NVMe profile, which is what vfioq's tools drive.
void show_nvme(vfioq::Device& dev) {
    auto ctrl = vfioq::Controller::open(dev);
    if (!ctrl) {
        fmt::print("\nNVMe controller: bring-up failed: {}\n", ctrl.error().message);
        return;
    }
    const auto& i = (*ctrl)->info();
    fmt::print("\nNVMe controller (version {}.{}):\n", i.version >> 16, (i.version >> 8) & 0xFF);
    fmt::print("  namespace 1    {} blocks of {} bytes ({})\n", i.devmem_size / i.block_size, i.block_size,
               human_size(i.devmem_size));
    fmt::print("  I/O queues     {} of up to {} entries\n", i.queue_pairs, i.max_queue_entries);
    fmt::print("  per command    {} (MDTS), data by {} (up to {} segments)\n", human_size(i.max_transfer),
               i.segment_alignment == 4096 ? "PRP lists" : "SGL", i.max_segments);
}

void show_sgq_registers(vfioq::Device& dev) {
    using namespace vfioq::sgq;
    if (auto why = why_not_sgq(dev)) {
        fmt::print("\nNot an SGQ card: {}.\n", *why);
        return;
    }
    fmt::print("\nSGQ registers (BAR0):\n");
    for (const auto& r : registers()) {
        if (r.per_queue || r.access == Access::kWO) continue;
        const uint64_t v = check(dev.read(kRegisterBar, r.offset, r.width));
        const bool single = r.fields.size() == 1 && r.fields[0].width >= r.width;
        fmt::print("  {:<12} {:#0{}x}{}{}\n", r.name, v, r.width / 4 + 2, single ? "" : "  ",
                   single ? "" : decode_fields(r.fields, v));
    }
    const Cap cap = Cap::decode(check(dev.read64(kRegisterBar, kRegCap)));
    if (auto why = cap.problem())
        fmt::print("  => CAP cannot be used as the contract means it: {}\n", *why);
    else
        fmt::print(
            "  => {} queue pairs of up to {} entries, {} per command in up to {} descriptors, doorbell "
            "stride {}\n",
            cap.nqp + 1, uint64_t{cap.mqes} + 1, human_size(cap.max_transfer_bytes()), cap.max_sge,
            cap.doorbell_stride());
    fmt::print("\nQueue pairs:\n");
    for (uint32_t q = 0; q <= cap.nqp; ++q) {
        const uint32_t ctrl = check(dev.read32(kRegisterBar, queue_register(q, kQRegCtrl)));
        const uint32_t status = check(dev.read32(kRegisterBar, queue_register(q, kQRegStatus)));
        auto ring = [&](uint64_t base_reg, uint64_t size_reg) {
            const uint64_t base = check(dev.read64(kRegisterBar, queue_register(q, base_reg)));
            const uint32_t size = check(dev.read32(kRegisterBar, queue_register(q, size_reg)));
            return size == 0 && base == 0 ? std::string("unset")
                                          : fmt::format("{:#x} ({} entries)", base, uint64_t{size} + 1);
        };
        fmt::print("  Q{:<3} {:<8} SQ {}  CQ {}  vector {}{}\n", q,
                   status & kQStatusError ? "ERROR" : status & kQStatusEnabled ? "enabled" : "disabled",
                   ring(kQRegSqBase, kQRegSqSize), ring(kQRegCqBase, kQRegCqSize), ctrl >> kQCtrlVectorShift,
                   ctrl & kQCtrlIen ? ", interrupts on" : "");
    }
}

// Runs `commands` NOPs through a queue pair and reports what the card did
// wrong: statuses, refused completion entries (with the last ones as the
// card wrote them), timeouts and the recoveries they caused. Healthy only if
// every command came back SUCCESS and nothing else went wrong.
bool check_health(vfioq::Device& dev, uint32_t commands, std::chrono::milliseconds timeout) {
    using namespace std::chrono;
    fmt::print("\nHealth check ({} NOP commands, timeout {} ms):\n", commands, timeout.count());
    auto verdict = [](const std::string& why) {
        fmt::print("  verdict        FAILED: {}\n", why);
        return false;
    };
    auto ctrl = vfioq::Controller::open(dev);
    if (!ctrl) {
        fmt::print("  bring-up failed: {}\n", ctrl.error().message);
        return verdict("bring-up failed");
    }
    auto qp = (*ctrl)->create_queue_pair({.depth = 32, .command_timeout = timeout});
    if (!qp) {
        fmt::print("  no queue pair: {}\n", qp.error().message);
        return verdict("no queue pair");
    }
    struct Tally {
        std::map<vfioq::IoStatus, uint64_t> statuses;
        uint64_t reported = 0;
    } tally;
    auto cb = [](const vfioq::Completion& c) {
        auto* t = static_cast<Tally*>(c.context);
        ++t->statuses[c.status];
        ++t->reported;
    };
    uint32_t submitted = 0;
    std::string stopped;
    const auto give_up = steady_clock::now() + timeout * 4 + seconds(10);
    while (tally.reported < commands && steady_clock::now() < give_up) {
        while (submitted < commands) {
            auto r = (*qp)->submit({vfioq::Opcode::kNop, 0, {}, cb, &tally});
            if (!r) {
                if (r.error().code != EAGAIN) stopped = r.error().message;
                break;
            }
            ++submitted;
        }
        if (!stopped.empty()) break;
        (*qp)->poll();
    }
    (void)(*qp)->close();
    std::string by_status;
    for (const auto& [st, n] : tally.statuses)
        by_status += fmt::format("{}{} {}", by_status.empty() ? "" : ", ", vfioq::io_status_name(st), n);
    fmt::print("  reported       {} of {}: {}\n", tally.reported, submitted, by_status.empty() ? "none" : by_status);
    if (!stopped.empty()) fmt::print("  stopped        {}\n", stopped);
    const auto st = (*qp)->stats();
    fmt::print("  device errors  {}: CID out of range {}, CID not outstanding {}, wrong SQ id {}, SQ head invalid {}\n",
               st.device_errors, st.cid_out_of_range, st.cid_not_outstanding, st.wrong_sqid, st.sq_head_invalid);
    fmt::print("  error status   {} completions\n", st.error_statuses);
    fmt::print("  recovery       {} timeouts, {} queue recoveries, {} controller resets\n", st.timeouts,
               st.queue_recoveries, st.controller_resets);
    const auto bad = (*qp)->bad_completions();
    if (!bad.empty()) fmt::print("  last bad completion entries (as the card wrote them):\n");
    for (const auto& b : bad)
        fmt::print("    {:08x} {:08x} {:08x} {:08x}  CID {}, SQ id {}, SQ head {}, status {:#x}: {}\n", b.dwords[0],
                   b.dwords[1], b.dwords[2], b.dwords[3], b.dwords[3] & 0xFFFF, b.dwords[2] >> 16,
                   b.dwords[2] & 0xFFFF, b.dwords[3] >> 17, b.reason);
    if (dev.gone()) fmt::print("  the device is gone: {}\n", dev.gone_reason());
    const auto success = tally.statuses.find(vfioq::IoStatus::kSuccess);
    const uint64_t successes = success == tally.statuses.end() ? 0 : success->second;
    if (dev.gone()) return verdict("the device is gone");
    if (!stopped.empty()) return verdict("a submission failed");
    if (tally.reported < commands)
        return verdict(fmt::format("{} of {} commands never came back", commands - tally.reported, commands));
    if (successes != commands)
        return verdict(fmt::format("{} of {} commands did not complete SUCCESS", commands - successes, commands));
    if (st.device_errors != 0)
        return verdict(fmt::format("the card posted {} bad completion entries", st.device_errors));
    if (st.timeouts != 0) return verdict(fmt::format("{} timeouts", st.timeouts));
    fmt::print("  verdict        healthy: {} of {} SUCCESS\n", successes, commands);
    return true;
}

// Returns the exit status: 0 when the inspection (and --check, if asked) went well.
int show_device(std::string_view address, uint32_t check_commands, std::chrono::milliseconds timeout) {
    auto dev = check(vfioq::Device::open(address));
    auto& t = dev->transport();
    const auto& info = t.device_info();
    const auto id = check(vfioq::read_pci_identity(t));
    fmt::print("Device {}\n", dev->name());
    fmt::print("  identity     {:04x}:{:04x} rev {:02x}, class {:06x}, subsystem {:04x}:{:04x}{}\n", id.vendor_id,
               id.device_id, id.revision, id.class_code, id.subsystem_vendor_id, id.subsystem_id,
               id.vendor_id == vfioq::sgq::kDefaultVendorId && id.device_id == vfioq::sgq::kDefaultDeviceId
                   ? " (SGQ DMA card)"
                   : "");
    fmt::print("  reset        {}\n", info.can_reset ? "supported" : "not offered");

    fmt::print("\nCapabilities:\n");
    for (const auto& cap : check(vfioq::read_pci_capabilities(t)))
        fmt::print("  [{:#04x}] {:<16} {}\n", cap.offset, cap.name, cap.summary);

    fmt::print("\nRegions:\n");
    for (uint32_t i = 0; i < info.num_regions; ++i) {
        const auto r = check(t.region_info(i));
        if (r.size == 0) continue;
        std::string areas;
        for (const auto& a : r.mmap_areas) areas += fmt::format(" [{:#x}, +{:#x})", a.offset, a.size);
        fmt::print("  {:<13} {:>9}  {}{}  {}\n", vfioq::region_name(i), human_size(r.size), r.readable ? "r" : "-",
                   r.writable ? "w" : "-", r.mappable ? "mmap" + areas : "trapped");
    }
    fmt::print("\nIRQs:\n");
    for (uint32_t i = 0; i < info.num_irqs; ++i) {
        const auto irq = check(t.irq_info(i));
        if (irq.count == 0) continue;
        fmt::print("  {:<6} {} vectors{}{}{}\n", vfioq::irq_name(i), irq.count, irq.eventfd ? ", eventfd" : "",
                   irq.maskable ? ", maskable" : "", irq.noresize ? ", no resize" : "");
    }
    const uint32_t class_code = static_cast<uint32_t>(check(dev->config_read(0x08, 32)) >> 8);
    if (class_code == 0x010802)
        show_nvme(*dev);
    else
        show_sgq_registers(*dev);
    if (check_commands && !check_health(*dev, check_commands, timeout)) return 1;
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::optional<std::string_view> log_level;
    std::optional<std::string_view> address;
    uint32_t check_commands = 0;
    std::chrono::milliseconds timeout{1000};
    auto number = [&](std::string_view opt, std::string_view v, uint64_t max) {
        auto n = vfioq::cli::parse_u64(v);
        if (!n || *n > max) vfioq::cli::fail(kTool, fmt::format("{} takes a number up to {}", opt, max), 2);
        return *n;
    };
    for (int i = 1; i < argc; ++i) {
        std::string_view a = argv[i];
        if (a == "-h" || a == "--help") {
            fmt::print("usage: vfioq-info [--log-level LEVEL] [--check N [--timeout-ms MS]] [DEVICE]\n\n"
                       "Without DEVICE: the host's PCI devices (driver, IOMMU group, NUMA node, link)\n"
                       "and what the host offers for VFIO. With DEVICE (model, vfio-user:PATH or a\n"
                       "PCI address): identity, capabilities, regions, IRQs and the SGQ registers\n"
                       "(ERR_STATUS, ERR_QID and ERR_ADDR decoded).\n\n"
                       "  --check N        run N NOP commands and report the card's errors: statuses,\n"
                       "                   refused completion entries by kind and the last ones raw,\n"
                       "                   timeouts and recoveries\n"
                       "  --timeout-ms MS  the per-command timeout of --check (default 1000)\n\n"
                       "A device that is not the SGQ card (any vfio-user server or PCI function) is\n"
                       "inspected as far as it goes: identity, capabilities, regions and IRQs, then\n"
                       "why it is not an SGQ card (no BAR0, its size, its ID register).\n\n"
                       "exit status: 0 the inspection was done, and with --check every command came\n"
                       "back SUCCESS; 1 the device could not be opened or inspected, or --check found\n"
                       "the card unhealthy (bring-up failed, a command failed, timed out or never came\n"
                       "back, bad completion entries, the device went away); 2 a usage error.\n");
            return 0;
        }
        if (a == "--check" && i + 1 < argc) {
            check_commands = static_cast<uint32_t>(number(a, argv[++i], 10000000));
        } else if (a == "--timeout-ms" && i + 1 < argc) {
            timeout = std::chrono::milliseconds(number(a, argv[++i], 3600000));
        } else if (a == "--log-level" && i + 1 < argc) {
            log_level = argv[++i];
        } else if (a.starts_with("--log-level=")) {
            log_level = a.substr(12);
        } else if (a.starts_with("-")) {
            vfioq::cli::fail(kTool, fmt::format("unknown option '{}'", a), 2);
        } else if (address) {
            vfioq::cli::fail(kTool, "one device at a time", 2);
        } else {
            address = a;
        }
    }
    vfioq::cli::setup_logging(kTool, log_level);
    // `model` is an address like any other here; the model library serves it.
    vfioq::model::enable_model_address();
    if (address) return show_device(*address, check_commands, timeout);
    list_host();
    return 0;
}
