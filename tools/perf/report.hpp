// SPDX-License-Identifier: MIT
// vfioq-perf's report: diskspd's figures (bytes, I/Os, MiB/s, IOPS and its
// standard deviation, latency average, deviation and percentiles, CPU per
// thread) and the driver's own (CPU per command, memory per queue pair,
// doorbells and interrupts per command), with the references of the same run
// as ratios. As text, JSON or CSV.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <vector>

#include "references.hpp"
#include "workload.hpp"

namespace vfioq::perf {

struct RunInfo {
    std::string device;       // as given: model, vfio-user:PATH, a PCI address
    std::string profile;      // SGQ or NVMe
    std::string model_mode;   // null or data for the built-in model; empty otherwise
    int model_cpu = -1;
    // The built-in model's doorbell thread: time in passes that found work, over the
    // measured window (-1: not the built-in model).
    double model_busy_s = -1, model_window_s = 0;
    std::string host, cpu_model, started;
    uint32_t cpus = 0;
    double duration_s = 0, warmup_s = 0;
    std::string diskspd_flags;  // --diskspd, as given: the workload in diskspd's own words
    Workload workload;
};

struct Report {
    RunInfo run;
    std::vector<ThreadResult> threads;
    std::optional<References> refs;  // none with --no-references
};

// The percentiles diskspd prints: min, 25 ... 99.9999999, max (min and max as 0 and 100).
const std::vector<double>& report_percentiles();

// Figures of one thread, or of all (thread = -1).
struct Figures {
    uint64_t bytes = 0, ios = 0, read_ios = 0, write_ios = 0;
    double seconds = 0, mib_s = 0, iops = 0, iops_stddev = 0;
    double lat_avg_us = 0, lat_stddev_us = 0;
    double user_pct = 0, kernel_pct = 0;
    double thread_cpu_ns_per_cmd = 0;  // the thread's CPU time over its commands, spinning included
    double driver_ns_per_cmd = 0;      // time in submissions and in polls that reaped, over the commands
    double model_busy_pct = -1;        // the built-in model's doorbell thread, busy share of the window (-1: none)
    double model_ns_per_cmd = -1;      // its busy time over the commands
    uint64_t empty_polls = 0;
    uint64_t qp_memory = 0;
    double sq_doorbells_per_cmd = 0, cq_doorbells_per_cmd = 0, interrupts_per_cmd = 0;
    double doorbell_writes_per_cmd = 0;  // register writes: doorbells less those only a shadow took
    uint64_t errors = 0, mismatches = 0, device_errors = 0;
    int64_t syscalls = -1;  // -1: not counted
    double syscalls_per_cmd = 0;
    std::string syscalls_why;
    LatencyHistogram read, write, all;
};
Figures figures(const Report& r, int thread);

// The speed goals (docs/performance.md) that this run's configuration measures.
struct Goal {
    std::string name;
    std::string target;    // as the goal states it
    double measured = 0;
    double limit = 0;      // the bound the measured value is held to
    bool at_most = true;   // measured <= limit (else >=)
    std::string unit;
    [[nodiscard]] bool met() const { return at_most ? measured <= limit : measured >= limit; }
    // How far off, in percent of the limit (0 when met).
    [[nodiscard]] double missed_by_percent() const;
};
std::vector<Goal> goals(const Report& r);

void print_text(FILE* out, const Report& r);
nlohmann::json to_json(const Report& r);
std::string to_csv(const Report& r);

}  // namespace vfioq::perf
