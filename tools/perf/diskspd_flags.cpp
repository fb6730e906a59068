// SPDX-License-Identifier: MIT
#include "diskspd_flags.hpp"

#include <fmt/format.h>

#include <charconv>
#include <optional>

namespace vfioq::perf {

namespace {

std::optional<uint64_t> unsigned_number(std::string_view s) {
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// diskspd's sizes: a number of bytes with K, M or G (binary multiples).
std::optional<uint64_t> size_of(std::string_view s) {
    uint64_t scale = 1;
    if (!s.empty()) {
        switch (s.back()) {
            case 'K': case 'k': scale = 1ull << 10; break;
            case 'M': case 'm': scale = 1ull << 20; break;
            case 'G': case 'g': scale = 1ull << 30; break;
            default: break;
        }
        if (scale != 1) s.remove_suffix(1);
    }
    auto v = unsigned_number(s);
    if (!v || *v > (1ull << 40) / scale) return std::nullopt;
    return *v * scale;
}

// Why a flag that diskspd takes means nothing here (empty: it is a workload flag, handled below).
std::string_view no_meaning(char flag) {
    switch (flag) {
        case 'c': return "it creates a file of that size; the card's memory is DEVMEM_SIZE";
        case 'F':
        case 'O':
            return "a thread pool sharing targets has no counterpart: each thread drives a queue pair of its own "
                   "(-t, -o)";
        case 'g': return "vfioq-perf does not rate-limit; it keeps the queue at its depth";
        case 'a': case 'n': return "affinity is --cpus or --no-pin";
        case 'x':
            return "completion routines are a Windows I/O model; vfioq-perf polls or waits on interrupts "
                   "(--interrupts)";
        case 'R': return "the result format is --json or --csv";
        case 'v': return "verbose output has no counterpart";
        case 'Z': return "write contents come from the pattern or --verify";
        case 'z': return "the seed is --seed";
        case 'T': return "thread stride: each thread has its own part of card memory";
        case 'p': return "parallel async I/O on one offset has no counterpart";
        case 'i': case 'j': return "burst and think time have no counterpart";
        case 'l': return "large pages: DMA buffers take hugepages when the host has them";
        case 'e': case 'P': case 'X': case 'f': case 'B': case 'C': case 'u': case 'N': case 'Y':
            return "it has no counterpart in vfioq-perf";
        default: return {};
    }
}

}  // namespace

Result<DiskspdWorkload> parse_diskspd_flags(std::string_view flags) {
    DiskspdWorkload w;
    for (size_t at = 0; at < flags.size();) {
        at = flags.find_first_not_of(" \t", at);
        if (at == std::string_view::npos) break;
        const size_t end = std::min(flags.find_first_of(" \t", at), flags.size());
        const std::string_view word = flags.substr(at, end - at);
        at = end;
        auto bad = [&](const std::string& why) {
            return make_error(EINVAL, fmt::format("--diskspd: '{}' {}", word, why));
        };
        if (word.size() < 2 || (word[0] != '-' && word[0] != '/'))
            return bad("is not a diskspd flag (a target path has no meaning: the target is DEVICE)");
        const char flag = word[1];
        const std::string_view value = word.substr(2);
        if (auto why = no_meaning(flag); !why.empty()) return bad("has no meaning here: " + std::string(why));
        switch (flag) {
            case 'b': {
                auto v = size_of(value);
                if (!v || *v == 0 || *v > (1u << 30)) return bad("needs a block size (4K, 64K, 1M)");
                w.block = static_cast<uint32_t>(*v);
                break;
            }
            case 'o': {
                auto v = unsigned_number(value);
                if (!v || *v == 0 || *v > 4096) return bad("needs 1 to 4096 outstanding I/Os per thread");
                w.outstanding = static_cast<uint32_t>(*v);
                break;
            }
            case 't': {
                auto v = unsigned_number(value);
                if (!v || *v == 0 || *v > 256) return bad("needs 1 to 256 threads");
                w.threads = static_cast<uint32_t>(*v);
                break;
            }
            case 'r': {
                if (value.starts_with("s") || value.starts_with("d"))
                    return bad("has no counterpart: random I/O is uniform over the card's memory, block aligned");
                if (!value.empty() && !size_of(value)) return bad("takes an alignment (4K)");
                if (!value.empty())
                    w.notes.push_back(fmt::format("{}: random offsets are aligned to the block size", word));
                w.random = true;
                break;
            }
            case 's': {
                if (!value.empty() && value != "i" && !size_of(value))
                    return bad("takes a stride; vfioq-perf strides by the block size");
                w.random = false;
                break;
            }
            case 'w': {
                auto v = unsigned_number(value);
                if (!v || *v > 100) return bad("needs a write percentage, 0 to 100");
                w.write_percent = static_cast<uint32_t>(*v);
                break;
            }
            case 'd': case 'W': {
                auto v = unsigned_number(value);
                if (!v || *v > 86400) return bad("needs whole seconds");
                (flag == 'd' ? w.duration_s : w.warmup_s) = static_cast<double>(*v);
                break;
            }
            case 'L':
                if (!value.empty()) return bad("takes no value");
                w.notes.push_back("-L: vfioq-perf always measures latency");
                break;
            case 'D': {
                if (!value.empty()) {
                    auto v = unsigned_number(value);
                    if (!v || *v == 0 || *v > 3'600'000) return bad("takes an interval in milliseconds");
                    w.iops_interval_ms = static_cast<uint32_t>(*v);
                }
                w.notes.push_back("-D: vfioq-perf always measures the IOPS deviation");
                break;
            }
            case 'S': case 'h':
                w.notes.push_back(
                    fmt::format("{}: no cache lies between vfioq and the card; nothing to disable", word));
                break;
            default: return bad("is not a diskspd workload flag vfioq-perf knows");
        }
    }
    return w;
}

}  // namespace vfioq::perf
