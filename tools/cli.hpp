// SPDX-License-Identifier: MIT
// What every vfioq tool shares: --log-level, number parsing, error exits.
#pragma once

#include <fmt/format.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "vfioq/log.hpp"
#include "vfioq/result.hpp"

namespace vfioq::cli {

// Parses "0x1f", "31" or "0b11111" as an unsigned 64-bit number.
inline std::optional<uint64_t> parse_u64(std::string_view s) {
    int base = 10;
    if (s.starts_with("0x") || s.starts_with("0X")) {
        base = 16;
        s.remove_prefix(2);
    } else if (s.starts_with("0b")) {
        base = 2;
        s.remove_prefix(2);
    }
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// Parses "500ms", "90s", "5m", "1h" or a plain number of seconds.
inline std::optional<std::chrono::milliseconds> parse_duration(std::string_view s) {
    uint64_t scale = 1000;
    for (auto [suffix, ms] : {std::pair{"ms", 1}, std::pair{"s", 1000}, std::pair{"m", 60000}, std::pair{"h", 3600000}})
        if (s.ends_with(suffix)) {
            s.remove_suffix(std::string_view(suffix).size());
            scale = static_cast<uint64_t>(ms);
            break;
        }
    uint64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size() || v > (uint64_t{1} << 40) / scale)
        return std::nullopt;
    return std::chrono::milliseconds(v * scale);
}

[[noreturn]] inline void fail(std::string_view tool, const std::string& message, int status = 1) {
    fmt::print(stderr, "{}: {}\n", tool, message);
    std::exit(status);
}

// Applies VFIOQ_LOG, then a --log-level value if given; exits with a message on a bad spec.
inline void setup_logging(std::string_view tool, std::optional<std::string_view> flag) {
    if (auto r = log::apply_environment(); !r) fail(tool, r.error().message, 2);
    if (flag)
        if (auto r = log::set_levels(*flag); !r) fail(tool, "--log-level: " + r.error().message, 2);
}

}  // namespace vfioq::cli
