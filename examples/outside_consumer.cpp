// SPDX-License-Identifier: MIT
// The smallest program outside the tree: built with `pkg-config --cflags --libs vfioq-model`,
// it opens the built-in model and pokes a register.
#include <cstdio>

#include <vfioq/model.hpp>
#include <vfioq/vfioq.hpp>

int main() {
    vfioq::model::enable_model_address();  // "model" is served by libvfioq-model
    auto device = vfioq::Device::open("model");
    if (!device) {
        std::fprintf(stderr, "%s\n", device.error().message.c_str());
        return 1;
    }
    if (auto r = (*device)->write32(vfioq::sgq::kRegisterBar, vfioq::sgq::kRegScratch, 0xC0FFEE); !r) {
        std::fprintf(stderr, "%s\n", r.error().message.c_str());
        return 1;
    }
    auto value = (*device)->read32(vfioq::sgq::kRegisterBar, vfioq::sgq::kRegScratch);
    if (!value) {
        std::fprintf(stderr, "%s\n", value.error().message.c_str());
        return 1;
    }
    std::printf("SCRATCH reads back %#x\n", *value);
    return *value == 0xC0FFEE ? 0 : 1;
}
