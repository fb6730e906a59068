// SPDX-License-Identifier: MIT
// vfioq-perf: drives the card at full speed and reports what diskspd reports,
// so that Linux and Windows figures can be laid side by side; the driver's
// own cost per command, and references measured on this machine in the same
// run (io_uring NOP, a cache line's round trip, the bare ring, memcpy).
#include <fmt/format.h>
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <chrono>
#include <ctime>
#include <fstream>
#include <thread>

#include "cli.hpp"
#include "perf/diskspd_flags.hpp"
#include "perf/report.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/model.hpp"
#include "vfioq/vfio_user.hpp"

namespace {

using namespace vfioq;
using namespace vfioq::perf;
constexpr std::string_view kTool = "vfioq-perf";

struct Options {
    std::string device = "model";
    Workload w;
    uint32_t queue_pairs = 1;
    double duration_s = 5, warmup_s = 1;
    double stall_s = 10;
    std::string model_mode;  // empty: null, or data with --verify
    int model_cpu = -2;  // -2: chosen; -1: not pinned
    std::vector<int> cpus;  // empty: chosen
    bool pin = true;
    bool references = true;
    int progress = -1;  // -1: when stderr is a terminal
    std::string json_path, csv_path;
    std::string diskspd_flags;
    bool shadow_doorbells = true;
};

void usage(FILE* out) {
    fmt::print(out,
               "usage: vfioq-perf [OPTIONS] [DEVICE]\n"
               "\n"
               "Keeps queue pairs at their depth with reads and writes and reports diskspd's figures\n"
               "(MiB/s, IOPS and its deviation, latency percentiles, CPU per thread), the driver's CPU\n"
               "per command and memory per queue pair, beside references measured in the same run.\n"
               "\n"
               "Workload\n"
               "  --read-percent N     reads among the commands, the rest writes (default 100)\n"
               "  --write              all writes (--read-percent 0)\n"
               "  --sequential         sequential card addresses (default random, block aligned)\n"
               "  --block-size LIST    bytes per command, or a comma list drawn uniformly (default 4096)\n"
               "  --depth N            commands outstanding per queue pair, 1 to 4096 (default 256)\n"
               "  --batch N            commands per doorbell, at most (default: half the depth, so\n"
               "                       that the card works through one half while the other is refilled)\n"
               "  --segments N         scatter/gather segments per command (default 1)\n"
               "  --queue-pairs N      queue pairs, each on its own thread (default 1)\n"
               "  --interrupts         wait for MSI-X interrupts (through io_uring) instead of polling\n"
               "  --registration MODE  pre (one DMA buffer, default) or per-io (application memory\n"
               "                       registered for every command through the registration cache)\n"
               "  --verify             every command's own card block is written, read back and checked\n"
               "  --no-shadow-doorbells  NVMe: write every doorbell to its register, even where the\n"
               "                       controller offers shadow doorbells (Doorbell Buffer Config)\n"
               "Run\n"
               "  --duration S         measured seconds (default 5)\n"
               "  --ios N              or: commands per queue pair to measure\n"
               "  --warmup S           seconds before measuring (default 1)\n"
               "  --stall-timeout S    stop when no command has completed for S seconds (default 10)\n"
               "  --diskspd \"FLAGS\"    the workload as diskspd's flags, as given to diskspd: -b -o -t -r -s -w\n"
               "                       -d -W -L -D (and -S, a cache there is none of here); flags with no\n"
               "                       meaning here (-c -F -O -g -Z ...) are refused with the reason\n"
               "  --interval-ms N      IOPS deviation over intervals of N ms (default 1000)\n"
               "  --cpus LIST          CPUs for the threads, in order (default: the device's NUMA node's,\n"
               "                       or the process's)\n"
               "  --no-pin             leave threads where the scheduler puts them\n"
               "  --no-references      skip the io_uring, cache-line, bare-ring and memcpy references\n"
               "  --progress, --no-progress  the live line on stderr (default: on a terminal)\n"
               "  --seed N             addresses and mix (default 1)\n"
               "Model (DEVICE model)\n"
               "  --model-mode MODE    null: commands complete without moving data (default), to measure\n"
               "                       the driver; data: data moves as on the card (default with --verify)\n"
               "  --model-cpu N        the model's CPU (default: one the threads do not use, if any)\n"
               "Report\n"
               "  --json PATH          the report as JSON too (- for stdout, instead of text)\n"
               "  --csv PATH           one CSV row per thread and a total (- for stdout, instead of text)\n"
               "  --log-level LEVEL    trace, debug, info, warn, error or off, or SUBSYSTEM=LEVEL,...\n"
               "\n"
               "DEVICE is model (default), vfio-user:PATH or a PCI address.\n"
               "\n"
               "exit status: 0 every command succeeded; 1 a command failed or read back wrong, or the\n"
               "device stalled or went away; 2 a setup error (a bad option or --diskspd flag, a device\n"
               "that cannot be opened or brought up, a workload the device cannot run).\n");
}

uint64_t number(std::string_view opt, const char* s, uint64_t lo, uint64_t hi) {
    auto v = cli::parse_u64(s);
    if (!v || *v < lo || *v > hi) cli::fail(kTool, fmt::format("{} takes a number from {} to {}, not '{}'", opt, lo, hi, s), 2);
    return *v;
}

double seconds(std::string_view opt, const char* s) {
    char* end = nullptr;
    const double v = std::strtod(s, &end);
    if (!end || *end || v < 0 || v > 86400) cli::fail(kTool, fmt::format("{} takes seconds, not '{}'", opt, s), 2);
    return v;
}

std::vector<uint64_t> number_list(std::string_view opt, std::string_view list, uint64_t lo, uint64_t hi) {
    std::vector<uint64_t> out;
    while (!list.empty()) {
        const auto comma = list.find(',');
        const std::string item(list.substr(0, comma));
        out.push_back(number(opt, item.c_str(), lo, hi));
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
    }
    if (out.empty()) cli::fail(kTool, fmt::format("{} needs at least one value", opt), 2);
    return out;
}

// "0-3,8,10-11" as CPU numbers.
std::vector<int> cpu_list(std::string_view text) {
    std::vector<int> out;
    while (!text.empty()) {
        const auto comma = text.find(',');
        const std::string item(text.substr(0, comma));
        unsigned a = 0, b = 0;
        if (std::sscanf(item.c_str(), "%u-%u", &a, &b) == 2 && a <= b && b < 4096) {
            for (unsigned c = a; c <= b; ++c) out.push_back(static_cast<int>(c));
        } else if (std::sscanf(item.c_str(), "%u", &a) == 1 && a < 4096) {
            out.push_back(static_cast<int>(a));
        }
        text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    }
    return out;
}

Options parse(int argc, char** argv) {
    Options o;
    std::optional<std::string_view> log_level;
    enum {
        kReadPct = 1000,
        kWrite,
        kSeq,
        kBlock,
        kDepth,
        kBatch,
        kSegments,
        kQps,
        kIrq,
        kReg,
        kVerify,
        kDuration,
        kIos,
        kWarmup,
        kInterval,
        kCpus,
        kNoPin,
        kNoRefs,
        kProgress,
        kNoProgress,
        kSeed,
        kModelMode,
        kModelCpu,
        kJson,
        kCsv,
        kLog,
        kHelp,
        kStall,
        kDiskspd,
        kNoShadow
    };
    static const option longs[] = {{"read-percent", required_argument, nullptr, kReadPct},
                                   {"write", no_argument, nullptr, kWrite},
                                   {"sequential", no_argument, nullptr, kSeq},
                                   {"block-size", required_argument, nullptr, kBlock},
                                   {"depth", required_argument, nullptr, kDepth},
                                   {"batch", required_argument, nullptr, kBatch},
                                   {"segments", required_argument, nullptr, kSegments},
                                   {"queue-pairs", required_argument, nullptr, kQps},
                                   {"interrupts", no_argument, nullptr, kIrq},
                                   {"registration", required_argument, nullptr, kReg},
                                   {"verify", no_argument, nullptr, kVerify},
                                   {"no-shadow-doorbells", no_argument, nullptr, kNoShadow},
                                   {"duration", required_argument, nullptr, kDuration},
                                   {"ios", required_argument, nullptr, kIos},
                                   {"warmup", required_argument, nullptr, kWarmup},
                                   {"interval-ms", required_argument, nullptr, kInterval},
                                   {"cpus", required_argument, nullptr, kCpus},
                                   {"no-pin", no_argument, nullptr, kNoPin},
                                   {"no-references", no_argument, nullptr, kNoRefs},
                                   {"progress", no_argument, nullptr, kProgress},
                                   {"no-progress", no_argument, nullptr, kNoProgress},
                                   {"seed", required_argument, nullptr, kSeed},
                                   {"model-mode", required_argument, nullptr, kModelMode},
                                   {"model-cpu", required_argument, nullptr, kModelCpu},
                                   {"json", required_argument, nullptr, kJson},
                                   {"csv", required_argument, nullptr, kCsv},
                                   {"log-level", required_argument, nullptr, kLog},
                                   {"stall-timeout", required_argument, nullptr, kStall},
                                   {"diskspd", required_argument, nullptr, kDiskspd},
                                   {"help", no_argument, nullptr, kHelp},
                                   {nullptr, 0, nullptr, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, nullptr)) != -1) {
        switch (c) {
            case kReadPct: o.w.read_percent = static_cast<uint32_t>(number("--read-percent", optarg, 0, 100)); break;
            case kWrite: o.w.read_percent = 0; break;
            case kSeq: o.w.random = false; break;
            case kBlock: {
                o.w.block_sizes.clear();
                for (auto b : number_list("--block-size", optarg, 1, 1u << 30)) o.w.block_sizes.push_back(static_cast<uint32_t>(b));
                break;
            }
            case kDepth: o.w.depth = static_cast<uint32_t>(number("--depth", optarg, 1, 4096)); break;
            case kBatch: o.w.batch = static_cast<uint32_t>(number("--batch", optarg, 1, 4096)); break;
            case kSegments: o.w.segments = static_cast<uint32_t>(number("--segments", optarg, 1, 65535)); break;
            case kQps: o.queue_pairs = static_cast<uint32_t>(number("--queue-pairs", optarg, 1, 256)); break;
            case kIrq: o.w.interrupts = true; break;
            case kReg: {
                const std::string_view m(optarg);
                if (m == "pre") o.w.registration = BufferMode::kPreRegistered;
                else if (m == "per-io") o.w.registration = BufferMode::kPerIo;
                else cli::fail(kTool, fmt::format("--registration takes pre or per-io, not '{}'", m), 2);
                break;
            }
            case kVerify: o.w.verify = true; break;
            case kNoShadow: o.shadow_doorbells = false; break;
            case kDuration: o.duration_s = seconds("--duration", optarg); break;
            case kIos: o.w.ios = number("--ios", optarg, 1, ~0ull); break;
            case kWarmup: o.warmup_s = seconds("--warmup", optarg); break;
            case kStall: o.stall_s = std::max(0.1, seconds("--stall-timeout", optarg)); break;
            case kInterval: o.w.interval_ns = number("--interval-ms", optarg, 1, 3'600'000) * 1'000'000; break;
            case kCpus: {
                o.cpus = cpu_list(optarg);
                if (o.cpus.empty()) cli::fail(kTool, fmt::format("--cpus: no CPU in '{}'", optarg), 2);
                break;
            }
            case kNoPin: o.pin = false; break;
            case kNoRefs: o.references = false; break;
            case kProgress: o.progress = 1; break;
            case kNoProgress: o.progress = 0; break;
            case kSeed: o.w.seed = number("--seed", optarg, 0, ~0ull); break;
            case kModelMode: {
                o.model_mode = optarg;
                if (o.model_mode != "null" && o.model_mode != "data")
                    cli::fail(kTool, fmt::format("--model-mode takes null or data, not '{}'", o.model_mode), 2);
                break;
            }
            case kModelCpu: o.model_cpu = static_cast<int>(number("--model-cpu", optarg, 0, 4095)); break;
            case kJson: o.json_path = optarg; break;
            case kCsv: o.csv_path = optarg; break;
            case kLog: log_level = optarg; break;
            case kDiskspd: {
                auto d = parse_diskspd_flags(optarg);
                if (!d) cli::fail(kTool, d.error().message, 2);
                o.diskspd_flags = optarg;
                o.w.block_sizes = {d->block};
                o.w.depth = d->outstanding;
                o.queue_pairs = d->threads;
                o.w.random = d->random;
                o.w.read_percent = 100 - d->write_percent;
                o.duration_s = d->duration_s;
                o.warmup_s = d->warmup_s;
                o.w.interval_ns = uint64_t{d->iops_interval_ms} * 1'000'000;
                for (const auto& note : d->notes) fmt::print(stderr, "{}: note: --diskspd {}\n", kTool, note);
                break;
            }
            case kHelp: usage(stdout); std::exit(0);
            default: usage(stderr); std::exit(2);
        }
    }
    if (optind < argc) o.device = argv[optind++];
    if (optind < argc) cli::fail(kTool, fmt::format("unexpected argument '{}'", argv[optind]), 2);
    if (o.duration_s == 0 && o.w.ios == 0) cli::fail(kTool, "--duration 0 needs --ios", 2);
    // A whole queue per doorbell leaves the two sides taking turns: the card waits while the
    // host refills the ring, and the host waits while the card works through it. Half a queue
    // keeps both busy (at depth 256 against the model: 8.5 M/s against 6.5 M/s).
    if (o.w.batch == 0) o.w.batch = std::max<uint32_t>(1, o.w.depth / 2);
    if (o.model_mode.empty()) o.model_mode = o.w.verify ? "data" : "null";
    if (o.w.verify && o.model_mode == "null")
        cli::fail(kTool, "--verify needs data to move: --model-mode data (the default with --verify)", 2);
    if (o.w.verify && o.w.read_percent != 100)
        cli::fail(kTool, "--verify decides the mix itself (each write is read back); drop --read-percent/--write", 2);
    cli::setup_logging(kTool, log_level.value_or("warn"));
    // `model` is an address like any other here; the model library serves it.
    model::enable_model_address();
    return o;
}

