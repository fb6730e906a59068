// SPDX-License-Identifier: MIT
// A card's DMA is its access to host memory, not a CPU thread's. What orders
// it (doorbells, phase tags, the queue protocol, messages on a socket) is
// invisible to ThreadSanitizer, so the copies done on the card's behalf (the
// model's, and the vfio-user client's serving DMA_READ and DMA_WRITE) are
// hidden from it: without that, every buffer the card fills would be reported
// as a race with the host thread that reads it after the completion.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define VFIOQ_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VFIOQ_TSAN 1
#endif
#endif

#ifdef VFIOQ_TSAN
extern "C" void __tsan_ignore_thread_begin();
extern "C" void __tsan_ignore_thread_end();
#endif

namespace vfioq {

struct DeviceAccessScope {
#ifdef VFIOQ_TSAN
    DeviceAccessScope() { __tsan_ignore_thread_begin(); }
    ~DeviceAccessScope() { __tsan_ignore_thread_end(); }
#else
    DeviceAccessScope() = default;
#endif
    DeviceAccessScope(const DeviceAccessScope&) = delete;
    DeviceAccessScope& operator=(const DeviceAccessScope&) = delete;
};

}  // namespace vfioq
