// SPDX-License-Identifier: MIT
#include "report.hpp"

#include <fmt/format.h>

#include <cmath>

namespace vfioq::perf {

namespace {

constexpr double kMiB = 1024.0 * 1024.0;

std::string percentile_name(double p) {
    if (p == 0) return "min";
    if (p == 100) return "max";
    if (p < 99.9) return fmt::format("{:g}th", p);
    // 99.9 -> 3-nines, as diskspd names them.
    return fmt::format("{}-nines", static_cast<int>(std::lround(-std::log10(100 - p))) + 2);
}

uint64_t percentile_of(const LatencyHistogram& h, double p) {
    if (p == 0) return h.min();
    if (p == 100) return h.max();
    return h.percentile(p);
}

const char* pattern_name(const Workload& w) { return w.random ? "random" : "sequential"; }

std::string block_sizes(const Workload& w) {
    std::string s;
    for (auto b : w.block_sizes) s += (s.empty() ? "" : ",") + std::to_string(b);
    return s;
}

double ratio(double a, double b) { return b > 0 ? a / b : 0; }

}  // namespace

const std::vector<double>& report_percentiles() {
    static const std::vector<double> p = {0,       25,       50,        75,         90,          95,          99,
                                          99.9,    99.99,    99.999,    99.9999,    99.99999,    99.999999,   99.9999999,
                                          100};
    return p;
}

Figures figures(const Report& r, int thread) {
    Figures f;
    double cpu_s = 0, busy_ns = 0, iops_var_sum = 0;
    uint32_t n = 0;
    for (const auto& t : r.threads) {
        if (thread >= 0 && t.thread != static_cast<uint32_t>(thread)) continue;
        ++n;
        f.read_ios += t.ios[0];
        f.write_ios += t.ios[1];
        f.bytes += t.bytes[0] + t.bytes[1];
        f.seconds = std::max(f.seconds, t.seconds);
        f.read.merge(t.latency[0]);
        f.write.merge(t.latency[1]);
        f.user_pct += t.seconds > 0 ? 100 * t.user_s / t.seconds : 0;
        f.kernel_pct += t.seconds > 0 ? 100 * t.kernel_s / t.seconds : 0;
        cpu_s += t.user_s + t.kernel_s;
        busy_ns += t.busy_ns;
        f.empty_polls += t.empty_polls;
        f.qp_memory += t.qp_after.memory_bytes;
        f.sq_doorbells_per_cmd += static_cast<double>(t.qp_after.sq_doorbells - t.qp_before.sq_doorbells);
        f.cq_doorbells_per_cmd += static_cast<double>(t.qp_after.cq_doorbells - t.qp_before.cq_doorbells);
        f.doorbell_writes_per_cmd +=
            static_cast<double>((t.qp_after.sq_doorbells - t.qp_before.sq_doorbells) +
                                (t.qp_after.cq_doorbells - t.qp_before.cq_doorbells) -
                                (t.qp_after.doorbell_writes_skipped - t.qp_before.doorbell_writes_skipped));
        f.interrupts_per_cmd += static_cast<double>(t.qp_after.interrupts - t.qp_before.interrupts);
        f.errors += t.errors;
        f.mismatches += t.mismatches;
        f.device_errors += t.qp_after.device_errors;
        // IOPS deviation over the whole intervals of the window; threads' deviations add as variances.
        const double interval_s = static_cast<double>(r.run.workload.interval_ns) / 1e9;
        const auto full = static_cast<size_t>(std::floor(t.seconds / interval_s + 1e-9));
        if (full >= 2) {
            double sum = 0, sq = 0;
            for (size_t i = 0; i < full && i < t.interval_ios.size(); ++i) {
                const double v = static_cast<double>(t.interval_ios[i]) / interval_s;
                sum += v;
                sq += v * v;
            }
            const double m = sum / static_cast<double>(full);
            iops_var_sum += std::max(0.0, sq / static_cast<double>(full) - m * m);
        }
    }
    f.ios = f.read_ios + f.write_ios;
    for (const auto& t : r.threads) {
        if (thread >= 0 && t.thread != static_cast<uint32_t>(thread)) continue;
        if (t.syscalls < 0) {
            f.syscalls = -1;
            f.syscalls_why = t.syscalls_why;
            break;
        }
        f.syscalls = (f.syscalls < 0 ? 0 : f.syscalls) + t.syscalls;
    }
    if (f.syscalls >= 0 && f.ios) f.syscalls_per_cmd = static_cast<double>(f.syscalls) / static_cast<double>(f.ios);
    f.all.merge(f.read);
    f.all.merge(f.write);
    if (n > 1) f.qp_memory /= n;  // per queue pair
    if (f.seconds > 0) {
        f.mib_s = static_cast<double>(f.bytes) / kMiB / f.seconds;
        f.iops = static_cast<double>(f.ios) / f.seconds;
    }
    f.iops_stddev = std::sqrt(iops_var_sum);
    f.lat_avg_us = f.all.mean() / 1000;
    f.lat_stddev_us = f.all.stddev() / 1000;
    if (f.ios) {
        const auto ios = static_cast<double>(f.ios);
        f.thread_cpu_ns_per_cmd = cpu_s * 1e9 / ios;
        f.driver_ns_per_cmd = busy_ns / ios;
        f.sq_doorbells_per_cmd /= ios;
        f.cq_doorbells_per_cmd /= ios;
        f.doorbell_writes_per_cmd /= ios;
        f.interrupts_per_cmd /= ios;
        if (thread < 0 && r.run.model_busy_s >= 0 && r.run.model_window_s > 0) {
            f.model_busy_pct = 100 * r.run.model_busy_s / r.run.model_window_s;
            f.model_ns_per_cmd = r.run.model_busy_s * 1e9 / ios;
        }
    }
    return f;
}

// The share of reads that ran: --verify decides its own mix (each block written, then read back).
double measured_read_percent(const Figures& f) {
    return f.ios ? 100.0 * static_cast<double>(f.read_ios) / static_cast<double>(f.ios) : 0;
}

std::string mix_name(const Workload& w, const Figures& f) {
    if (w.verify)
        return fmt::format("{:.0f}% reads as run (each block written, then read back)", measured_read_percent(f));
    return fmt::format("{}% reads", w.read_percent);
}

void print_text(FILE* out, const Report& r) {
    const Workload& w = r.run.workload;
    fmt::print(out, "vfioq-perf on {} ({}{}), {} queue pair{}, {:.2f} s measured after {:.2f} s of warm-up\n",
               r.run.device, r.run.profile, r.run.model_mode.empty() ? "" : ", model in " + r.run.model_mode + " mode",
               r.threads.size(), r.threads.size() == 1 ? "" : "s", r.run.duration_s, r.run.warmup_s);
    fmt::print(out, "  {}, {}, {}-byte blocks, depth {}, {} segment{} a command, {}, {} buffers{}\n",
               mix_name(w, figures(r, -1)), pattern_name(w), block_sizes(w), w.depth, w.segments, w.segments == 1 ? "" : "s",
               w.interrupts ? "interrupts" : "polled", w.registration == BufferMode::kPreRegistered ? "pre-registered" : "per-I/O registered",
               w.verify ? ", every read verified" : "");
    fmt::print(out, "  host {}, {} CPUs ({}), started {}\n\n", r.run.host, r.run.cpus, r.run.cpu_model, r.run.started);

    auto io_table = [&](const char* title, auto pick) {
        fmt::print(out, "{}\n", title);
        fmt::print(out, "{:>7} | {:>14} | {:>11} | {:>10} | {:>11} | {:>10} | {:>10} | {:>10} | {:>3}\n", "thread",
                   "bytes", "I/Os", "MiB/s", "I/O per s", "IopsStdDev", "AvgLat us", "LatStdDev", "QP");
        auto row = [&](const std::string& name, const Figures& f, const std::string& qp) {
            const auto [ios, bytes, h] = pick(f);
            const double s = f.seconds > 0 ? f.seconds : 1;
            fmt::print(out, "{:>7} | {:>14} | {:>11} | {:>10.2f} | {:>11.2f} | {:>10.2f} | {:>10.3f} | {:>10.3f} | {:>3}\n",
                       name, bytes, ios, static_cast<double>(bytes) / kMiB / s, static_cast<double>(ios) / s,
                       f.iops_stddev, h.mean() / 1000, h.stddev() / 1000, qp);
        };
        for (const auto& t : r.threads) row(std::to_string(t.thread), figures(r, static_cast<int>(t.thread)), std::to_string(t.qid));
        row("total", figures(r, -1), "");
        fmt::print(out, "\n");
    };
    struct Pick {
        uint64_t ios, bytes;
        const LatencyHistogram& h;
    };
    io_table("Total IO", [&](const Figures& f) { return Pick{f.ios, f.bytes, f.all}; });
    if (w.read_percent > 0 && w.read_percent < 100) {
        io_table("Read IO", [&](const Figures& f) {
            return Pick{f.read_ios, static_cast<uint64_t>(f.read_ios ? f.bytes * f.read_ios / f.ios : 0), f.read};
        });
        io_table("Write IO", [&](const Figures& f) {
            return Pick{f.write_ios, static_cast<uint64_t>(f.write_ios ? f.bytes * f.write_ios / f.ios : 0), f.write};
        });
    }

    const Figures total = figures(r, -1);
    fmt::print(out, "Latency (us)\n{:>10} | {:>12} | {:>12} | {:>12}\n", "%-ile", "Read", "Write", "Total");
    for (double p : report_percentiles()) {
        auto cell = [&](const LatencyHistogram& h) {
            return h.count() ? fmt::format("{:.3f}", static_cast<double>(percentile_of(h, p)) / 1000) : std::string("N/A");
        };
        fmt::print(out, "{:>10} | {:>12} | {:>12} | {:>12}\n", percentile_name(p), cell(total.read), cell(total.write),
                   cell(total.all));
    }

    fmt::print(out, "\nCPU\n{:>7} | {:>4} | {:>7} | {:>7} | {:>13} | {:>13}\n", "thread", "cpu", "user %", "kernel %",
               "driver ns/cmd", "thread ns/cmd");
    for (const auto& t : r.threads) {
        const Figures f = figures(r, static_cast<int>(t.thread));
        fmt::print(out, "{:>7} | {:>4} | {:>7.2f} | {:>8.2f} | {:>13.1f} | {:>13.1f}\n", t.thread,
                   t.cpu < 0 ? std::string("any") : std::to_string(t.cpu), f.user_pct, f.kernel_pct,
                   f.driver_ns_per_cmd, f.thread_cpu_ns_per_cmd);
    }
    fmt::print(out, "{:>7} | {:>4} | {:>7.2f} | {:>8.2f} | {:>13.1f} | {:>13.1f}\n", "total", "", total.user_pct,
               total.kernel_pct, total.driver_ns_per_cmd, total.thread_cpu_ns_per_cmd);
    fmt::print(out,
               "  driver: time in submissions and in polls that reaped completions; thread: all its CPU time,\n"
               "  spinning on empty polls ({} of them) included\n",
               total.empty_polls);
    if (total.model_busy_pct >= 0)
        fmt::print(out,
                   "  model's doorbell thread (CPU {}): busy {:.1f}% of the window, {:.1f} ns per command; the\n"
                   "  thread that is busy nearly all the time is the one that limits the rate\n",
                   r.run.model_cpu < 0 ? std::string("any") : std::to_string(r.run.model_cpu), total.model_busy_pct,
                   total.model_ns_per_cmd);
    fmt::print(out, "\n");

    fmt::print(out, "Driver\n");
    fmt::print(out, "  memory per queue pair   {:.2f} MiB (rings, descriptor pages, trackers)\n",
               static_cast<double>(total.qp_memory) / kMiB);
    fmt::print(out, "  SQ doorbells per command {:.4f}, CQ doorbells per command {:.4f}, interrupts per command {:.4f}\n",
               total.sq_doorbells_per_cmd, total.cq_doorbells_per_cmd, total.interrupts_per_cmd);
    fmt::print(out, "  register writes per command {:.4f} (the doorbells less those only a shadow doorbell took)\n",
               total.doorbell_writes_per_cmd);
    if (total.syscalls >= 0)
        fmt::print(out, "  system calls per command {:.4f} ({} in the measured window, the driver threads')\n",
                   total.syscalls_per_cmd, total.syscalls);
    else
        fmt::print(out, "  system calls per command: not counted: {}\n", total.syscalls_why);
    fmt::print(out, "  failed commands {}, verify mismatches {}, bad completions from the device {}\n\n", total.errors,
               total.mismatches, total.device_errors);

    if (r.refs) {
        const References& ref = *r.refs;
        fmt::print(out, "References (this machine, this run)\n");
        if (ref.io_uring_error.empty())
            fmt::print(out, "  io_uring NOP              {:8.1f} ns per operation (batches of {}); driver CPU per "
                            "command is {:.3f} x that\n",
                       ref.io_uring_nop_ns, ref.io_uring_batch, ratio(total.driver_ns_per_cmd, ref.io_uring_nop_ns));
        else
            fmt::print(out, "  io_uring NOP              not measured: {}\n", ref.io_uring_error);
        fmt::print(out, "  cache-line round trip     {:8.1f} ns (CPUs {} and {}); average latency is {:.2f} x that{}\n",
                   ref.cache_line_rtt_ns, ref.cache_line_cpus[0], ref.cache_line_cpus[1],
                   ratio(total.lat_avg_us * 1000, ref.cache_line_rtt_ns),
                   w.depth == 1 ? "" : " (a floor at depth 1 only)");
        if (ref.bare_ring_per_s > 0)
            fmt::print(out,
                       "  bare ring, two cores      {:8.3f} M commands/s (depth {}, tail published every {}); the run "
                       "did {:.3f} x that\n",
                       ref.bare_ring_per_s / 1e6, ref.bare_ring_depth, ref.bare_ring_batch,
                       ratio(total.iops, ref.bare_ring_per_s));
        else
            fmt::print(out, "  bare ring, two cores      not measured: the process may use one CPU\n");
        fmt::print(out, "  memcpy, one thread        {:8.2f} GiB/s; the run moved {:.3f} x that{}\n", ref.memcpy_gib_s,
                   ratio(total.mib_s, ref.memcpy_gib_s * 1024),
                   r.run.model_mode == "null" ? " (null mode moves no data)" : "");
    }
    const auto g = goals(r);
    if (!g.empty()) {
        fmt::print(out, "\nGoals this run measures\n");
        for (const auto& goal : g)
            fmt::print(out, "  {:<78} {:>9.3f} {:<8} {}\n", goal.name + " (" + goal.target + ")", goal.measured,
                       goal.unit,
                       goal.met() ? std::string("met") : fmt::format("MISSED by {:.1f}%", goal.missed_by_percent()));
    }
    if (!r.threads.empty()) {
        std::string first;
        for (const auto& t : r.threads)
            if (!t.first_error.empty()) {
                first = t.first_error;
                break;
            }
        if (!first.empty()) fmt::print(out, "\nFirst error: {}\n", first);
    }
}

nlohmann::json to_json(const Report& r) {
    using nlohmann::json;
    const Workload& w = r.run.workload;
    json j;
    j["tool"] = "vfioq-perf";
    j["run"] = {{"device", r.run.device},     {"profile", r.run.profile},   {"model_mode", r.run.model_mode},
                {"model_cpu", r.run.model_cpu}, {"host", r.run.host},       {"cpu_model", r.run.cpu_model},
                {"cpus", r.run.cpus},           {"started", r.run.started}, {"duration_s", r.run.duration_s},
                {"warmup_s", r.run.warmup_s}};
    if (!r.run.diskspd_flags.empty()) j["run"]["diskspd_flags"] = r.run.diskspd_flags;
    j["workload"] = {{"read_percent", w.verify ? json(measured_read_percent(figures(r, -1))) : json(w.read_percent)},
                     {"pattern", pattern_name(w)},
                     {"block_sizes", w.block_sizes},
                     {"depth", w.depth},
                     {"batch", w.batch},
                     {"segments", w.segments},
                     {"mode", w.interrupts ? "interrupts" : "polled"},
                     {"registration", w.registration == BufferMode::kPreRegistered ? "pre" : "per-io"},
                     {"verify", w.verify},
                     {"ios_per_thread", w.ios},
                     {"iops_interval_ms", w.interval_ns / 1'000'000}};
    auto latency = [](const LatencyHistogram& h) {
        json l = {{"count", h.count()}, {"avg_us", h.mean() / 1000}, {"stddev_us", h.stddev() / 1000}};
        json p = json::array();
        for (double q : report_percentiles())
            p.push_back({{"percentile", q}, {"us", static_cast<double>(percentile_of(h, q)) / 1000}});
        l["percentiles"] = p;
        json buckets = json::array();
        h.for_each_bucket([&](uint64_t lower_ns, uint64_t count) { buckets.push_back({lower_ns, count}); });
        l["histogram_ns"] = buckets;  // [lower bound, count] of every non-empty bucket
        return l;
    };
    auto figures_json = [&](const Figures& f) {
        return json{{"bytes", f.bytes},
                    {"ios", f.ios},
                    {"read_ios", f.read_ios},
                    {"write_ios", f.write_ios},
                    {"seconds", f.seconds},
                    {"mib_per_s", f.mib_s},
                    {"iops", f.iops},
                    {"iops_stddev", f.iops_stddev},
                    {"latency", {{"read", latency(f.read)}, {"write", latency(f.write)}, {"total", latency(f.all)}}},
                    {"cpu", {{"user_percent", f.user_pct}, {"kernel_percent", f.kernel_pct}}},
                    {"driver_ns_per_command", f.driver_ns_per_cmd},
                    {"thread_cpu_ns_per_command", f.thread_cpu_ns_per_cmd},
                    {"empty_polls", f.empty_polls},
                    {"queue_pair_memory_bytes", f.qp_memory},
                    {"sq_doorbells_per_command", f.sq_doorbells_per_cmd},
                    {"cq_doorbells_per_command", f.cq_doorbells_per_cmd},
                    {"doorbell_register_writes_per_command", f.doorbell_writes_per_cmd},
                    {"interrupts_per_command", f.interrupts_per_cmd},
                    {"failed_commands", f.errors},
                    {"verify_mismatches", f.mismatches},
                    {"device_errors", f.device_errors}};
    };
    j["threads"] = json::array();
    for (const auto& t : r.threads) {
        json tj = figures_json(figures(r, static_cast<int>(t.thread)));
        tj["thread"] = t.thread;
        tj["queue_pair"] = t.qid;
        tj["pinned_cpu"] = t.cpu;  // -1: not pinned
        tj["iops_by_interval"] = json::array();
        const double interval_s = static_cast<double>(w.interval_ns) / 1e9;
        for (size_t i = 0; i < t.interval_ios.size() && (static_cast<double>(i) + 1) * interval_s <= t.seconds + 1e-9; ++i)
            tj["iops_by_interval"].push_back(static_cast<double>(t.interval_ios[i]) / interval_s);
        if (!t.first_error.empty()) tj["first_error"] = t.first_error;
        j["threads"].push_back(tj);
    }
    const Figures total = figures(r, -1);
    j["total"] = figures_json(total);
    // Without --no-references' measurements, null: not zeros that read as figures.
    j["references"] = nullptr;
    j["ratios"] = nullptr;
    if (r.refs) {
        const References& ref = *r.refs;
        j["references"] = {{"io_uring_nop_ns", ref.io_uring_nop_ns},
                           {"io_uring_batch", ref.io_uring_batch},
                           {"io_uring_error", ref.io_uring_error},
                           {"cache_line_round_trip_ns", ref.cache_line_rtt_ns},
                           {"bare_ring_commands_per_s",
                            ref.bare_ring_per_s > 0 ? nlohmann::json(ref.bare_ring_per_s) : nlohmann::json(nullptr)},
                           {"bare_ring_depth", ref.bare_ring_depth},
                           {"bare_ring_batch", ref.bare_ring_batch},
                           {"memcpy_gib_per_s", ref.memcpy_gib_s}};
        j["ratios"] = {
            {"driver_cpu_per_command_to_io_uring_nop", ratio(total.driver_ns_per_cmd, ref.io_uring_nop_ns)},
            {"average_latency_to_cache_line_round_trip", ratio(total.lat_avg_us * 1000, ref.cache_line_rtt_ns)},
            {"throughput_to_memcpy", ratio(total.mib_s, ref.memcpy_gib_s * 1024)},
            {"rate_to_bare_ring", ratio(total.iops, ref.bare_ring_per_s)}};
    }
    // The built-in model's doorbell thread; null for any other device.
    j["total"]["model_thread"] = total.model_busy_pct >= 0 ? json{{"cpu", r.run.model_cpu},
                                                                  {"busy_percent", total.model_busy_pct},
                                                                  {"busy_ns_per_command", total.model_ns_per_cmd}}
                                                           : json();
    j["total"]["syscalls"] = total.syscalls;
    j["total"]["syscalls_per_command"] = total.syscalls >= 0 ? nlohmann::json(total.syscalls_per_cmd) : nlohmann::json();
    if (total.syscalls < 0) j["total"]["syscalls_not_counted"] = total.syscalls_why;
    j["goals"] = json::array();
    for (const auto& goal : goals(r))
        j["goals"].push_back({{"name", goal.name},
                              {"target", goal.target},
                              {"measured", goal.measured},
                              {"unit", goal.unit},
                              {"met", goal.met()},
                              {"missed_by_percent", goal.missed_by_percent()}});
    return j;
}

double Goal::missed_by_percent() const {
    if (met() || limit == 0) return 0;
    return 100 * std::fabs(measured - limit) / limit;
}

std::vector<Goal> goals(const Report& r) {
    std::vector<Goal> out;
    const Workload& w = r.run.workload;
    const Figures f = figures(r, -1);
    const References ref = r.refs.value_or(References{});
    const bool null_model = r.run.model_mode == "null";
    if (f.ios == 0) return out;
    if (null_model && w.depth == 256 && ref.io_uring_nop_ns > 0)
        out.push_back({"driver CPU per command, null model, depth 256", "<= 0.5 x io_uring NOP",
                       f.driver_ns_per_cmd / ref.io_uring_nop_ns, 0.5, true, "x NOP"});
    if (null_model && r.threads.size() == 1)
        out.push_back({"commands per second on one queue pair, null model", ">= 10 M/s", f.iops / 1e6, 10, false,
                       "M/s"});
    if (w.depth == 1 && !w.interrupts && ref.cache_line_rtt_ns > 0)
        out.push_back({"depth-1 polled round trip", "<= 2 x cache-line round trip",
                       f.lat_avg_us * 1000 / ref.cache_line_rtt_ns, 2, true, "x RTT"});
    if (r.run.model_mode == "data" && w.block_sizes.size() == 1 && w.block_sizes[0] == 128 * 1024 &&
        ref.memcpy_gib_s > 0)
        out.push_back({"128 KiB transfers, data mode", ">= 0.8 x memcpy", f.mib_s / (ref.memcpy_gib_s * 1024), 0.8,
                       false, "x memcpy"});
    if (!w.interrupts && w.registration == BufferMode::kPreRegistered && f.syscalls >= 0)
        out.push_back({"system calls per command, polled, registered buffers", "none", f.syscalls_per_cmd, 0.001,
                       true, "per cmd"});
    if (w.depth == 4096 && w.segments <= 2)
        out.push_back({"memory per queue pair at depth 4096, inline descriptors", "< 8 MiB",
                       static_cast<double>(f.qp_memory) / kMiB, 8, true, "MiB"});
    return out;
}

std::string to_csv(const Report& r) {
    std::string out =
        "thread,queue_pair,cpu,bytes,ios,read_ios,write_ios,seconds,mib_per_s,iops,iops_stddev,lat_avg_us,"
        "lat_stddev_us";
    for (double p : report_percentiles()) out += ",lat_" + percentile_name(p) + "_us";
    out += ",user_percent,kernel_percent,driver_ns_per_command,thread_cpu_ns_per_command,queue_pair_memory_bytes,"
           "failed_commands\n";
    auto row = [&](const std::string& thread, const std::string& qp, const std::string& cpu, const Figures& f) {
        out += fmt::format("{},{},{},{},{},{},{},{:.6f},{:.3f},{:.3f},{:.3f},{:.3f},{:.3f}", thread, qp, cpu, f.bytes,
                           f.ios, f.read_ios, f.write_ios, f.seconds, f.mib_s, f.iops, f.iops_stddev, f.lat_avg_us,
                           f.lat_stddev_us);
        for (double p : report_percentiles())
            out += fmt::format(",{:.3f}", static_cast<double>(percentile_of(f.all, p)) / 1000);
        out += fmt::format(",{:.2f},{:.2f},{:.1f},{:.1f},{},{}\n", f.user_pct, f.kernel_pct, f.driver_ns_per_cmd,
                           f.thread_cpu_ns_per_cmd, f.qp_memory, f.errors);
    };
    for (const auto& t : r.threads)
        row(std::to_string(t.thread), std::to_string(t.qid), std::to_string(t.cpu), figures(r, static_cast<int>(t.thread)));
    row("total", "", "", figures(r, -1));
    return out;
}

}  // namespace vfioq::perf