std::string read_first(const std::string& path, std::string_view key = {}) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        if (key.empty()) return line;
        if (line.rfind(key, 0) == 0) {
            const auto colon = line.find(':');
            return colon == std::string::npos ? line : line.substr(line.find_first_not_of(" \t", colon + 1));
        }
    }
    return {};
}

std::vector<int> allowed_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    ::sched_getaffinity(0, sizeof(set), &set);
    std::vector<int> out;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set)) out.push_back(c);
    return out;
}

struct Opened {
    std::unique_ptr<Device> device;
    std::string model_mode;
    int model_cpu = -1;
    std::shared_ptr<model::QueueThreadTime> model_time;  // the built-in model's doorbell thread
};

Opened open_device(const Options& o, const std::vector<int>& cpus) {
    Opened out;
    if (o.device != "model") {
        auto d = Device::open(o.device);
        if (!d) cli::fail(kTool, d.error().message, 2);
        out.device = std::move(*d);
        return out;
    }
    // The model built in, with the measuring modes: null or data, on a CPU of its own.
    model::ModelConfig config;
    config.null_data = o.model_mode == "null";
    if (o.model_cpu >= 0) {
        config.cpu = o.model_cpu;
    } else if (o.model_cpu == -2 && o.pin && cpus.size() > 1) {
        config.cpu = cpus[o.queue_pairs % cpus.size()];
    }
    // The model's doorbell thread spins while there is work; it sleeps when idle.
    config.idle_spin = std::chrono::microseconds(2000);
    config.thread_time = std::make_shared<model::QueueThreadTime>();
    auto d = model::open_device(config);
    if (!d) cli::fail(kTool, d.error().message, 2);
    out.device = std::move(*d);
    out.model_mode = o.model_mode;
    out.model_cpu = config.cpu;
    out.model_time = config.thread_time;
    return out;
}

