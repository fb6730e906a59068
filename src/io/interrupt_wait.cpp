// SPDX-License-Identifier: MIT
#include "interrupt_wait.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace vfioq::io {

InterruptWait::InterruptWait(int event_fd) : event_fd_(event_fd) {
    if (event_fd_ >= 0 && ::io_uring_queue_init(4, &ring_, 0) == 0) ready_ = true;
}

InterruptWait::~InterruptWait() {
    if (ready_) ::io_uring_queue_exit(&ring_);
}

Result<InterruptWait::Outcome> InterruptWait::wait(std::chrono::nanoseconds slice) {
    if (!ready_) return make_error(ENOSYS, "io_uring is not available to wait on the interrupt eventfd");
    if (!read_armed_) {
        io_uring_sqe* sqe = ::io_uring_get_sqe(&ring_);
        ::io_uring_prep_read(sqe, event_fd_, &event_count_, sizeof(event_count_), 0);
        if (int rc = ::io_uring_submit(&ring_); rc < 0)
            return make_error(-rc, fmt::format("io_uring submit failed: {}", std::strerror(-rc)));
        read_armed_ = true;
    }
    __kernel_timespec ts{};
    ts.tv_sec = slice.count() / 1000000000;
    ts.tv_nsec = slice.count() % 1000000000;
    io_uring_cqe* cqe = nullptr;
    const int rc = ::io_uring_wait_cqe_timeout(&ring_, &cqe, &ts);
    if (rc == -ETIME) return Outcome::kSliceOver;
    if (rc < 0) return make_error(-rc, fmt::format("waiting for the interrupt failed: {}", std::strerror(-rc)));
    const int res = cqe->res;
    ::io_uring_cqe_seen(&ring_, cqe);
    read_armed_ = false;
    if (res < 0 && res != -EAGAIN)
        return make_error(-res, fmt::format("reading the interrupt eventfd failed: {}", std::strerror(-res)));
    if (res > 0) ++interrupts_;
    return Outcome::kInterrupt;
}

}  // namespace vfioq::io
