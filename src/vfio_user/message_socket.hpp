// SPDX-License-Identifier: MIT
// Framed vfio-user messages over a stream socket, with file descriptors passed
// as SCM_RIGHTS. Used alike by the client transport and the model's server;
// it knows the header, not the commands.
#pragma once

#include <chrono>
#include <cstddef>
#include <span>
#include <vector>

#include "protocol.hpp"
#include "vfioq/result.hpp"
#include "vfioq/unique_fd.hpp"

namespace vfioq::vfio_user {

struct Message {
    Header header{};
    std::vector<std::byte> payload;
    std::vector<UniqueFd> fds;
    // The peer sent more fds than the receiver accepts: the extra ones were
    // discarded; the message arrived whole and deserves an error reply.
    bool fds_truncated = false;

    [[nodiscard]] bool is_reply() const { return (header.flags & kFlagTypeMask) == kFlagTypeReply; }
    [[nodiscard]] bool is_error() const { return (header.flags & kFlagError) != 0; }
    [[nodiscard]] bool wants_reply() const { return (header.flags & kFlagNoReply) == 0; }
};

class MessageSocket {
public:
    MessageSocket() = default;
    explicit MessageSocket(UniqueFd fd) : fd_(std::move(fd)) {}

    [[nodiscard]] int fd() const { return fd_.get(); }
    [[nodiscard]] bool valid() const { return fd_.valid(); }
    void close() { fd_.reset(); }
    // Shuts the socket down so that a thread blocked in receive() returns.
    void shutdown();

    // Sends header + payload as one message with the fds attached to its first byte.
    // header.msg_size is filled in here.
    Result<void> send(Header header, std::span<const std::byte> payload, std::span<const int> fds = {});

    // Receives one whole message. Waits at most `first_byte_timeout` for it to
    // begin (negative: forever) and at most `rest_timeout` for the rest once it
    // has begun, so a peer that stops mid-message cannot hang us.
    // A timeout before the first byte returns ETIMEDOUT and the socket stays
    // usable. Every other error (EOF, a socket error, a message larger than
    // `max_size` or with a size smaller than its header, a message cut off
    // mid-way) means the stream is lost and the connection must be dropped.
    // More fds than `max_fds` is not an error here: see Message::fds_truncated.
    Result<Message> receive(std::chrono::milliseconds first_byte_timeout, uint32_t max_size = kMaxMessageSize,
                            uint32_t max_fds = kMaxMsgFds,
                            std::chrono::milliseconds rest_timeout = std::chrono::seconds(5));

private:
    UniqueFd fd_;
};

// A connected pair of stream sockets (close-on-exec).
Result<std::pair<UniqueFd, UniqueFd>> make_socket_pair();

}  // namespace vfioq::vfio_user
