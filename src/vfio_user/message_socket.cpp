// SPDX-License-Identifier: MIT
#include "message_socket.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <cstring>
#include <string>

namespace vfioq::vfio_user {
namespace {

using Clock = std::chrono::steady_clock;

std::string errno_text(int err) { return std::strerror(err); }

// Waits until fd is readable; timeout < 0 waits forever. Retries on EINTR.
Result<void> wait_readable(int fd, std::chrono::milliseconds timeout) {
    auto deadline = Clock::now() + timeout;
    for (;;) {
        int ms = -1;
        if (timeout.count() >= 0) {
            auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
            ms = static_cast<int>(std::max<int64_t>(0, left.count()));
        }
        pollfd p{fd, POLLIN, 0};
        int n = ::poll(&p, 1, ms);
        if (n > 0) return {};
        if (n == 0) return make_error(ETIMEDOUT, "timed out waiting for a message");
        if (errno != EINTR) return make_error(errno, "poll failed: " + errno_text(errno));
    }
}

}  // namespace

void MessageSocket::shutdown() {
    if (fd_.valid()) ::shutdown(fd_.get(), SHUT_RDWR);
}

Result<void> MessageSocket::send(Header header, std::span<const std::byte> payload, std::span<const int> fds) {
    if (!fd_.valid()) return make_error(ENOTCONN, "socket is closed");
    if (payload.size() > kMaxMessageSize - sizeof(Header))
        return make_error(EMSGSIZE, "message of " + std::to_string(payload.size()) + " bytes is too large");
    if (fds.size() > 253) return make_error(EINVAL, "too many fds for one message");
    header.msg_size = static_cast<uint32_t>(sizeof(Header) + payload.size());

    iovec iov[2] = {{&header, sizeof(header)}, {const_cast<std::byte*>(payload.data()), payload.size()}};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = payload.empty() ? 1 : 2;
    if (!fds.empty()) {
        msg.msg_control = control;
        msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
        std::memset(control, 0, msg.msg_controllen);
        cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
        cmsg->cmsg_level = SOL_SOCKET;
        cmsg->cmsg_type = SCM_RIGHTS;
        cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
        std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
    }

    size_t total = sizeof(header) + payload.size();
    size_t sent = 0;
    while (sent < total) {
        ssize_t n = ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            int err = errno;
            return make_error(err == EPIPE ? ECONNRESET : err, "send failed: " + errno_text(err));
        }
        sent += static_cast<size_t>(n);
        // fds go with the first bytes only; advance the iovecs past what was sent.
        msg.msg_control = nullptr;
        msg.msg_controllen = 0;
        size_t skip = static_cast<size_t>(n);
        while (msg.msg_iovlen > 0 && skip >= msg.msg_iov[0].iov_len) {
            skip -= msg.msg_iov[0].iov_len;
            ++msg.msg_iov;
            --msg.msg_iovlen;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov[0].iov_base = static_cast<char*>(msg.msg_iov[0].iov_base) + skip;
            msg.msg_iov[0].iov_len -= skip;
        }
    }
    return {};
}

Result<Message> MessageSocket::receive(std::chrono::milliseconds first_byte_timeout, uint32_t max_size,
                                       uint32_t max_fds, std::chrono::milliseconds rest_timeout) {
    if (!fd_.valid()) return make_error(ENOTCONN, "socket is closed");
    if (auto r = wait_readable(fd_.get(), first_byte_timeout); !r) return r.error();

    Message message;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxMsgFds)];
    max_fds = std::min(max_fds, kMaxMsgFds);

    // Reads exactly `len` bytes into `dst`, collecting any fds that come along.
    auto read_exact = [&](std::byte* dst, size_t len, bool first) -> Result<void> {
        size_t got = 0;
        while (got < len) {
            if (!(first && got == 0)) {
                if (auto r = wait_readable(fd_.get(), rest_timeout); !r)
                    return make_error(ECONNRESET, "peer stopped in the middle of a message (" + std::to_string(got) +
                                                      " of " + std::to_string(len) + " bytes)");
            }
            iovec iov{dst + got, len - got};
            msghdr msg{};
            msg.msg_iov = &iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control;
            msg.msg_controllen = max_fds == 0 ? 0 : CMSG_SPACE(sizeof(int) * max_fds);
            if (max_fds == 0) msg.msg_control = nullptr;
            ssize_t n = ::recvmsg(fd_.get(), &msg, MSG_CMSG_CLOEXEC);
            if (n < 0) {
                if (errno == EINTR || errno == EAGAIN) continue;
                int err = errno;
                return make_error(ECONNRESET, "receive failed: " + errno_text(err));
            }
            if (n == 0)
                return make_error(ECONNRESET, got == 0 && first ? "peer closed the connection"
                                                                : "peer closed the connection mid-message");
            if (msg.msg_flags & MSG_CTRUNC) message.fds_truncated = true;
            for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
                size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (size_t i = 0; i < count; ++i) {
                    int fd;
                    std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    message.fds.emplace_back(fd);
                }
            }
            got += static_cast<size_t>(n);
        }
        return {};
    };

    if (auto r = read_exact(reinterpret_cast<std::byte*>(&message.header), sizeof(Header), true); !r) return r.error();
    const uint32_t size = message.header.msg_size;
    if (size < sizeof(Header))
        return make_error(ECONNRESET, "message header claims a size of " + std::to_string(size) +
                                          " bytes, less than the header itself");
    if (size > max_size)
        return make_error(ECONNRESET, std::string(command_name(message.header.command)) + " message of " +
                                          std::to_string(size) + " bytes exceeds the limit of " +
                                          std::to_string(max_size));
    message.payload.resize(size - sizeof(Header));
    if (!message.payload.empty())
        if (auto r = read_exact(message.payload.data(), message.payload.size(), false); !r) return r.error();
    if (message.fds.size() > max_fds) {
        message.fds.resize(max_fds);
        message.fds_truncated = true;
    }
    return message;
}

Result<std::pair<UniqueFd, UniqueFd>> make_socket_pair() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return make_error(errno, std::string("socketpair failed: ") + std::strerror(errno));
    return std::pair{UniqueFd(sv[0]), UniqueFd(sv[1])};
}

}  // namespace vfioq::vfio_user
