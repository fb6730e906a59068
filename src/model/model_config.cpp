// SPDX-License-Identifier: MIT
#include "vfioq/model_config.hpp"

#include <string>

namespace vfioq::model {

uint64_t ModelConfig::cap_register() const {
    return uint64_t{mqes} | uint64_t{nqp} << 16 | uint64_t{timeout} << 24 | uint64_t{dstrd & 0xFu} << 32 |
           uint64_t{sge_align & 0xFu} << 36 | uint64_t{max_xfer} << 40 | uint64_t{max_sge} << 48;
}

Result<void> ModelConfig::validate() const {
    if (mqes == 0) return make_error(EINVAL, "MQES must be at least 1 (two entries per queue)");
    if (dstrd > 15 || sge_align > 15) return make_error(EINVAL, "DSTRD and SGE_ALIGN are 4-bit fields");
    const uint64_t doorbell_bytes = uint64_t{vector_count()} * 2 * (4u << dstrd);
    if (doorbell_bytes > 4096)
        return make_error(EINVAL, "doorbells of " + std::to_string(vector_count()) + " queue pairs with DSTRD " +
                                      std::to_string(dstrd) + " need " + std::to_string(doorbell_bytes) +
                                      " bytes, more than the 4096-byte doorbell page");
    if (max_xfer < 12 || max_xfer > 31) return make_error(EINVAL, "MAX_XFER must be 12..31 (4 KiB .. 2 GiB)");
    if (max_sge == 0) return make_error(EINVAL, "MAX_SGE must be at least 1");
    if (devmem_size == 0) return make_error(EINVAL, "DEVMEM_SIZE must not be 0");
    if (link_speed < 1 || link_speed > 6 || link_width == 0 || link_width > 32)
        return make_error(EINVAL, "link speed must be 1..6 and width 1..32");
    if (ready_delay >= std::chrono::milliseconds(uint64_t{timeout} * 100) && timeout != 0)
        return make_error(EINVAL, "ready delay must stay below CAP.TO");
    if (workers > 64) return make_error(EINVAL, "at most 64 worker threads");
    if (max_idle_sleep.count() <= 0) return make_error(EINVAL, "the longest idle sleep must be positive");
    return faults.validate();
}

}  // namespace vfioq::model
