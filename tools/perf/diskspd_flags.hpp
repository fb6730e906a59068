// SPDX-License-Identifier: MIT
// diskspd's workload flags, taken as they are written for diskspd, so that
// one workload runs on both sides without translation:
//     vfioq-perf --diskspd "-b4K -o32 -t2 -r -w30 -d30 -W5 -L -D"
// Flags that describe the workload are applied; flags that have no meaning
// for a card driven from user space (files, caches, rate limits, thread
// pools) are refused with the reason.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "vfioq/result.hpp"

namespace vfioq::perf {

struct DiskspdWorkload {
    uint32_t block = 64 * 1024;         // -b (diskspd's default: 64 KiB)
    uint32_t outstanding = 2;           // -o per thread (diskspd's default: 2)
    uint32_t threads = 1;               // -t threads per target
    bool random = false;                // -r; -s or neither: sequential
    uint32_t write_percent = 0;         // -w
    double duration_s = 10;             // -d (diskspd's default: 10 s)
    double warmup_s = 5;                // -W (diskspd's default: 5 s)
    uint32_t iops_interval_ms = 1000;   // -D[ms]
    std::vector<std::string> notes;     // flags accepted as what always holds here
};

Result<DiskspdWorkload> parse_diskspd_flags(std::string_view flags);

}  // namespace vfioq::perf
