// SPDX-License-Identifier: MIT
#include "vfioq/sgq_commands.hpp"

namespace vfioq::sgq {

const char* status_name(uint16_t code) {
    switch (static_cast<Status>(code)) {
        case Status::kSuccess: return "SUCCESS";
        case Status::kInvalidOpcode: return "INVALID_OPCODE";
        case Status::kInvalidField: return "INVALID_FIELD";
        case Status::kDevaddrRange: return "DEVADDR_RANGE";
        case Status::kLengthInvalid: return "LENGTH_INVALID";
        case Status::kSglInvalid: return "SGL_INVALID";
        case Status::kSglLengthMismatch: return "SGL_LENGTH_MISMATCH";
        case Status::kDmaFault: return "DMA_FAULT";
        case Status::kAborted: return "ABORTED";
        case Status::kInternal: return "INTERNAL";
    }
    return "UNKNOWN_STATUS";
}

}  // namespace vfioq::sgq
