// SPDX-License-Identifier: MIT
// The one way the kernel transports make an ioctl: its result, or -errno read
// at once. The code an error carries and the words it says then come from the
// same call; errno read while an error message is being formatted (an
// argument evaluated in no fixed order, an allocation) may not be that call's.
#pragma once

#include <sys/ioctl.h>

#include <cerrno>

namespace vfioq::kernel {

template <typename... Arg>
int vfio_ioctl(int fd, unsigned long request, Arg... arg) {
    static_assert(sizeof...(Arg) <= 1, "an ioctl takes at most one argument");
    const int rc = ::ioctl(fd, request, arg...);
    return rc < 0 ? -errno : rc;
}

}  // namespace vfioq::kernel
