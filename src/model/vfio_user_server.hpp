// SPDX-License-Identifier: MIT
// The model as a vfio-user server: one client connection at a time, every
// message validated, a malformed one answered with an error reply. A client
// that breaks the framing (or closes) is dropped, its DMA windows and eventfds
// are released and the card is reset for the next client.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <thread>

#include "sgq_device.hpp"
#include "vfio_user/message_socket.hpp"

namespace vfioq::model {

class VfioUserServer {
public:
    explicit VfioUserServer(SgqDevice& device);
    ~VfioUserServer();
    VfioUserServer(const VfioUserServer&) = delete;
    VfioUserServer& operator=(const VfioUserServer&) = delete;

    // Serves one client until it disconnects, breaks the protocol or stop() is
    // called. While serving, connections pending on `reject_listen_fd` (if >= 0)
    // are accepted and closed at once: one client at a time.
    void serve(UniqueFd connection, int reject_listen_fd = -1);

    // Makes serve() return; safe from any thread and from a signal handler.
    void stop();
    [[nodiscard]] bool stopped() const;
    [[nodiscard]] int stop_fd() const { return stop_fd_.get(); }

    // Device-initiated access to a client window that was not shared by fd:
    // a DMA_READ / DMA_WRITE round trip. Must not be called from the serving thread.
    Result<void> client_dma(bool to_host, uint64_t iova, std::span<std::byte> data);

    [[nodiscard]] uint64_t messages_rejected() const { return rejected_.load(); }

private:
    struct Reply {
        std::vector<std::byte> payload;
        std::vector<int> fds;  // borrowed, sent with the reply
    };

    // Handles one command; returns the reply payload or an error for the error reply.
    Result<Reply> handle(vfio_user::Message& msg);
    Result<Reply> handle_version(const vfio_user::Message& msg);
    Result<Reply> handle_device_info(const vfio_user::Message& msg);
    Result<Reply> handle_region_info(const vfio_user::Message& msg);
    Result<Reply> handle_irq_info(const vfio_user::Message& msg);
    Result<Reply> handle_set_irqs(vfio_user::Message& msg);
    // The ERR and REQ IRQs: one eventfd each, held for the client.
    Result<Reply> set_notifier(uint32_t index, uint32_t data_type, uint32_t action, std::span<const uint8_t> which,
                               std::vector<UniqueFd>& fds);
    Result<Reply> handle_region_read(const vfio_user::Message& msg);
    Result<Reply> handle_region_write(const vfio_user::Message& msg);
    Result<Reply> handle_dma_map(vfio_user::Message& msg);
    Result<Reply> handle_dma_unmap(const vfio_user::Message& msg);

    void route_reply(vfio_user::Message msg);
    Result<void> send_reply(const vfio_user::Header& request, const Reply& reply);
    Result<void> send_error(const vfio_user::Header& request, int code);
    Result<void> client_dma_chunk(bool to_host, uint64_t iova, std::span<std::byte> data);

    SgqDevice& device_;
    UniqueFd stop_fd_;
    std::atomic<uint64_t> rejected_{0};

    // Per connection.
    vfio_user::MessageSocket socket_;
    std::mutex send_mutex_;
    bool negotiated_ = false;
    vfio_user::Capabilities client_caps_;
    std::thread::id serving_thread_;
    std::array<UniqueFd, 2> notifiers_;  // ERR, REQ

    // One device-initiated request in flight at a time.
    std::mutex dma_request_mutex_;
    std::mutex pending_mutex_;
    std::condition_variable pending_cv_;
    bool connected_ = false;
    std::optional<uint16_t> pending_id_;
    std::optional<vfio_user::Message> pending_reply_;
    uint16_t next_id_ = 0;
};

}  // namespace vfioq::model
