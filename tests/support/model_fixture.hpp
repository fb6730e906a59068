// SPDX-License-Identifier: MIT
// Test harness: the reference model served on a thread over a socket pair,
// with either the real client transport or a raw socket on the other end.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>

#include <cstring>
#include <memory>
#include <thread>

#include "model/sgq_device.hpp"
#include "model/vfio_user_server.hpp"
#include "vfio_user/message_socket.hpp"
#include "vfioq/vfio_user.hpp"

namespace vfioq::test {

// A model device and server; serve() runs on a thread for each connection handed to it.
class ServedModel {
public:
    explicit ServedModel(model::ModelConfig config = {}) {
        auto d = model::SgqDevice::create(config);
        EXPECT_TRUE(d.has_value());
        device = std::move(*d);
        server = std::make_unique<model::VfioUserServer>(*device);
    }
    ~ServedModel() { stop(); }

    // Starts serving one end of a fresh socket pair; returns the other end.
    UniqueFd connect() {
        stop_thread();
        auto pair = vfio_user::make_socket_pair();
        EXPECT_TRUE(pair.has_value());
        thread = std::thread([this, fd = pair->second.release()] { server->serve(UniqueFd(fd)); });
        return std::move(pair->first);
    }
    void stop() {
        if (server) server->stop();
        stop_thread();
    }
    // Waits until the serving thread has returned (the client was dropped).
    void join() {
        if (thread.joinable()) thread.join();
    }

    std::unique_ptr<model::SgqDevice> device;
    std::unique_ptr<model::VfioUserServer> server;
    std::thread thread;

private:
    void stop_thread() {
        if (thread.joinable()) {
            server->stop();
            thread.join();
            // Drain the stop signal so the next serve() runs.
            uint64_t v;
            while (::read(server->stop_fd(), &v, sizeof(v)) == sizeof(v)) {
            }
        }
    }
};

// Waits up to `ms` for an eventfd to be signalled; returns its counter (0 on timeout).
inline uint64_t wait_eventfd(int fd, int ms = 2000) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, ms) <= 0) return 0;
    uint64_t v = 0;
    if (::read(fd, &v, sizeof(v)) != sizeof(v)) return 0;
    return v;
}

// A message struct as the bytes of a payload.
template <typename T>
std::vector<std::byte> bytes(const T& v) {
    std::vector<std::byte> out;
    vfio_user::append_struct(out, v);
    return out;
}

// Polls `condition` until it holds or `ms` pass; the model works on threads of its own.
template <typename F>
bool eventually(F&& condition, int ms = 2000) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    while (!condition()) {
        if (std::chrono::steady_clock::now() > until) return false;
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    return true;
}

inline UniqueFd make_eventfd() { return UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)); }

// An fd-backed buffer, as DMA memory will be.
struct MemfdBuffer {
    explicit MemfdBuffer(size_t n) : size(n) {
        fd.reset(::memfd_create("vfioq-test", MFD_CLOEXEC));
        EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(n)), 0);
        data = static_cast<std::byte*>(::mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
    }
    ~MemfdBuffer() { ::munmap(data, size); }
    size_t size;
    UniqueFd fd;
    std::byte* data;
};

}  // namespace vfioq::test
