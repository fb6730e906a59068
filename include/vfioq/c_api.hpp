// SPDX-License-Identifier: MIT
// The C API's handles seen from C++: for a library that opens a Device by means of
// its own (the model library's vfioq_model_open) and hands it to a C caller.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <new>

#include "vfioq/device.hpp"
#include "vfioq/export.hpp"
#include "vfioq/result.hpp"
#include "vfioq/vfioq.h"

namespace vfioq::c_api {

// A handle that owns `device`; freed by vfioq_device_close().
VFIOQ_API vfioq_device* wrap(std::unique_ptr<Device> device);
// Records `error` as the calling thread's last failure (vfioq_last_error()); returns -code.
VFIOQ_API int fail(const Error& error);

// A C entry point's body: whatever C++ throws (memory, mostly) comes back as an errno.
template <typename F>
int guarded(F&& body) {
    try {
        return body();
    } catch (const std::bad_alloc&) {
        return fail(static_error(ENOMEM, "out of memory"));
    } catch (const std::exception& e) {
        return fail(make_error(EIO, e.what()));
    } catch (...) {
        return fail(static_error(EIO, "unexpected failure inside vfioq"));
    }
}

// Options from a caller's struct: its fields up to its own `struct_size` over the defaults
// `init` writes; a struct never initialised (size 0) is refused with `what`.
template <typename T>
int options_from(const T* given, void (*init)(T*), const char* what, T& out) {
    init(&out);
    if (!given) return 0;
    if (given->struct_size == 0) return fail(static_error(EINVAL, what));
    std::memcpy(&out, given, std::min<size_t>(given->struct_size, sizeof(T)));
    out.struct_size = sizeof(T);
    return 0;
}

}  // namespace vfioq::c_api
