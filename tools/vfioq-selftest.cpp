// SPDX-License-Identifier: MIT
// vfioq-selftest: a data-integrity pass over the card. Seeded patterns go to
// card memory through random scatter/gather shapes and come back through
// other random shapes; every byte is checked. It runs at each queue depth
// asked for, on several queue pairs at once (one thread each). As a soak it
// runs for a time, optionally with the built-in model injecting faults, and
// checks that every command was reported exactly once and that nothing
// (file descriptors, mappings) leaked.
#include <dirent.h>
#include <fmt/format.h>
#include <getopt.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "selftest_pattern.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/model.hpp"
#include "vfioq/vfio_user.hpp"

namespace {

using namespace vfioq;
using selftest::Piece;
constexpr std::string_view kTool = "vfioq-selftest";
using Clock = std::chrono::steady_clock;

struct Options {
    std::string device = "model";
    std::vector<uint32_t> depths = {1, 8, 64, 512, 4096};
    uint32_t queue_pairs = 2;
    uint64_t commands = 0;  // write+read pairs per queue pair and depth; 0: 2 x depth, at least 256
    uint64_t max_bytes = 256 * 1024;
    uint32_t max_segments = 0;  // 0: the card's MAX_SGE
    uint64_t host_budget = 32ull << 20;  // host bytes per queue pair
    uint64_t seed = 1;
    bool interrupts = false;
    bool quiet = false;
    bool nvme_prp = false;
    uint64_t segment_align = 0;  // 0: the device's own
    std::chrono::milliseconds soak{0};  // run for this long (0: a fixed number of commands)
    double fault_rate = 0;              // the built-in model's faults per completion
    uint64_t fault_seed = 1;
    std::optional<std::chrono::milliseconds> command_timeout;  // none: off, or 250 ms with faults
    std::chrono::seconds stall_limit{120};
};

void usage(FILE* out) {
    fmt::print(out,
               "usage: vfioq-selftest [OPTIONS] [DEVICE]\n"
               "\n"
               "Writes seeded patterns to card memory through random scatter/gather shapes,\n"
               "reads them back through other shapes and checks every byte.\n"
               "\n"
               "  --depths LIST        queue depths to run, comma-separated (default 1,8,64,512,4096)\n"
               "  --queue-pairs N      queue pairs, each on its own thread (default 2)\n"
               "  --commands N         write/read pairs per queue pair and depth (default 2 x depth, >= 256)\n"
               "  --max-bytes N        largest transfer (default 262144)\n"
               "  --max-segments N     most segments per command (default: the card's MAX_SGE)\n"
               "  --seed N             pattern and shape seed (default 1)\n"
               "  --interrupts         wait for MSI-X interrupts instead of polling\n"
               "  --nvme-prp           NVMe: move data by PRPs even if the controller has SGLs\n"
               "  --segment-align N    segment addresses and lengths multiples of N (default: the device's)\n"
               "  --soak DURATION      run for DURATION (90s, 5m, 1h, 500ms) across the depths, and\n"
               "                       check that every command came back once and nothing leaked\n"
               "  --faults RATE        with the built-in model: inject faults at RATE per completion\n"
               "                       (error status, dropped, duplicate, wrong-CID, stale-phase, late);\n"
               "                       a failed command is counted and its data written again\n"
               "  --fault-seed N       seed of the injected faults (default 1)\n"
               "  --timeout-ms MS      per-command timeout (default none: a slow device is not a failing\n"
               "                       one; 250 with --faults, whose lost completions it recovers)\n"
               "  --stall-timeout S    fail when no command at all has completed for S seconds, naming\n"
               "                       what is outstanding (default 120): a hang, not slowness\n"
               "  --quiet              print only failures and the verdict\n"
               "  --log-level LEVEL    trace, debug, info, warn, error or off, or SUBSYSTEM=LEVEL,...\n"
               "\n"
               "DEVICE is model (default), vfio-user:PATH or a PCI address.\n"
               "\n"
               "exit status: 0 every byte verified and every command came back; 1 a mismatch, a\n"
               "failed or lost command, a leak in a soak, or the device went away; 2 a setup\n"
               "error: a bad option, a device that cannot be opened or brought up, a depth that\n"
               "needs more ring entries than the card allows, no queue pair to test with.\n");
}

uint64_t number(std::string_view opt, const char* s) {
    auto v = cli::parse_u64(s);
    if (!v) cli::fail(kTool, fmt::format("{} '{}' is not a number", opt, s), 2);
    return *v;
}

Options parse(int argc, char** argv) {
    Options o;
    std::optional<std::string_view> log_level;
    enum {
        kDepths = 1000, kQps, kCommands, kMaxBytes, kMaxSeg, kSeed, kInterrupts, kQuiet, kLog, kHelp, kPrp,
        kSegAlign, kSoak, kFaults, kFaultSeed, kTimeout, kStall
    };
    static const option longs[] = {{"depths", required_argument, nullptr, kDepths},
                                   {"queue-pairs", required_argument, nullptr, kQps},
                                   {"commands", required_argument, nullptr, kCommands},
                                   {"max-bytes", required_argument, nullptr, kMaxBytes},
                                   {"max-segments", required_argument, nullptr, kMaxSeg},
                                   {"seed", required_argument, nullptr, kSeed},
                                   {"interrupts", no_argument, nullptr, kInterrupts},
                                   {"nvme-prp", no_argument, nullptr, kPrp},
                                   {"segment-align", required_argument, nullptr, kSegAlign},
                                   {"quiet", no_argument, nullptr, kQuiet},
                                   {"soak", required_argument, nullptr, kSoak},
                                   {"faults", required_argument, nullptr, kFaults},
                                   {"fault-seed", required_argument, nullptr, kFaultSeed},
                                   {"timeout-ms", required_argument, nullptr, kTimeout},
                                   {"stall-timeout", required_argument, nullptr, kStall},
                                   {"log-level", required_argument, nullptr, kLog},
                                   {"help", no_argument, nullptr, kHelp},
                                   {nullptr, 0, nullptr, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", longs, nullptr)) != -1) {
        switch (c) {
            case kDepths: {
                o.depths.clear();
                std::string_view list(optarg);
                while (!list.empty()) {
                    auto comma = list.find(',');
                    auto item = std::string(list.substr(0, comma));
                    const uint64_t d = number("--depths", item.c_str());
                    if (d == 0 || d > 65535) cli::fail(kTool, fmt::format("depth {} is outside 1 .. 65535", d), 2);
                    o.depths.push_back(static_cast<uint32_t>(d));
                    list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
                }
                if (o.depths.empty()) cli::fail(kTool, "--depths needs at least one depth", 2);
                break;
            }
            case kQps: o.queue_pairs = static_cast<uint32_t>(number("--queue-pairs", optarg)); break;
            case kCommands: o.commands = number("--commands", optarg); break;
            case kMaxBytes: o.max_bytes = number("--max-bytes", optarg); break;
            case kMaxSeg: o.max_segments = static_cast<uint32_t>(number("--max-segments", optarg)); break;
            case kSeed: o.seed = number("--seed", optarg); break;
            case kInterrupts: o.interrupts = true; break;
            case kPrp: o.nvme_prp = true; break;
            case kSegAlign: {
                o.segment_align = number("--segment-align", optarg);
                if (o.segment_align == 0 || (o.segment_align & (o.segment_align - 1)))
                    cli::fail(kTool, "--segment-align must be a power of two", 2);
                break;
            }
            case kQuiet: o.quiet = true; break;
            case kSoak: {
                auto d = cli::parse_duration(optarg);
                if (!d || d->count() == 0)
                    cli::fail(kTool, fmt::format("--soak '{}' is not a duration such as 90s, 5m or 500ms", optarg), 2);
                o.soak = *d;
                break;
            }
            case kFaults: {
                char* end = nullptr;
                o.fault_rate = std::strtod(optarg, &end);
                if (*end || !(o.fault_rate >= 0 && o.fault_rate <= 1))
                    cli::fail(kTool, fmt::format("--faults '{}' is not a rate from 0 to 1", optarg), 2);
                break;
            }
            case kFaultSeed: o.fault_seed = number("--fault-seed", optarg); break;
            case kTimeout: o.command_timeout = std::chrono::milliseconds(number("--timeout-ms", optarg)); break;
            case kStall: {
                const uint64_t sec = number("--stall-timeout", optarg);
                if (sec == 0 || sec > 86400) cli::fail(kTool, "--stall-timeout takes 1 to 86400 seconds", 2);
                o.stall_limit = std::chrono::seconds(sec);
                break;
            }
            case kLog: log_level = optarg; break;
            case 'h':
            case kHelp: usage(stdout); std::exit(0);
            default: usage(stderr); std::exit(2);
        }
    }
    if (optind < argc) o.device = argv[optind++];
    if (optind < argc) cli::fail(kTool, fmt::format("unexpected argument '{}'", argv[optind]), 2);
    if (o.queue_pairs == 0) cli::fail(kTool, "--queue-pairs must be at least 1", 2);
    if (o.max_bytes == 0) cli::fail(kTool, "--max-bytes must be at least 1", 2);
    if (o.fault_rate > 0 && o.device != "model")
        cli::fail(kTool, "--faults needs the built-in model (DEVICE model); for a vfioq-devsim give it --fault", 2);
    if (!o.command_timeout && o.fault_rate > 0) o.command_timeout = std::chrono::milliseconds(250);
    cli::setup_logging(kTool, log_level);
    // `model` is an address like any other here; the model library serves it.
    model::enable_model_address();
    return o;
}

// Failures from any thread, printed once each and counted.
struct Verdict {
    std::mutex mutex;
    uint64_t failures = 0;
    void fail(const std::string& what) {
        std::lock_guard lock(mutex);
        if (++failures <= 20) fmt::print(stderr, "FAIL: {}\n", what);
        if (failures == 21) fmt::print(stderr, "FAIL: (further failures are counted, not printed)\n");
    }
};

// One slot of card memory with its host areas; one command of it is in flight at a time.
struct Slot {
    uint64_t devaddr = 0;
    uint64_t sequence = 0;
    uint64_t length = 0;
    bool reading = false;
    std::byte* write_area = nullptr;
    std::byte* read_area = nullptr;
    uint64_t write_iova = 0, read_iova = 0;
    std::vector<Piece> pieces;
    std::vector<DmaSegment> segments;
    class Worker* worker = nullptr;
    bool done = false;
    bool in_flight = false;  // submitted and not yet reported
};

class Worker {
public:
    Worker(QueuePair& qp, DmaBuffer& host, const Options& o, const ControllerInfo& info, uint32_t depth,
           uint64_t card_base, uint64_t card_span, uint64_t jobs, Clock::time_point deadline, uint64_t round,
           Verdict& verdict)
        : qp_(qp), o_(o), verdict_(verdict),
          rng_(o.seed * 0x9E3779B97F4A7C15ull ^ (qp.id() + 1) * 7919 ^ depth ^ round * 0x2545F4914F6CDD1Dull),
          jobs_left_(jobs), deadline_(deadline), align_(std::max<uint64_t>(info.segment_alignment, o.segment_align)),
          unit_(std::max<uint64_t>(align_, info.block_size)),
          max_segments_(o.max_segments ? std::min(o.max_segments, info.max_segments) : info.max_segments) {
        const uint64_t per_slot_card = card_span / depth;
        const uint64_t per_slot_host = host.size() / depth / 2;  // a write and a read area
        slot_bytes_ = std::min({o.max_bytes, per_slot_card, per_slot_host / 2, info.max_transfer});
        slot_bytes_ = slot_bytes_ / unit_ * unit_;
        area_ = per_slot_host / align_ * align_;
        slots_.resize(depth);
        for (uint32_t i = 0; i < depth; ++i) {
            Slot& s = slots_[i];
            s.devaddr = card_base + uint64_t{i} * (per_slot_card / unit_ * unit_);
            s.write_area = host.data() + uint64_t{i} * 2 * area_;
            s.read_area = s.write_area + area_;
            s.write_iova = host.iova() + uint64_t{i} * 2 * area_;
            s.read_iova = s.write_iova + area_;
            s.worker = this;
        }
    }

    [[nodiscard]] uint64_t slot_bytes() const { return slot_bytes_; }
    [[nodiscard]] uint64_t bytes_verified() const { return verified_; }
    [[nodiscard]] uint64_t commands() const { return commands_; }
    [[nodiscard]] const std::map<IoStatus, uint64_t>& statuses() const { return statuses_; }
    // Slots whose command was never reported.
    [[nodiscard]] uint64_t unreported() const {
        uint64_t n = 0;
        for (const auto& s : slots_) n += s.in_flight;
        return n;
    }

    void run() {
        if (slot_bytes_ == 0) {
            verdict_.fail(fmt::format("queue pair {}: no room for a transfer at depth {}", qp_.id(), slots_.size()));
            return;
        }
        for (auto& s : slots_) start_job(s);
        auto last_progress = Clock::now();
        while (active_ > 0) {
            flush_pending();
            uint32_t n = 0;
            if (o_.interrupts) {
                auto r = qp_.wait(std::chrono::milliseconds(1000));
                if (!r) {
                    verdict_.fail(r.error().message);
                    return;
                }
                n = *r;
            } else {
                n = qp_.poll();
            }
            const auto now = Clock::now();
            if (n > 0) {
                last_progress = now;
            } else if (now - last_progress > o_.stall_limit) {
                verdict_.fail(fmt::format("queue pair {}: no completion for {} s with {} commands outstanding "
                                          "(--stall-timeout)",
                                          qp_.id(), o_.stall_limit.count(), qp_.outstanding()));
                return;
            }
        }
    }

private:
    static void on_complete(const Completion& c) {
        auto* s = static_cast<Slot*>(c.context);
        s->worker->completed(*s, c);
    }

    void start_job(Slot& s) {
        if (jobs_left_ == 0 || (o_.soak.count() != 0 && Clock::now() >= deadline_)) {
            s.done = true;
            return;
        }
        --jobs_left_;
        ++active_;
        s.sequence = next_sequence_++;
        const uint64_t units = slot_bytes_ / unit_;
        s.length = unit_ * (1 + rng_() % units);
        s.reading = false;
        selftest::make_shape(rng_, s.length, align_, max_segments_, area_, s.pieces);
        // Fill the write pieces with the pattern, card address ascending.
        uint64_t card = s.devaddr;
        s.segments.clear();
        for (const auto& p : s.pieces) {
            for (uint64_t i = 0; i < p.len; ++i)
                s.write_area[p.offset + i] = std::byte{selftest::expected_byte(o_.seed, s.sequence, card + i)};
            card += p.len;
            s.segments.push_back({s.write_iova + p.offset, p.len});
        }
        submit(s);
    }

    void start_read(Slot& s) {
        s.reading = true;
        selftest::make_shape(rng_, s.length, align_, max_segments_, area_, s.pieces);
        // Poison what the read is to fill, so that a byte the card never wrote shows; only these
        // bytes are checked (the whole area is up to half the host budget at depth 1, and poisoning
        // it all made a round trip of a few KiB cost megabytes of stores).
        s.segments.clear();
        for (const auto& p : s.pieces) {
            std::memset(s.read_area + p.offset, 0xA5, p.len);
            s.segments.push_back({s.read_iova + p.offset, p.len});
        }
        submit(s);
    }

    void submit(Slot& s) {
        s.in_flight = true;
        auto r = qp_.submit({s.reading ? Opcode::kRead : Opcode::kWrite, s.devaddr, s.segments, on_complete, &s});
        if (r) {
            ++commands_;
            return;
        }
        s.in_flight = false;
        if (r.error().code == EAGAIN) {
            pending_.push_back(&s);  // back-pressure (descriptor pages): try again after a poll
            return;
        }
        verdict_.fail(r.error().message);
        --active_;
        s.done = true;
    }

    void flush_pending() {
        for (size_t n = pending_.size(); n > 0 && qp_.outstanding() < qp_.capacity(); --n) {
            Slot* s = pending_.front();
            pending_.pop_front();
            submit(*s);
        }
    }

    void completed(Slot& s, const Completion& c) {
        const char* what = s.reading ? "read" : "write";
        if (!s.in_flight) {
            verdict_.fail(fmt::format("queue pair {}: {} CID {} of card address {:#x} was reported again ({})", c.qid,
                                      what, c.cid, s.devaddr, io_status_name(c.status)));
            return;
        }
        s.in_flight = false;
        ++statuses_[c.status];
        if (c.status != IoStatus::kSuccess && o_.fault_rate > 0) {
            // An injected fault: counted; the slot starts over with a fresh write.
            --active_;
            start_job(s);
            return;
        }
        if (c.status != IoStatus::kSuccess || c.bytes != s.length) {
            verdict_.fail(fmt::format("queue pair {}: {} CID {} of card address [{:#x}, {:#x}) in {} segments "
                                      "completed with {} (device status {:#x}, {} bytes moved)",
                                      c.qid, what, c.cid, s.devaddr, s.devaddr + s.length, s.segments.size(),
                                      io_status_name(c.status), c.device_status, c.bytes));
            --active_;
            s.done = true;
            return;
        }
        if (!s.reading) {
            start_read(s);
            return;
        }
        check(s, c.cid);
        --active_;
        start_job(s);
    }

    void check(Slot& s, uint16_t cid) {
        uint64_t card = s.devaddr;
        uint64_t bad = 0, first_bad = 0;
        std::string expected, actual;  // up to 16 bytes from the first bad one, in card order
        for (const auto& p : s.pieces) {
            for (uint64_t i = 0; i < p.len; ++i) {
                const auto want = selftest::expected_byte(o_.seed, s.sequence, card + i);
                const auto got = static_cast<uint8_t>(s.read_area[p.offset + i]);
                if (got != want && bad++ == 0) first_bad = card + i;
                if (bad > 0 && card + i - first_bad < 16) {
                    expected += fmt::format("{:02x}", want);
                    actual += fmt::format("{:02x}", got);
                }
            }
            card += p.len;
        }
        verified_ += s.length - bad;
        if (bad == 0) return;
        verdict_.fail(fmt::format("queue pair {}: read CID {} of card address [{:#x}, {:#x}) (write sequence {}): "
                                  "{} bytes differ; the first at card address {:#x}: expected {} actual {}",
                                  qp_.id(), cid, s.devaddr, s.devaddr + s.length, s.sequence, bad, first_bad,
                                  expected, actual));
    }

    QueuePair& qp_;
    const Options& o_;
    Verdict& verdict_;
    std::mt19937_64 rng_;
    uint64_t jobs_left_;
    Clock::time_point deadline_;
    std::map<IoStatus, uint64_t> statuses_;
    uint64_t align_;  // segment addresses and lengths
    uint64_t unit_;   // card addresses and transfer lengths (blocks)
    uint32_t max_segments_;
    uint64_t slot_bytes_ = 0, area_ = 0;
    std::vector<Slot> slots_;
    std::deque<Slot*> pending_;
    uint64_t active_ = 0;
    uint64_t next_sequence_ = 1;
    uint64_t verified_ = 0;
    uint64_t commands_ = 0;
};

template <typename T>
T setup(Result<T> r) {
    if (!r) cli::fail(kTool, r.error().message, 2);
    return std::move(*r);
}

// The device; with --faults, the built-in model set up to misbehave.
std::unique_ptr<Device> open_device(const Options& o) {
    if (o.fault_rate == 0) return setup(Device::open(o.device));
    model::ModelConfig config;
    auto& f = config.faults;
    const double each = o.fault_rate / 6;
    f.error_status = f.drop = f.duplicate = f.wrong_cid = f.stale_phase = f.late = each;
    f.seed = o.fault_seed;
    // Late, but within the timeout: it must come back as the card's own completion.
    f.late_by_us = static_cast<uint32_t>(std::chrono::microseconds(*o.command_timeout).count() / 3);
    return setup(model::open_device(config));
}

// What the process holds, to show that a soak leaks nothing.
size_t count_entries(const char* dir) {
    size_t n = 0;
    if (DIR* d = ::opendir(dir)) {
        while (::readdir(d)) ++n;
        ::closedir(d);
    }
    return n;
}
// Mappings of files and memfds: DMA memory, BARs, the model's card. Anonymous
// ones are left out: the allocator and the sanitizers map those as they please
// (leaked heap memory is LeakSanitizer's to find).
size_t count_file_mappings() {
    std::ifstream in("/proc/self/maps");
    size_t n = 0;
    for (std::string line; std::getline(in, line);)
        if (line.find(" /") != std::string::npos || line.find("memfd:") != std::string::npos) ++n;
    return n;
}

struct Totals {
    uint64_t bytes = 0, commands = 0, unreported = 0;
    std::map<IoStatus, uint64_t> statuses;
    QueuePairStats qp;
};

// The queue pairs a round uses: as many as asked for and the card has (with a vector of their own, by interrupts).
uint32_t round_queue_pairs(const Options& o, const ControllerInfo& info) {
    return std::min(o.queue_pairs, o.interrupts ? info.interrupt_queue_pairs : info.queue_pairs);
}

// Card addresses and lengths are multiples of this.
uint64_t transfer_unit(const Options& o, const ControllerInfo& info) {
    return std::max<uint64_t>({info.segment_alignment, info.block_size, o.segment_align, 1});
}

// One round: a queue pair per thread at one depth, until `jobs` per queue pair or the deadline.
void run_round(Device& device, Controller& controller, const Options& o, uint32_t depth, uint64_t jobs,
               Clock::time_point deadline, uint64_t round, Verdict& verdict, Totals& totals) {
    const ControllerInfo& info = controller.info();
    const uint32_t qps = round_queue_pairs(o, info);  // main() made sure there is one
    const uint64_t unit = transfer_unit(o, info);
    const uint64_t card_span = info.devmem_size / qps / unit * unit;
    std::vector<std::unique_ptr<QueuePair>> pairs;
    std::vector<DmaBuffer> hosts;
    std::vector<std::unique_ptr<Worker>> workers;
    for (uint32_t q = 0; q < qps; ++q) {
        QueuePairOptions qo;
        qo.depth = depth;
        qo.interrupts = o.interrupts;
        qo.sgl_pages = std::max<uint32_t>(64, depth / 2);
        qo.command_timeout = o.command_timeout.value_or(std::chrono::milliseconds(0));  // 0: none
        pairs.push_back(setup(controller.create_queue_pair(qo)));
        hosts.push_back(setup(device.dma().allocate(o.host_budget)));
        workers.push_back(std::make_unique<Worker>(*pairs.back(), hosts.back(), o, info, depth, card_span * q,
                                                   card_span, jobs, deadline, round, verdict));
    }
    const auto start = Clock::now();
    std::vector<std::thread> threads;
    for (auto& w : workers) threads.emplace_back([&w] { w->run(); });
    for (auto& t : threads) t.join();
    const double secs = std::chrono::duration<double>(Clock::now() - start).count();
    uint64_t bytes = 0, commands = 0;
    for (auto& qp : pairs)
        if (auto r = qp->close(); !r) verdict.fail(r.error().message);
    for (size_t q = 0; q < workers.size(); ++q) {
        const auto& w = *workers[q];
        bytes += w.bytes_verified();
        commands += w.commands();
        for (const auto& [st, n] : w.statuses()) totals.statuses[st] += n;
        if (const uint64_t lost = w.unreported()) {
            verdict.fail(fmt::format("queue pair {}: {} commands were never reported", pairs[q]->id(), lost));
            totals.unreported += lost;
        }
        const auto st = pairs[q]->stats();
        totals.qp.device_errors += st.device_errors;
        totals.qp.cid_out_of_range += st.cid_out_of_range;
        totals.qp.cid_not_outstanding += st.cid_not_outstanding;
        totals.qp.wrong_sqid += st.wrong_sqid;
        totals.qp.sq_head_invalid += st.sq_head_invalid;
        totals.qp.timeouts += st.timeouts;
        totals.qp.queue_recoveries += st.queue_recoveries;
        totals.qp.controller_resets += st.controller_resets;
    }
    totals.bytes += bytes;
    totals.commands += commands;
    if (!o.quiet)
        fmt::print("depth {:5}: {} queue pair(s), {} commands (transfers up to {} bytes), {:.1f} MiB verified "
                   "in {:.2f} s\n",
                   depth, qps, commands, workers.front()->slot_bytes(), bytes / 1048576.0, secs);
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse(argc, argv);
    auto device = open_device(o);
    ControllerOptions copts;
    copts.nvme_use_prp = o.nvme_prp;
    auto controller = setup(Controller::open(*device, copts));
    const ControllerInfo& info = controller->info();
    const uint32_t qps = round_queue_pairs(o, info);
    if (qps == 0)
        cli::fail(kTool,
                  fmt::format("{}: the {} controller has {} queue pair(s) and {} with an interrupt vector: none "
                              "to test with{}",
                              device->name(), info.kind, info.queue_pairs, info.interrupt_queue_pairs,
                              o.interrupts ? " by interrupts" : ""),
                  2);
    if (!o.quiet)
        fmt::print("vfioq-selftest on {} ({}): {} bytes of device memory, {} segments and {} bytes per command, "
                   "segment alignment {}, block {}; {} queue pair(s), seed {}, {}\n",
                   device->name(), info.kind, info.devmem_size, info.max_segments, info.max_transfer,
                   info.segment_alignment, info.block_size, qps, o.seed, o.interrupts ? "interrupts" : "polling");
    Verdict verdict;
    // What the device reports is divided by below: a count of 0, or too little memory for a transfer of one
    // unit at a depth, is a setup error found before anything runs, not a data failure (nor a crash).
    const uint64_t unit = transfer_unit(o, info);
    if (info.max_segments == 0 || info.max_transfer < unit)
        cli::fail(kTool,
                  fmt::format("{}: the {} controller reports {} segments and {} bytes per command, too few for one "
                              "{}-byte unit",
                              device->name(), info.kind, info.max_segments, info.max_transfer, unit),
                  2);
    // A depth the card cannot hold is a setup error too.
    for (uint32_t depth : o.depths) {
        if (depth + 1 > info.max_queue_entries)
            cli::fail(kTool,
                      fmt::format("{}: depth {} needs rings of {} entries; the card allows {}: give --depths up "
                                  "to {}",
                                  device->name(), depth, uint64_t{depth} + 1, info.max_queue_entries,
                                  info.max_queue_entries - 1),
                      2);
        const uint64_t per_command = std::min(info.devmem_size / qps / depth, o.host_budget / depth / 4);
        if (per_command < unit)
            cli::fail(kTool,
                      fmt::format("{}: depth {} on {} queue pair(s) leaves {} bytes per command ({} bytes of device "
                                  "memory), less than one {}-byte unit: lower the depth or the queue pairs",
                                  device->name(), depth, qps, per_command, info.devmem_size, unit),
                      2);
    }
    const std::vector<uint32_t>& depths = o.depths;
    Totals totals;
    if (o.soak.count() == 0) {
        for (uint32_t depth : depths) {
            const uint64_t jobs = o.commands ? o.commands : std::max<uint64_t>(256, 2ull * depth);
            run_round(*device, *controller, o, depth, jobs, Clock::time_point::max(), 0, verdict, totals);
        }
    } else if (!depths.empty()) {
        // Rounds cycle through the depths; every round creates and closes its queue pairs,
        // so that what one leaks shows in the count after it.
        const auto end = Clock::now() + o.soak;
        const auto round_len = std::clamp<std::chrono::milliseconds>(
            o.soak / (2 * depths.size()), std::chrono::milliseconds(200), std::chrono::seconds(30));
        size_t fds_before = 0, maps_before = 0;
        uint64_t round = 0;
        if (!o.quiet)
            fmt::print("soak for {} ms in rounds of {} ms{}\n", o.soak.count(), round_len.count(),
                       o.fault_rate > 0 ? fmt::format(", {} faults per completion (seed {}), command timeout {} ms",
                                                      o.fault_rate, o.fault_seed, o.command_timeout->count())
                                        : "");
        while (Clock::now() < end || round < 2) {
            const auto now = Clock::now();
            const auto deadline = now >= end ? now + round_len : std::min(now + round_len, end);
            run_round(*device, *controller, o, depths[round % depths.size()], UINT64_MAX, deadline, round, verdict,
                      totals);
            if (device->gone()) {
                verdict.fail(fmt::format("the device is gone: {}", device->gone_reason()));
                break;
            }
            // The first round sets up what stays (logging, allocator state); later rounds must add nothing.
            if (round == 0) {
                fds_before = count_entries("/proc/self/fd");
                maps_before = count_file_mappings();
            }
            ++round;
        }
        const size_t fds_after = count_entries("/proc/self/fd"), maps_after = count_file_mappings();
        std::string by_status;
        for (const auto& [st, n] : totals.statuses)
            by_status += fmt::format("{}{} {}", by_status.empty() ? "" : ", ", io_status_name(st), n);
        const auto& q = totals.qp;
        fmt::print("soak: {} rounds, {} commands, {:.1f} MiB verified; reported {}\n", round, totals.commands,
                   totals.bytes / 1048576.0, by_status);
        fmt::print("soak: device errors {} (CID out of range {}, CID not outstanding {}, wrong SQ id {}, SQ head "
                   "invalid {}); {} timeouts, {} queue recoveries, {} controller resets\n",
                   q.device_errors, q.cid_out_of_range, q.cid_not_outstanding, q.wrong_sqid, q.sq_head_invalid,
                   q.timeouts, q.queue_recoveries, q.controller_resets);
        fmt::print("soak: {} commands never reported; open files {} -> {}, file and memfd mappings {} -> {}\n", totals.unreported,
                   fds_before, fds_after, maps_before, maps_after);
        if (fds_after > fds_before)
            verdict.fail(fmt::format("{} file descriptors leaked during the soak", fds_after - fds_before));
        if (maps_after > maps_before)
            verdict.fail(fmt::format("{} memory mappings leaked during the soak", maps_after - maps_before));
        uint64_t reported = 0;
        for (const auto& [st, n] : totals.statuses) reported += n;
        if (reported != totals.commands)
            verdict.fail(fmt::format("{} commands submitted but {} reported", totals.commands, reported));
    }
    if (verdict.failures) {
        fmt::print("vfioq-selftest: FAIL ({} failures)\n", verdict.failures);
        return 1;
    }
    fmt::print("vfioq-selftest: PASS\n");
    return 0;
}
