// SPDX-License-Identifier: MIT
// Executes one submission entry as the card would (spec sections 3.1-3.4 and
// 6): validates it in the spec's order, fetches and checks the whole SGL
// before any data moves, then moves data between host memory and card memory
// descriptor by descriptor. Knows nothing of rings, doorbells or interrupts.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "dma_space.hpp"
#include "vfioq/sgq_commands.hpp"

namespace vfioq::model {

class SgqDevice;

struct CommandOutcome {
    sgq::Status status = sgq::Status::kSuccess;
    uint32_t bytes = 0;  // bytes moved (RESULT)
};

class CommandExecutor {
public:
    explicit CommandExecutor(SgqDevice& device);

    // `epoch` is the controller reset count the command was fetched under;
    // once a reset has moved it on, no further DMA is issued for the command.
    // `reader`: the calling thread's.
    CommandOutcome execute(DmaSpace::Reader& reader, uint16_t qid, const sgq::SubmissionEntry& sqe, uint64_t epoch);

private:
    sgq::Status collect_sgl(DmaSpace::Reader& reader, uint16_t qid, const sgq::SubmissionEntry& sqe);
    sgq::Status walk_segments(DmaSpace::Reader& reader, uint16_t qid, uint16_t cid, sgq::SglDescriptor pointer);
    sgq::Status add_data(const sgq::SglDescriptor& d);
    sgq::Status move_data(DmaSpace::Reader& reader, uint16_t qid, const sgq::SubmissionEntry& sqe, uint64_t epoch,
                          uint32_t& moved);

    SgqDevice& device_;
    std::vector<sgq::SglDescriptor> data_;     // the DATA descriptors of the current command
    std::vector<sgq::SglDescriptor> segment_;  // one fetched segment array
    std::vector<std::byte> corrupted_;         // a deliberately damaged copy (corrupt_reads_every)
};

}  // namespace vfioq::model
