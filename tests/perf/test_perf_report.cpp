// SPDX-License-Identifier: MIT
// vfioq-perf's arithmetic: the latency histogram against exact percentiles of
// the same samples, and the report's figures from threads whose counts are known.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "perf/latency_histogram.hpp"
#include "perf/report.hpp"

namespace vfioq::perf {
namespace {

TEST(LatencyHistogram, BucketsAreOrderedAndCoverEveryValue) {
    uint32_t last = 0;
    for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 129ull, 255ull, 256ull, 1000ull, 123456789ull, ~0ull}) {
        const uint32_t i = LatencyHistogram::index(v);
        ASSERT_LT(i, LatencyHistogram::kBuckets) << v;
        EXPECT_GE(i, last) << v;
        EXPECT_LE(LatencyHistogram::lower(i), v) << v;
        if (i + 1 < LatencyHistogram::kBuckets) {
            EXPECT_GT(LatencyHistogram::lower(i + 1), v) << v;
        }
        last = i;
    }
    for (uint32_t i = 1; i < LatencyHistogram::kBuckets; ++i)
        ASSERT_GT(LatencyHistogram::lower(i), LatencyHistogram::lower(i - 1)) << i;
}

TEST(LatencyHistogram, PercentilesAreWithinABucketOfTheExactOnes) {
    std::mt19937_64 rng(5);
    std::lognormal_distribution<double> dist(9.0, 1.5);  // around 8 us, with a long tail
    LatencyHistogram h, a, b;
    std::vector<uint64_t> samples;
    for (int i = 0; i < 200000; ++i) {
        const auto v = static_cast<uint64_t>(dist(rng));
        samples.push_back(v);
        h.record(v);
        (i % 2 ? a : b).record(v);
    }
    a.merge(b);
    std::sort(samples.begin(), samples.end());
    for (double p : {25.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
        const auto rank = static_cast<size_t>(std::ceil(p / 100 * static_cast<double>(samples.size())));
        const double exact = static_cast<double>(samples[rank - 1]);
        EXPECT_NEAR(static_cast<double>(h.percentile(p)), exact, exact * 0.01 + 1) << p;
        EXPECT_EQ(a.percentile(p), h.percentile(p)) << "merging loses nothing";
    }
    EXPECT_EQ(h.min(), samples.front());
    EXPECT_EQ(h.max(), samples.back());
    EXPECT_EQ(h.percentile(100), samples.back());
    double sum = 0;
    for (auto v : samples) sum += static_cast<double>(v);
    EXPECT_NEAR(h.mean(), sum / static_cast<double>(samples.size()), 1e-6 * sum);
    EXPECT_EQ(h.count(), 200000u);
    LatencyHistogram empty;
    EXPECT_EQ(empty.percentile(50), 0u);
    EXPECT_EQ(empty.min(), 0u);
}

ThreadResult thread_with(uint32_t id, uint64_t reads, uint64_t writes, uint32_t block, std::vector<uint64_t> intervals) {
    ThreadResult t;
    t.thread = id;
    t.ios[0] = reads;
    t.ios[1] = writes;
    t.bytes[0] = reads * block;
    t.bytes[1] = writes * block;
    for (uint64_t i = 0; i < reads; ++i) t.latency[0].record(10'000);
    for (uint64_t i = 0; i < writes; ++i) t.latency[1].record(30'000);
    t.interval_ios = std::move(intervals);
    t.seconds = 4;
    t.user_s = 2;
    t.kernel_s = 1;
    t.busy_ns = 1e6;  // of the 3 s of CPU, 1 ms was in submissions and polls that reaped
    t.qp_after.memory_bytes = 1 << 20;
    t.qp_after.sq_doorbells = (reads + writes) / 4;
    return t;
}

TEST(PerfReport, FiguresFromKnownCounts) {
    Report r;
    r.run.workload.interval_ns = 1'000'000'000;
    // 4 s: thread 0 did 100 per second steadily; thread 1 alternated 50 and 150.
    r.threads.push_back(thread_with(0, 300, 100, 4096, {100, 100, 100, 100}));
    r.threads.push_back(thread_with(1, 400, 0, 4096, {50, 150, 50, 150}));
    const Figures t0 = figures(r, 0), all = figures(r, -1);
    EXPECT_EQ(t0.ios, 400u);
    EXPECT_DOUBLE_EQ(t0.iops, 100);
    EXPECT_DOUBLE_EQ(t0.iops_stddev, 0);
    EXPECT_DOUBLE_EQ(figures(r, 1).iops_stddev, 50);
    EXPECT_EQ(all.ios, 800u);
    EXPECT_EQ(all.read_ios, 700u);
    EXPECT_DOUBLE_EQ(all.iops, 200);
    EXPECT_DOUBLE_EQ(all.mib_s, 800.0 * 4096 / (1 << 20) / 4);
    EXPECT_DOUBLE_EQ(all.iops_stddev, 50) << "the threads' deviations add as variances";
    EXPECT_NEAR(all.lat_avg_us, (700 * 10.0 + 100 * 30.0) / 800, 0.2);
    EXPECT_DOUBLE_EQ(t0.user_pct, 50);
    EXPECT_DOUBLE_EQ(t0.kernel_pct, 25);
    EXPECT_DOUBLE_EQ(all.thread_cpu_ns_per_cmd, 6e9 / 800) << "both threads' CPU over all commands";
    EXPECT_DOUBLE_EQ(all.driver_ns_per_cmd, 2e6 / 800) << "both threads' busy time over all commands";
    EXPECT_DOUBLE_EQ(t0.driver_ns_per_cmd, 1e6 / 400);
    EXPECT_EQ(all.qp_memory, 1u << 20) << "per queue pair, not summed";
    EXPECT_DOUBLE_EQ(t0.sq_doorbells_per_cmd, 0.25);

    const auto j = to_json(r);
    EXPECT_EQ(j["total"]["ios"], 800);
    EXPECT_EQ(j["threads"].size(), 2u);
    EXPECT_EQ(j["threads"][1]["iops_by_interval"].size(), 4u);
    EXPECT_EQ(j["total"]["latency"]["total"]["percentiles"].size(), report_percentiles().size());
    const std::string csv = to_csv(r);
    EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 4) << "a header, two threads and the total";
    EXPECT_NE(csv.find("lat_9-nines_us"), std::string::npos);
}

}  // namespace
}  // namespace vfioq::perf
