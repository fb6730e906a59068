// SPDX-License-Identifier: MIT
#include "vfioq/queue_pair.hpp"

namespace vfioq {

const char* io_status_name(IoStatus status) {
    switch (status) {
        case IoStatus::kSuccess: return "SUCCESS";
        case IoStatus::kInvalidOpcode: return "INVALID_OPCODE";
        case IoStatus::kInvalidField: return "INVALID_FIELD";
        case IoStatus::kDevaddrRange: return "DEVADDR_RANGE";
        case IoStatus::kLengthInvalid: return "LENGTH_INVALID";
        case IoStatus::kSglInvalid: return "SGL_INVALID";
        case IoStatus::kSglLengthMismatch: return "SGL_LENGTH_MISMATCH";
        case IoStatus::kDmaFault: return "DMA_FAULT";
        case IoStatus::kAborted: return "ABORTED";
        case IoStatus::kInternal: return "INTERNAL";
        case IoStatus::kUnknownDeviceStatus: return "UNKNOWN_DEVICE_STATUS";
        case IoStatus::kCancelled: return "CANCELLED";
        case IoStatus::kTimeout: return "TIMEOUT";
        case IoStatus::kReset: return "RESET";
        case IoStatus::kDeviceGone: return "DEVICE_GONE";
    }
    return "UNKNOWN";
}

}  // namespace vfioq
