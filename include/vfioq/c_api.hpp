// SPDX-License-Identifier: MIT
// The C API's handles seen from C++: for a library that opens a Device by means of
// its own (the model library's vfioq_model_open) and hands it to a C caller.
#pragma once

#include <memory>

#include "vfioq/device.hpp"
#include "vfioq/export.hpp"
#include "vfioq/result.hpp"
#include "vfioq/vfioq.h"

namespace vfioq::c_api {

// A handle that owns `device`; freed by vfioq_device_close().
VFIOQ_API vfioq_device* wrap(std::unique_ptr<Device> device);
// Records `error` as the calling thread's last failure (vfioq_last_error()); returns -code.
VFIOQ_API int fail(const Error& error);

}  // namespace vfioq::c_api
