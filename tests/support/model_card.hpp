// SPDX-License-Identifier: MIT
// A card for I/O tests: the model served in this process, and the library's
// device and controller brought up on it over the vfio-user client.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "model_fixture.hpp"
#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"

namespace vfioq::test {

struct ModelCard {
    explicit ModelCard(model::ModelConfig config = {}, const char* name = "test-card") : model(config) {
        auto t = open_vfio_user(model.connect(), name);
        EXPECT_TRUE(t) << (t ? "" : t.error().message);
        auto d = Device::from_transport(std::move(*t));
        EXPECT_TRUE(d) << (d ? "" : d.error().message);
        device = std::move(*d);
        auto c = Controller::open(*device);
        EXPECT_TRUE(c) << (c ? "" : c.error().message);
        ctrl = std::move(*c);
    }
    std::unique_ptr<QueuePair> queue_pair(QueuePairOptions o = {}) {
        auto qp = ctrl->create_queue_pair(o);
        EXPECT_TRUE(qp) << (qp ? "" : qp.error().message);
        return qp ? std::move(*qp) : nullptr;
    }
    DmaBuffer buffer(size_t n) {
        auto b = device->dma().allocate(n);
        EXPECT_TRUE(b) << (b ? "" : b.error().message);
        return std::move(*b);
    }

    ServedModel model;
    std::unique_ptr<Device> device;
    std::unique_ptr<Controller> ctrl;
};

}  // namespace vfioq::test
