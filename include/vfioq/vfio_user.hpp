// SPDX-License-Identifier: MIT
// The vfio-user client transport: reaches a device served over a UNIX socket
// by any server that follows QEMU's docs/interop/vfio-user.rst.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "vfioq/export.hpp"
#include "vfioq/transport.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq {

struct VfioUserOptions {
    // How long to keep trying to connect to a server that accepts no more connections now.
    std::chrono::milliseconds connect_timeout{10000};
    // How long to wait for the server's reply to one request.
    std::chrono::milliseconds reply_timeout{10000};
    // DEVICE_RESET may take longer than other requests.
    std::chrono::milliseconds reset_timeout{30000};
};

// Connects to the server listening at `socket_path` and negotiates the version.
VFIOQ_API Result<std::unique_ptr<Transport>> connect_vfio_user(const std::string& socket_path,
                                                               const VfioUserOptions& options = {});

// Speaks vfio-user over an already connected socket; `name` prefixes errors.
VFIOQ_API Result<std::unique_ptr<Transport>> open_vfio_user(UniqueFd socket, std::string name,
                                                            const VfioUserOptions& options = {});

}  // namespace vfioq
