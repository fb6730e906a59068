// SPDX-License-Identifier: MIT
// The model embedded in a process: a device and its vfio-user server on a
// thread of their own, serving one connection (normally one end of a socket pair).
#pragma once

#include <memory>
#include <thread>

#include "sgq_device.hpp"
#include "vfio_user_server.hpp"

namespace vfioq::model {

class ModelServer {
public:
    static Result<std::unique_ptr<ModelServer>> start(const ModelConfig& config, UniqueFd connection);
    ~ModelServer();
    ModelServer(const ModelServer&) = delete;
    ModelServer& operator=(const ModelServer&) = delete;

    SgqDevice& device() { return *device_; }
    VfioUserServer& server() { return *server_; }

private:
    ModelServer() = default;

    std::unique_ptr<SgqDevice> device_;
    std::unique_ptr<VfioUserServer> server_;
    std::thread thread_;
};

}  // namespace vfioq::model
