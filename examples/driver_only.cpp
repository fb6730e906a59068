// SPDX-License-Identifier: MIT
// A program that links the driver library alone (`pkg-config --libs vfioq`):
// it reaches a card at a vfio-user socket or a PCI address, and the `model`
// address tells it what to link instead of starting a model it does not have.
#include <cstdio>

#include <vfioq/vfioq.hpp>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: driver_only vfio-user:PATH | PCI-ADDRESS\n");
        return 2;
    }
    auto device = vfioq::Device::open(argv[1]);
    if (!device) {
        std::fprintf(stderr, "%s\n", device.error().message.c_str());
        return 1;
    }
    if (auto why = vfioq::sgq::why_not_sgq(**device)) {
        std::fprintf(stderr, "%s: not an SGQ card: %s\n", argv[1], why->c_str());
        return 1;
    }
    auto version = (*device)->read32(vfioq::sgq::kRegisterBar, vfioq::sgq::kRegVersion);
    if (!version) {
        std::fprintf(stderr, "%s\n", version.error().message.c_str());
        return 1;
    }
    std::printf("an SGQ card, interface %u.%u\n", *version >> 16, *version & 0xFFFF);
    return 0;
}
