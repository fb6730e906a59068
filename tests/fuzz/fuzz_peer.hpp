// SPDX-License-Identifier: MIT
// What both vfio-user fuzz targets give the peer they drive: small memfds to
// pass as file descriptors, and a VERSION payload that negotiation accepts.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <string_view>
#include <vector>

#include "vfio_user/protocol.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::fuzz {

inline UniqueFd small_memfd(size_t size) {
    UniqueFd fd(::memfd_create("fuzz", MFD_CLOEXEC));
    if (fd && ::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) fd.reset();
    return fd;
}

// Our version, and the capabilities JSON (NUL-terminated) if any.
inline std::vector<std::byte> version_payload(std::string_view json = {}) {
    std::vector<std::byte> p;
    vfio_user::append_struct(p, vfio_user::VersionPayload{vfio_user::kVersionMajor, vfio_user::kVersionMinor});
    if (!json.empty()) {
        for (char c : json) p.push_back(std::byte(c));
        p.push_back(std::byte{0});
    }
    return p;
}

}  // namespace vfioq::fuzz