void write_file(const std::string& path, const std::string& text) {
    if (path == "-") {
        fmt::print("{}", text);
        return;
    }
    std::ofstream f(path);
    f << text;
    if (!f) cli::fail(kTool, fmt::format("cannot write {}", path), 2);
}

}  // namespace

int main(int argc, char** argv) {
    Options o = parse(argc, argv);

    // The threads' CPUs: as asked, else those near the device (PCI), else the process's.
    std::vector<int> cpus = o.cpus;
    const auto allowed = allowed_cpus();
    for (int c : cpus)
        if (std::find(allowed.begin(), allowed.end(), c) == allowed.end())
            cli::fail(kTool, fmt::format("--cpus: CPU {} is not one this process may run on", c), 2);
    if (cpus.empty()) {
        if (auto addr = DeviceAddress::parse(o.device); addr && addr->kind == DeviceAddress::Kind::kPci) {
            for (int c : cpu_list(read_first("/sys/bus/pci/devices/" + addr->target + "/local_cpulist")))
                if (std::find(allowed.begin(), allowed.end(), c) != allowed.end()) cpus.push_back(c);
        }
        if (cpus.empty()) cpus = allowed;
    }

    Opened opened = open_device(o, cpus);
    Device& device = *opened.device;
    ControllerOptions copts;
    copts.nvme_shadow_doorbells = o.shadow_doorbells;
    auto ctrl = Controller::open(device, copts);
    if (!ctrl) cli::fail(kTool, ctrl.error().message, 2);
    const ControllerInfo& info = (*ctrl)->info();
    if (o.queue_pairs > info.queue_pairs)
        cli::fail(kTool, fmt::format("{}: {} queue pairs asked for, the device has {}", device.name(), o.queue_pairs,
                                     info.queue_pairs),
                  2);

    o.w.ticks_per_ns = calibrate_ticks();
    o.w.drain_s = o.stall_s;
    const double total_s = o.duration_s > 0 ? o.duration_s : 3600;
    o.w.max_intervals = static_cast<uint32_t>(std::min<double>(
        1 << 20, total_s * 1e9 / static_cast<double>(o.w.interval_ns) + 2));
    // Each thread its own part of card memory, whole blocks of the largest size.
    const uint32_t max_block = *std::max_element(o.w.block_sizes.begin(), o.w.block_sizes.end());
    const uint64_t span = info.devmem_size / o.queue_pairs / max_block * max_block;
    if (span == 0)
        cli::fail(kTool, fmt::format("{}: {} bytes of device memory hold no {}-byte block for each of {} queue pair(s)",
                                     device.name(), info.devmem_size, max_block, o.queue_pairs),
                  2);
    std::vector<std::unique_ptr<Worker>> workers;
    for (uint32_t t = 0; t < o.queue_pairs; ++t) {
        const int cpu = o.pin ? cpus[t % cpus.size()] : -1;
        Workload w = o.w;
        w.seed = o.w.seed + t;
        workers.push_back(std::make_unique<Worker>(**ctrl, device, w, t, t * span, span, cpu));
        if (auto r = workers.back()->prepare(); !r) cli::fail(kTool, r.error().with_context(fmt::format("thread {}", t)).message, 2);
    }

    const std::time_t started = std::time(nullptr);
    std::optional<References> refs;
    if (o.references) refs = measure_references(o.w.depth, o.w.batch);

    std::atomic<Phase> phase{Phase::kWarmUp};
    // The model's doorbell thread is idle or busy over the span the threads measured, read by them.
    using Clock = std::chrono::steady_clock;
    struct ModelWindow {
        Clock::time_point start, stop;
        uint64_t idle0 = 0, idle1 = 0;
    } model_window;
    auto model_idle = [&opened](Clock::time_point& at) {
        at = Clock::now();
        return opened.model_time ? opened.model_time->idle_until(model::QueueThreadTime::ns(at)) : 0;
    };
    SharedWindow window(
        static_cast<uint32_t>(workers.size()), [&] { model_window.idle0 = model_idle(model_window.start); },
        [&] { model_window.idle1 = model_idle(model_window.stop); });
    std::vector<std::thread> threads;
    for (auto& w : workers) {
        threads.emplace_back([&w, &phase, &window] { w->run(phase, window); });
        // "vfioq-perf-qN" in top -H and in perf's reports (15 characters at most).
        ::pthread_setname_np(threads.back().native_handle(),
                             fmt::format("vfioq-perf-q{}", threads.size() - 1).substr(0, 15).c_str());
    }
    const bool progress = o.progress == 1 || (o.progress == -1 && ::isatty(STDERR_FILENO));
    auto all_finished = [&] {
        return std::all_of(workers.begin(), workers.end(), [](const auto& w) { return w->finished(); });
    };
    auto sleep_until = [&](Clock::time_point t) {
        while (Clock::now() < t && !all_finished()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    };
    sleep_until(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.warmup_s)));
    phase.store(Phase::kMeasure);
    // The window is timed from when every thread is in it: on a busy machine a thread may not run for a
    // while, and a window that closed before it looked would measure nothing.
    const auto asked = Clock::now();
    while (!std::all_of(workers.begin(), workers.end(), [](const auto& w) { return w->measuring(); }) &&
           Clock::now() - asked < std::chrono::duration<double>(o.stall_s))
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    const auto start = Clock::now();
    const auto end = o.duration_s > 0 ? start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration_s))
                                      : Clock::time_point::max();
    uint64_t last_ios = 0, seen_ios = 0;
    auto last = start, last_change = start;
    bool stalled = false;
    while (Clock::now() < end && !all_finished()) {
        const auto tick = std::min(end, Clock::now() + std::chrono::seconds(1));
        sleep_until(tick);
        if (o.w.ios) {
            bool all_done = true;
            for (auto& w : workers) all_done &= w->progress() >= o.w.ios;
            if (all_done) break;
        }
        uint64_t ios = 0;
        for (auto& w : workers) ios += w->progress();
        // A card that stops completing must not hold the run (and the lab) forever.
        if (ios != seen_ios) {
            seen_ios = ios;
            last_change = Clock::now();
        } else if (Clock::now() - last_change > std::chrono::duration<double>(o.stall_s)) {
            stalled = true;
            break;
        }
        if (progress) {
            const auto now = Clock::now();
            const double dt = std::chrono::duration<double>(now - last).count();
            fmt::print(stderr, "\r{:6.1f} s  {:>12.0f} IOPS now  {:>14} I/Os", std::chrono::duration<double>(now - start).count(),
                       dt > 0 ? static_cast<double>(ios - last_ios) / dt : 0.0, ios);
            last_ios = ios;
            last = now;
        }
    }
    phase.store(Phase::kStop);
    for (auto& t : threads) t.join();
    double model_busy_s = -1, model_window_s = 0;
    if (opened.model_time && opened.model_time->started_ns.load() >= 0 && window.opened()) {
        model_window_s = std::chrono::duration<double>(model_window.stop - model_window.start).count();
        const double idle_s = (static_cast<double>(model_window.idle1) - static_cast<double>(model_window.idle0)) / 1e9;
        model_busy_s = std::clamp(model_window_s - idle_s, 0.0, model_window_s);
    }
    if (progress) fmt::print(stderr, "\n");
    if (stalled)
        fmt::print(stderr, "{}: no command completed for {} s on {}: the device stalled; stopping\n", kTool, o.stall_s,
                   device.name());

    Report report;
    report.run.device = o.device;
    report.run.profile = info.kind;
    report.run.model_mode = opened.model_mode;
    report.run.model_cpu = opened.model_cpu;
    report.run.model_busy_s = model_busy_s;
    report.run.model_window_s = model_window_s;
    char host[256] = {};
    ::gethostname(host, sizeof(host) - 1);
    report.run.host = host;
    report.run.cpu_model = read_first("/proc/cpuinfo", "model name");
    report.run.cpus = static_cast<uint32_t>(allowed_cpus().size());
    char stamp[64];
    std::strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&started));
    report.run.started = stamp;
    report.run.warmup_s = o.warmup_s;
    report.run.diskspd_flags = o.diskspd_flags;
    report.run.workload = o.w;
    report.refs = refs;
    for (auto& w : workers) report.threads.push_back(w->result());
    report.run.duration_s = report.threads.empty() ? 0 : report.threads[0].seconds;
    workers.clear();

    if (o.json_path != "-" && o.csv_path != "-") print_text(stdout, report);
    if (!o.json_path.empty()) write_file(o.json_path, to_json(report).dump(2) + "\n");
    if (!o.csv_path.empty()) write_file(o.csv_path, to_csv(report));
    const Figures total = figures(report, -1);
    if (total.ios == 0 && !stalled)
        fmt::print(stderr, "{}: no command completed in the {:.2f} s measured on {}: the device stalled or the "
                           "machine was too busy for the window; measure longer (--duration) or count (--ios)\n",
                   kTool, report.run.duration_s, device.name());
    if (total.ios == 0 || stalled) return 1;
    if (total.errors || total.mismatches) {
        for (const auto& t : report.threads)
            if (!t.first_error.empty()) fmt::print(stderr, "{}: thread {}: {}\n", kTool, t.thread, t.first_error);
        return 1;
    }
    return 0;
}
