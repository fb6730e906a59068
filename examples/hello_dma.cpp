// SPDX-License-Identifier: MIT
// hello_dma: the smallest complete vfioq program. It opens a device (the
// built-in model unless an address is given), brings the card up, writes a
// buffer into card memory by DMA, reads it back into another, and compares.
#include <cstdio>
#include <cstring>

#include <vfioq/model.hpp>
#include <vfioq/vfioq.hpp>

namespace {

// Completion callbacks get the context pointer given at submission.
void on_complete(const vfioq::Completion& c) {
    *static_cast<vfioq::IoStatus*>(c.context) = c.status;
}

template <typename T>
T must(vfioq::Result<T> r) {
    if (!r) {
        std::fprintf(stderr, "hello_dma: %s\n", r.error().message.c_str());
        std::exit(1);
    }
    return std::move(*r);
}

}  // namespace

int main(int argc, char** argv) {
    vfioq::model::enable_model_address();  // "model" is served by libvfioq-model
    auto device = must(vfioq::Device::open(argc > 1 ? argv[1] : "model"));
    auto controller = must(vfioq::Controller::open(*device));
    auto qp = must(controller->create_queue_pair({.depth = 2}));

    constexpr size_t kSize = 64 * 1024;
    vfioq::DmaBuffer out = must(device->dma().allocate(kSize));
    vfioq::DmaBuffer in = must(device->dma().allocate(kSize));
    for (size_t i = 0; i < kSize; ++i) out.data()[i] = static_cast<std::byte>(i * 7 + 3);

    // Host -> card at card address 0x1000, then card -> host.
    for (auto op : {vfioq::Opcode::kWrite, vfioq::Opcode::kRead}) {
        const vfioq::DmaBuffer& buf = op == vfioq::Opcode::kWrite ? out : in;
        const vfioq::DmaSegment seg = buf.segment(0, kSize);
        vfioq::IoStatus status = vfioq::IoStatus::kCancelled;
        must(qp->submit({op, 0x1000, {&seg, 1}, on_complete, &status}));
        while (qp->poll() == 0) {
        }
        if (status != vfioq::IoStatus::kSuccess) {
            std::fprintf(stderr, "hello_dma: %s failed: %s\n", op == vfioq::Opcode::kWrite ? "write" : "read",
                         vfioq::io_status_name(status));
            return 1;
        }
    }
    const bool same = std::memcmp(out.data(), in.data(), kSize) == 0;
    std::printf("hello_dma: wrote %zu bytes to %s and read them back: %s\n", kSize, device->name().c_str(),
                same ? "identical" : "DIFFERENT");
    return same ? 0 : 1;
}
