// SPDX-License-Identifier: MIT
#include "model_server.hpp"

namespace vfioq::model {

Result<std::unique_ptr<ModelServer>> ModelServer::start(const ModelConfig& config, UniqueFd connection) {
    auto device = SgqDevice::create(config);
    if (!device) return device.error();
    std::unique_ptr<ModelServer> model(new ModelServer());
    model->device_ = std::move(*device);
    model->server_ = std::make_unique<VfioUserServer>(*model->device_);
    model->thread_ = std::thread([server = model->server_.get(), fd = connection.release()] {
        server->serve(UniqueFd(fd));
    });
    return model;
}

ModelServer::~ModelServer() {
    if (server_) server_->stop();
    if (thread_.joinable()) thread_.join();
}

}  // namespace vfioq::model
