// SPDX-License-Identifier: MIT
// The model library's public face (vfioq/model.hpp) over its device and server.
#include "vfioq/model.hpp"

#include "model_server.hpp"
#include "sgq_device.hpp"
#include "vfio_user/message_socket.hpp"
#include "vfio_user_server.hpp"
#include "vfioq/vfio_user.hpp"

namespace vfioq::model {

struct Server::Impl {
    std::unique_ptr<SgqDevice> device;
    std::unique_ptr<VfioUserServer> server;
};

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

Result<std::unique_ptr<Server>> Server::create(const ModelConfig& config) {
    auto device = SgqDevice::create(config);
    if (!device) return device.error();
    auto impl = std::make_unique<Impl>();
    impl->device = std::move(*device);
    impl->server = std::make_unique<VfioUserServer>(*impl->device);
    return std::unique_ptr<Server>(new Server(std::move(impl)));
}

void Server::serve(UniqueFd connection, int reject_listen_fd) {
    impl_->server->serve(std::move(connection), reject_listen_fd);
}
void Server::stop() { impl_->server->stop(); }
bool Server::stopped() const { return impl_->server->stopped(); }
int Server::stop_fd() const { return impl_->server->stop_fd(); }

Result<std::unique_ptr<Device>> open_device(const ModelConfig& config, const OpenOptions& options,
                                            const std::string& name) {
    auto pair = vfio_user::make_socket_pair();
    if (!pair) return pair.error().with_context(name);
    auto model = ModelServer::start(config, std::move(pair->second));
    if (!model) return model.error().with_context(name);
    auto transport = open_vfio_user(std::move(pair->first), name, options.vfio_user);
    if (!transport) return transport.error();
    return Device::from_transport(std::move(*transport), std::shared_ptr<ModelServer>(std::move(*model)), options.dma);
}

void enable_model_address() {
    set_model_opener([](const OpenOptions& options) { return open_device(ModelConfig{}, options); });
}

}  // namespace vfioq::model
