// SPDX-License-Identifier: MIT
#include "host_protection.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "vfioq/unique_fd.hpp"

namespace vfioq::dma {

namespace {

Result<std::string> read_maps() {
    UniqueFd fd(::open("/proc/self/maps", O_RDONLY | O_CLOEXEC));
    if (!fd) return make_error(errno, fmt::format("cannot open /proc/self/maps: {}", std::strerror(errno)));
    std::string text;
    char chunk[65536];
    for (;;) {
        const ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return make_error(errno, fmt::format("reading /proc/self/maps: {}", std::strerror(errno)));
        if (n == 0) return text;
        text.append(chunk, static_cast<size_t>(n));
    }
}

}  // namespace

Result<HostProtection> host_protection(uintptr_t a, uintptr_t b) {
    auto maps = read_maps();
    if (!maps) return maps.error();
    HostProtection out{true};
    uintptr_t at = a;  // the first byte not yet found in a mapping
    const char* p = maps->c_str();
    while (*p != '\0' && at < b) {
        // "start-end perms offset dev inode path", addresses in hex, ascending.
        char* rest = nullptr;
        const uintptr_t start = std::strtoull(p, &rest, 16);
        const uintptr_t end = *rest == '-' ? std::strtoull(rest + 1, &rest, 16) : 0;
        const bool readable = rest[0] == ' ' && rest[1] == 'r';
        const bool writable = rest[0] == ' ' && rest[2] == 'w';
        const char* eol = std::strchr(p, '\n');
        p = eol ? eol + 1 : p + std::strlen(p);
        if (end <= at) continue;
        if (start > at) break;  // a hole at `at`
        if (!readable)
            return make_error(EACCES, fmt::format("the page at {:#x} cannot be read by the process (PROT_NONE or "
                                                  "write-only), so the device may not be given it",
                                                  at));
        out.writable &= writable;
        at = end;
    }
    if (at < b) return make_error(EFAULT, fmt::format("the page at {:#x} is not mapped in the process", at));
    return out;
}

}  // namespace vfioq::dma
