// SPDX-License-Identifier: MIT
// Logging: one spdlog logger per subsystem, writing to stderr.
//
// The level comes from the VFIOQ_LOG environment variable and from the tools'
// --log-level flag; both take either one level for every subsystem ("debug")
// or a list of subsystem=level pairs ("vfio-user=trace,model=info").
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "vfioq/export.hpp"
#include "vfioq/result.hpp"

namespace spdlog {
class logger;
}

namespace vfioq::log {

// The subsystems that log. Each has its own logger of the same name.
inline constexpr std::string_view kDevice = "device";          // opening, BARs, removal
inline constexpr std::string_view kController = "controller";  // bring-up, queue set-up, resets, shutdown
inline constexpr std::string_view kQueue = "queue";            // queue pairs: timeouts, recovery, closing
inline constexpr std::string_view kDma = "dma";                // DMA memory and registrations
inline constexpr std::string_view kKernelVfio = "vfio";        // the kernel's VFIO and iommufd
inline constexpr std::string_view kVfioUser = "vfio-user";     // the vfio-user client
inline constexpr std::string_view kModel = "model";
inline constexpr std::string_view kTools = "tools";

// The logger of one subsystem; created on first use with the configured level,
// which set_levels changes later in place. Takes a lock: look it up once (logger()).
VFIOQ_API std::shared_ptr<spdlog::logger> get(std::string_view subsystem);

// The logger of `Subsystem`, looked up on first use and kept.
template <const std::string_view& Subsystem>
spdlog::logger& logger() {
    static const std::shared_ptr<spdlog::logger> kept = get(Subsystem);
    return *kept;
}

// Applies a level specification ("info", "model=debug,vfio-user=warn").
// Unknown levels are an error naming the bad item; nothing is changed then.
VFIOQ_API Result<void> set_levels(std::string_view spec);

// Applies VFIOQ_LOG if it is set. Returns its error, if any, for the caller to report.
VFIOQ_API Result<void> apply_environment();

}  // namespace vfioq::log
