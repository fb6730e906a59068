// SPDX-License-Identifier: MIT
// The whole public API of the driver library in one include (the model library's is vfioq/model.hpp).
#pragma once

#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/dma.hpp"
#include "vfioq/export.hpp"
#include "vfioq/kernel_vfio.hpp"
#include "vfioq/log.hpp"
#include "vfioq/pci_info.hpp"
#include "vfioq/queue_pair.hpp"
#include "vfioq/result.hpp"
#include "vfioq/sgq_commands.hpp"
#include "vfioq/sgq_identity.hpp"
#include "vfioq/sgq_registers.hpp"
#include "vfioq/transport.hpp"
#include "vfioq/unique_fd.hpp"
#include "vfioq/vfio_user.hpp"
