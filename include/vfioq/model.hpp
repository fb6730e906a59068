// SPDX-License-Identifier: MIT
// The reference model of the SGQ card (libvfioq-model): the contract in
// docs/device-interface.md played by software, speaking vfio-user, so that
// everything the driver does can run with no card at all.
//
// Three ways to use it: a server for vfio-user connections (what vfioq-devsim
// runs), a Device in this process whose card is the model, and the `model`
// device address that Device::open understands once enable_model_address()
// has been called.
#pragma once

#include <memory>

#include "vfioq/device.hpp"
#include "vfioq/export.hpp"
#include "vfioq/model_config.hpp"
#include "vfioq/result.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::model {

// A model card and its vfio-user server.
class VFIOQ_MODEL_API Server {
public:
    // Refuses a config that no card could have, saying which field is wrong.
    static Result<std::unique_ptr<Server>> create(const ModelConfig& config);
    ~Server();
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    // Serves one client until it disconnects, breaks the protocol or stop() is
    // called; the card is reset for the next one. While serving, connections
    // pending on `reject_listen_fd` (if >= 0) are accepted and closed at once.
    void serve(UniqueFd connection, int reject_listen_fd = -1);
    // Makes serve() return; safe from any thread and from a signal handler.
    void stop();
    [[nodiscard]] bool stopped() const;
    // Readable once stop() was called, for a loop that waits on more than the server.
    [[nodiscard]] int stop_fd() const;

    struct Impl;

private:
    explicit Server(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// A device whose card is a model in this process, served on a thread of its
// own over a socket pair. The device keeps the model alive; errors are named
// `name`.
VFIOQ_MODEL_API Result<std::unique_ptr<Device>> open_device(const ModelConfig& config = {},
                                                            const OpenOptions& options = {},
                                                            const std::string& name = "model");

// From now on Device::open("model") opens open_device() with the default config.
VFIOQ_MODEL_API void enable_model_address();

}  // namespace vfioq::model
