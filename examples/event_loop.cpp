// SPDX-License-Identifier: MIT
// event_loop: interrupt-driven I/O in an application's own event loop. The
// queue pair's MSI-X eventfd sits in an epoll set beside the application's
// other sources (here a timerfd that reports progress); when it is readable
// the loop reads it, reaps completions, and submits more work.
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

#include <vfioq/model.hpp>
#include <vfioq/vfioq.hpp>

namespace {

constexpr uint32_t kInFlight = 32;
constexpr uint32_t kTotal = 2000;
constexpr size_t kBlock = 4096;

struct Loop;

// One command slot; its address is the command's completion context.
struct Slot {
    Loop* loop;
    uint32_t index;
    vfioq::DmaSegment segment;
};

struct Loop {
    vfioq::QueuePair* qp = nullptr;
    uint32_t submitted = 0, completed = 0, failed = 0;
    std::vector<Slot> slots;

    void submit(Slot& slot) {
        if (submitted == kTotal) return;
        const auto devaddr = uint64_t{submitted % 1024} * kBlock;
        auto r = qp->submit({vfioq::Opcode::kWrite, devaddr, {&slot.segment, 1}, on_complete, &slot});
        if (!r) {
            std::fprintf(stderr, "event_loop: %s\n", r.error().message.c_str());
            std::exit(1);
        }
        ++submitted;
    }

    static void on_complete(const vfioq::Completion& c) {
        auto* slot = static_cast<Slot*>(c.context);
        Loop& loop = *slot->loop;
        ++loop.completed;
        if (c.status != vfioq::IoStatus::kSuccess) {
            std::fprintf(stderr, "event_loop: command %u failed: %s\n", slot->index, vfioq::io_status_name(c.status));
            ++loop.failed;
        }
        loop.submit(*slot);  // keep the pipeline full
    }
};

template <typename T>
T must(vfioq::Result<T> r) {
    if (!r) {
        std::fprintf(stderr, "event_loop: %s\n", r.error().message.c_str());
        std::exit(1);
    }
    return std::move(*r);
}

}  // namespace

int main(int argc, char** argv) {
    vfioq::model::enable_model_address();  // "model" is served by libvfioq-model
    auto device = must(vfioq::Device::open(argc > 1 ? argv[1] : "model"));
    auto controller = must(vfioq::Controller::open(*device));
    auto qp = must(controller->create_queue_pair({.depth = kInFlight, .interrupts = true}));
    auto buffer = must(device->dma().allocate(kInFlight * kBlock));

    Loop loop;
    loop.qp = qp.get();
    for (uint32_t i = 0; i < kInFlight; ++i) loop.slots.push_back({&loop, i, buffer.segment(i * kBlock, kBlock)});

    const int ep = ::epoll_create1(EPOLL_CLOEXEC);
    const int timer = ::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    const itimerspec every_100ms{{0, 100000000}, {0, 100000000}};
    ::timerfd_settime(timer, 0, &every_100ms, nullptr);
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = qp->event_fd();
    ::epoll_ctl(ep, EPOLL_CTL_ADD, qp->event_fd(), &ev);
    ev.data.fd = timer;
    ::epoll_ctl(ep, EPOLL_CTL_ADD, timer, &ev);

    for (auto& slot : loop.slots) loop.submit(slot);
    uint64_t wakeups = 0;
    while (loop.completed < kTotal) {
        epoll_event events[4];
        const int n = ::epoll_wait(ep, events, 4, 5000);
        if (n == 0) {
            std::fprintf(stderr, "event_loop: no interrupt for 5 s with %u commands outstanding\n", qp->outstanding());
            return 1;
        }
        for (int i = 0; i < n; ++i) {
            uint64_t count;
            if (::read(events[i].data.fd, &count, sizeof(count)) < 0) continue;
            if (events[i].data.fd == timer)
                std::printf("event_loop: %u of %u completed\n", loop.completed, kTotal);
            else {
                ++wakeups;
                qp->poll();  // completions call on_complete, which submits more
            }
        }
    }
    std::printf("event_loop: %u writes completed through MSI-X interrupts (%llu wake-ups), %u failed\n",
                loop.completed, static_cast<unsigned long long>(wakeups), loop.failed);
    ::close(timer);
    ::close(ep);
    return loop.failed == 0 ? 0 : 1;
}
