// SPDX-License-Identifier: MIT
// The C API (vfioq/vfioq.h) over the C++ one. Each handle shares what it was made
// from, so that C may free them in any order; no C++ type and no exception crosses.
#include "vfioq/c_api.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "vfioq/controller.hpp"
#include "vfioq/device.hpp"
#include "vfioq/dma.hpp"
#include "vfioq/queue_pair.hpp"
#include "vfioq/vfioq.h"

using vfioq::c_api::fail;

struct vfioq_device {
    std::shared_ptr<vfioq::Device> device;
};

struct vfioq_controller {
    std::shared_ptr<vfioq::Device> device;
    std::shared_ptr<vfioq::Controller> controller;
};

struct vfioq_dma_buffer {
    std::shared_ptr<vfioq::Device> device;
    vfioq::DmaBuffer buffer;
};

struct vfioq_registration {
    std::shared_ptr<vfioq::Device> device;
    vfioq::Registration registration;
};

// A C callback and its context for each command in flight, from a pool as deep as the queue:
// the C++ queue pair carries one pointer of context, and the C caller's pair must ride in it
// without an allocation per command.
struct vfioq_qp {
    struct Slot {
        vfioq_callback callback;
        void* context;
        vfioq_qp* owner;
        uint32_t next_free;
    };
    static constexpr uint32_t kNoSlot = ~0u;
    static constexpr size_t kBatch = 64;  // requests converted, and submitted with one doorbell, at a time

    std::shared_ptr<vfioq::Device> device;
    std::shared_ptr<vfioq::Controller> controller;
    std::vector<Slot> slots;
    uint32_t free_slot = kNoSlot;
    std::vector<vfioq::IoRequest> requests;   // a batch's, converted
    std::vector<vfioq::DmaSegment> segments;  // their segments
    std::unique_ptr<vfioq::QueuePair> qp;     // last: goes first, while the slots still are

    Slot* acquire() {
        if (free_slot == kNoSlot) return nullptr;
        Slot* s = &slots[free_slot];
        free_slot = s->next_free;
        return s;
    }
    void release(Slot* s) {
        s->next_free = static_cast<uint32_t>(s - slots.data());
        std::swap(s->next_free, free_slot);
    }
};

namespace vfioq::c_api {
namespace {

thread_local std::string t_message;
thread_local const char* t_reason = nullptr;  // static text, when the error carried no message

int invalid(const char* reason) { return fail(static_error(EINVAL, reason)); }

void deliver(const Completion& c) {
    auto* slot = static_cast<vfioq_qp::Slot*>(c.context);
    const vfioq_completion out{static_cast<int>(c.status), c.device_status, c.qid, c.cid, c.bytes, slot->context};
    const vfioq_callback callback = slot->callback;
    slot->owner->release(slot);  // first: the callback may submit again
    callback(&out);
}

// `r` into `qp->requests[i]`, its segments at `qp->segments[first_segment...]`; EINVAL names the fault.
int convert(vfioq_qp* qp, const vfioq_request& r, size_t i, size_t first_segment) {
    if (r.opcode < VFIOQ_OP_WRITE || r.opcode > VFIOQ_OP_NOP)
        return fail(make_error(EINVAL, "queue " + std::to_string(qp->qp->id()) + ": opcode " +
                                           std::to_string(r.opcode) + " is none of VFIOQ_OP_WRITE, _READ, _NOP"));
    if (r.segment_count > 0 && !r.segments) return invalid("a request names segments but gives no array");
    for (size_t k = 0; k < r.segment_count; ++k)
        qp->segments[first_segment + k] = {r.segments[k].iova, r.segments[k].len};
    IoRequest& out = qp->requests[i];
    out.op = r.opcode == VFIOQ_OP_WRITE ? Opcode::kWrite : r.opcode == VFIOQ_OP_READ ? Opcode::kRead : Opcode::kNop;
    out.devaddr = r.devaddr;
    out.segments = {qp->segments.data() + first_segment, r.segment_count};
    out.callback = nullptr;
    out.context = nullptr;
    if (r.callback) {
        vfioq_qp::Slot* slot = qp->acquire();
        if (!slot) return fail(static_error(EAGAIN, "queue pair full"));
        slot->callback = r.callback;
        slot->context = r.context;
        out.callback = deliver;
        out.context = slot;
    }
    return 0;
}

void release_slots(vfioq_qp* qp, size_t from, size_t to) {
    for (size_t i = from; i < to; ++i)
        if (qp->requests[i].context) qp->release(static_cast<vfioq_qp::Slot*>(qp->requests[i].context));
}

int too_many_segments(const vfioq_qp* qp, size_t count) {
    return fail(make_error(EINVAL, "queue " + std::to_string(qp->qp->id()) + ": a request of " + std::to_string(count) +
                                       " segments; the card takes at most " + std::to_string(qp->segments.size())));
}

}  // namespace

vfioq_device* wrap(std::unique_ptr<Device> device) {
    return new vfioq_device{std::shared_ptr<Device>(std::move(device))};
}

int fail(const Error& error) {
    if (error.message.empty()) {
        t_reason = error.reason ? error.reason : "unknown error";
    } else {
        try {
            t_message = error.message;
            t_reason = nullptr;
        } catch (...) {
            t_reason = "out of memory while recording an error";
        }
    }
    return error.code > 0 ? -error.code : -EIO;
}

}  // namespace vfioq::c_api

using vfioq::c_api::guarded;
using vfioq::c_api::invalid;
using vfioq::c_api::options_from;

extern "C" {

const char* vfioq_last_error(void) {
    using namespace vfioq::c_api;
    return t_reason ? t_reason : t_message.c_str();
}

const char* vfioq_version(void) { return VFIOQ_VERSION_STRING; }

// ---- Devices

int vfioq_device_open(const char* address, vfioq_device** device) {
    if (!address || !device) return invalid("vfioq_device_open: no address or no handle to fill");
    return guarded([&] {
        auto d = vfioq::Device::open(address);
        if (!d) return fail(d.error());
        *device = vfioq::c_api::wrap(std::move(*d));
        return 0;
    });
}

void vfioq_device_close(vfioq_device* device) { delete device; }

const char* vfioq_device_name(const vfioq_device* device) { return device ? device->device->name().c_str() : ""; }

int vfioq_device_read(vfioq_device* device, uint32_t bar, uint64_t offset, unsigned width, uint64_t* value) {
    if (!device || !value) return invalid("vfioq_device_read: no device or no value to fill");
    return guarded([&] {
        auto v = device->device->read(bar, offset, width);
        if (!v) return fail(v.error());
        *value = *v;
        return 0;
    });
}

int vfioq_device_write(vfioq_device* device, uint32_t bar, uint64_t offset, unsigned width, uint64_t value) {
    if (!device) return invalid("vfioq_device_write: no device");
    return guarded([&] {
        auto r = device->device->write(bar, offset, width, value);
        return r ? 0 : fail(r.error());
    });
}

int vfioq_device_config_read(vfioq_device* device, uint64_t offset, unsigned width, uint64_t* value) {
    if (!device || !value) return invalid("vfioq_device_config_read: no device or no value to fill");
    return guarded([&] {
        auto v = device->device->config_read(offset, width);
        if (!v) return fail(v.error());
        *value = *v;
        return 0;
    });
}

int vfioq_device_config_write(vfioq_device* device, uint64_t offset, unsigned width, uint64_t value) {
    if (!device) return invalid("vfioq_device_config_write: no device");
    return guarded([&] {
        auto r = device->device->config_write(offset, width, value);
        return r ? 0 : fail(r.error());
    });
}

uint64_t vfioq_device_bar_size(const vfioq_device* device, uint32_t bar) {
    return device ? device->device->bar_size(bar) : 0;
}

bool vfioq_device_gone(const vfioq_device* device, char* why, size_t size) {
    if (!device || !device->device->gone()) {
        if (why && size > 0) why[0] = '\0';
        return false;
    }
    if (why && size > 0) {
        try {
            const std::string reason = device->device->gone_reason();
            const size_t n = std::min(size - 1, reason.size());
            std::memcpy(why, reason.data(), n);
            why[n] = '\0';
        } catch (...) {
            why[0] = '\0';
        }
    }
    return true;
}

// ---- DMA memory

int vfioq_dma_alloc(vfioq_device* device, size_t size, vfioq_dma_buffer** buffer) {
    if (!device || !buffer) return invalid("vfioq_dma_alloc: no device or no handle to fill");
    return guarded([&] {
        auto b = device->device->dma().allocate(size);
        if (!b) return fail(b.error());
        *buffer = new vfioq_dma_buffer{device->device, std::move(*b)};
        return 0;
    });
}

void vfioq_dma_free(vfioq_dma_buffer* buffer) { delete buffer; }
void* vfioq_dma_data(const vfioq_dma_buffer* buffer) { return buffer ? buffer->buffer.data() : nullptr; }
size_t vfioq_dma_size(const vfioq_dma_buffer* buffer) { return buffer ? buffer->buffer.size() : 0; }
uint64_t vfioq_dma_iova(const vfioq_dma_buffer* buffer) { return buffer ? buffer->buffer.iova() : 0; }

int vfioq_dma_register(vfioq_device* device, const void* addr, size_t len, vfioq_registration** registration) {
    if (!device || !registration) return invalid("vfioq_dma_register: no device or no handle to fill");
    return guarded([&] {
        auto r = device->device->dma().register_memory(addr, len);
        if (!r) return fail(r.error());
        *registration = new vfioq_registration{device->device, std::move(*r)};
        return 0;
    });
}

void vfioq_dma_release(vfioq_registration* registration) { delete registration; }

uint64_t vfioq_dma_registration_iova(const vfioq_registration* registration, const void* p) {
    return registration ? registration->registration.iova_of(p) : 0;
}

int vfioq_dma_translate(vfioq_device* device, const void* addr, size_t len, bool device_writes, uint64_t* iova) {
    if (!device || !iova) return invalid("vfioq_dma_translate: no device or no IOVA to fill");
    return guarded([&] {
        auto r = device->device->dma().translate(
            addr, len, device_writes ? vfioq::DeviceAccess::kWrites : vfioq::DeviceAccess::kReads);
        if (!r) return fail(r.error());
        *iova = *r;
        return 0;
    });
}

int vfioq_dma_unregister(vfioq_device* device, const void* addr, size_t len) {
    if (!device) return invalid("vfioq_dma_unregister: no device");
    return guarded([&] {
        auto r = device->device->dma().unregister(addr, len);
        return r ? 0 : fail(r.error());
    });
}

// ---- The controller

void vfioq_controller_options_init(vfioq_controller_options* options) {
    if (!options) return;
    const vfioq::ControllerOptions defaults;
    *options = {};
    options->struct_size = sizeof(*options);
    options->ready_timeout_ms = static_cast<uint32_t>(defaults.ready_timeout.count());
    options->nvme_use_prp = defaults.nvme_use_prp;
    options->nvme_shadow_doorbells = defaults.nvme_shadow_doorbells;
}

int vfioq_controller_open(vfioq_device* device, const vfioq_controller_options* options,
                          vfioq_controller** controller) {
    if (!device || !controller) return invalid("vfioq_controller_open: no device or no handle to fill");
    vfioq_controller_options o;
    if (int r = options_from(options, vfioq_controller_options_init,
                             "vfioq_controller_open: options not set up by vfioq_controller_options_init()", o);
        r < 0)
        return r;
    return guarded([&] {
        vfioq::ControllerOptions copts;
        copts.ready_timeout = std::chrono::milliseconds(o.ready_timeout_ms);
        copts.nvme_use_prp = o.nvme_use_prp;
        copts.nvme_shadow_doorbells = o.nvme_shadow_doorbells;
        auto c = vfioq::Controller::open(*device->device, copts);
        if (!c) return fail(c.error());
        *controller = new vfioq_controller{device->device, std::shared_ptr<vfioq::Controller>(std::move(*c))};
        return 0;
    });
}

void vfioq_controller_close(vfioq_controller* controller) { delete controller; }

void vfioq_controller_info_get(const vfioq_controller* controller, vfioq_controller_info* info) {
    if (!info) return;
    *info = {};
    if (!controller) return;
    const vfioq::ControllerInfo& i = controller->controller->info();
    std::strncpy(info->kind, i.kind.c_str(), sizeof(info->kind) - 1);
    info->version = i.version;
    info->queue_pairs = i.queue_pairs;
    info->interrupt_queue_pairs = i.interrupt_queue_pairs;
    info->max_queue_entries = i.max_queue_entries;
    info->devmem_size = i.devmem_size;
    info->max_transfer = i.max_transfer;
    info->max_segments = i.max_segments;
    info->segment_alignment = i.segment_alignment;
    info->block_size = i.block_size;
    info->ready_timeout_ms = static_cast<uint32_t>(i.ready_timeout.count());
}

int vfioq_controller_shutdown(vfioq_controller* controller) {
    if (!controller) return invalid("vfioq_controller_shutdown: no controller");
    return guarded([&] {
        auto r = controller->controller->shutdown();
        return r ? 0 : fail(r.error());
    });
}

int vfioq_controller_event_fd(const vfioq_controller* controller) {
    return controller ? controller->controller->event_fd() : -1;
}

// ---- Queue pairs

const char* vfioq_status_name(int status) {
    if (status < VFIOQ_SUCCESS || status > VFIOQ_DEVICE_GONE) return "?";
    return vfioq::io_status_name(static_cast<vfioq::IoStatus>(status));
}

void vfioq_qp_options_init(vfioq_qp_options* options) {
    if (!options) return;
    const vfioq::QueuePairOptions defaults;
    *options = {};
    options->struct_size = sizeof(*options);
    options->depth = defaults.depth;
    options->sq_entries = defaults.sq_entries;
    options->cq_entries = defaults.cq_entries;
    options->interrupts = defaults.interrupts;
    options->coalesce_entries = defaults.coalesce_entries;
    options->coalesce_usecs = defaults.coalesce_usecs;
    options->poll_batch = defaults.poll_batch;
    options->sgl_pages = defaults.sgl_pages;
    options->command_timeout_ms = static_cast<uint32_t>(defaults.command_timeout.count());
}

int vfioq_qp_open(vfioq_controller* controller, const vfioq_qp_options* options, vfioq_qp** qp) {
    if (!controller || !qp) return invalid("vfioq_qp_open: no controller or no handle to fill");
    vfioq_qp_options o;
    if (int r = options_from(options, vfioq_qp_options_init,
                             "vfioq_qp_open: options not set up by vfioq_qp_options_init()", o);
        r < 0)
        return r;
    return guarded([&] {
        vfioq::QueuePairOptions qo;
        qo.depth = o.depth;
        qo.sq_entries = o.sq_entries;
        qo.cq_entries = o.cq_entries;
        qo.interrupts = o.interrupts;
        qo.coalesce_entries = o.coalesce_entries;
        qo.coalesce_usecs = o.coalesce_usecs;
        qo.poll_batch = o.poll_batch;
        qo.sgl_pages = o.sgl_pages;
        qo.command_timeout = std::chrono::milliseconds(o.command_timeout_ms);
        auto q = controller->controller->create_queue_pair(qo);
        if (!q) return fail(q.error());
        auto h = std::make_unique<vfioq_qp>();
        h->device = controller->device;
        h->controller = controller->controller;
        h->slots.resize((*q)->capacity());
        for (uint32_t i = 0; i < h->slots.size(); ++i)
            h->slots[i] = {nullptr, nullptr, h.get(), i + 1 < h->slots.size() ? i + 1 : vfioq_qp::kNoSlot};
        h->free_slot = h->slots.empty() ? vfioq_qp::kNoSlot : 0;
        h->requests.resize(vfioq_qp::kBatch);
        h->segments.resize(std::max<uint32_t>(controller->controller->info().max_segments, 1));
        h->qp = std::move(*q);
        *qp = h.release();
        return 0;
    });
}

int vfioq_qp_close(vfioq_qp* qp) {
    if (!qp) return invalid("vfioq_qp_close: no queue pair");
    return guarded([&] {
        auto r = qp->qp->close();
        return r ? 0 : fail(r.error());
    });
}

void vfioq_qp_free(vfioq_qp* qp) {
    if (!qp) return;
    // Closed here, not in the destructor: the commands it reports still find their slots.
    if (!qp->qp->closed()) (void)vfioq_qp_close(qp);
    delete qp;
}

int vfioq_qp_submit(vfioq_qp* qp, const vfioq_request* request) {
    if (!qp || !request) [[unlikely]]
        return invalid("vfioq_qp_submit: no queue pair or no request");
    if (request->segment_count > qp->segments.size()) [[unlikely]]
        return vfioq::c_api::too_many_segments(qp, request->segment_count);
    if (int r = vfioq::c_api::convert(qp, *request, 0, 0); r < 0) [[unlikely]]
        return r;
    auto cid = qp->qp->submit(qp->requests[0]);
    if (!cid) [[unlikely]] {
        vfioq::c_api::release_slots(qp, 0, 1);
        return fail(cid.error());
    }
    return *cid;
}

int vfioq_qp_submit_batch(vfioq_qp* qp, const vfioq_request* requests, size_t count) {
    if (!qp || (count > 0 && !requests)) [[unlikely]]
        return invalid("vfioq_qp_submit_batch: no queue pair or no requests");
    size_t done = 0;
    while (done < count) {
        // As many as fit the scratch arrays, converted; the first that does not fit ends the chunk.
        size_t n = 0, used = 0;
        int refused = 0;
        while (done + n < count && n < vfioq_qp::kBatch) {
            const vfioq_request& r = requests[done + n];
            if (r.segment_count > qp->segments.size()) {
                refused = vfioq::c_api::too_many_segments(qp, r.segment_count);
                break;
            }
            if (used + r.segment_count > qp->segments.size()) break;
            if (int e = vfioq::c_api::convert(qp, r, n, used); e < 0) {
                refused = e;
                break;
            }
            used += r.segment_count;
            ++n;
        }
        if (n == 0) return done > 0 || refused == -EAGAIN ? static_cast<int>(done) : refused;
        auto sent = qp->qp->submit_batch({qp->requests.data(), n});
        if (!sent) {
            vfioq::c_api::release_slots(qp, 0, n);
            return done > 0 ? static_cast<int>(done) : fail(sent.error());
        }
        vfioq::c_api::release_slots(qp, *sent, n);
        done += *sent;
        if (*sent < n || refused != 0) break;
    }
    return static_cast<int>(done);
}

int vfioq_qp_submit_raw(vfioq_qp* qp, const void* entry, vfioq_callback callback, void* context) {
    if (!qp || !entry) return invalid("vfioq_qp_submit_raw: no queue pair or no entry");
    vfioq_qp::Slot* slot = nullptr;
    if (callback) {
        slot = qp->acquire();
        if (!slot) return fail(vfioq::static_error(EAGAIN, "queue pair full"));
        slot->callback = callback;
        slot->context = context;
    }
    auto cid =
        qp->qp->submit_raw({static_cast<const std::byte*>(entry), 64}, slot ? vfioq::c_api::deliver : nullptr, slot);
    if (!cid) {
        if (slot) qp->release(slot);
        return fail(cid.error());
    }
    return *cid;
}

int vfioq_qp_poll(vfioq_qp* qp, uint32_t max) { return qp ? static_cast<int>(qp->qp->poll(max)) : 0; }

int vfioq_qp_wait(vfioq_qp* qp, uint32_t timeout_ms, uint32_t max) {
    if (!qp) return invalid("vfioq_qp_wait: no queue pair");
    auto r = qp->qp->wait(std::chrono::milliseconds(timeout_ms), max);
    return r ? static_cast<int>(*r) : fail(r.error());
}

int vfioq_qp_event_fd(const vfioq_qp* qp) { return qp ? qp->qp->event_fd() : -1; }
uint16_t vfioq_qp_id(const vfioq_qp* qp) { return qp ? qp->qp->id() : 0; }
uint32_t vfioq_qp_capacity(const vfioq_qp* qp) { return qp ? qp->qp->capacity() : 0; }
uint32_t vfioq_qp_outstanding(const vfioq_qp* qp) { return qp ? qp->qp->outstanding() : 0; }

void vfioq_qp_stats_get(const vfioq_qp* qp, vfioq_qp_stats* stats) {
    if (!stats) return;
    *stats = {};
    if (!qp) return;
    const vfioq::QueuePairStats s = qp->qp->stats();
    *stats = {s.submitted,       s.completed,      s.sq_doorbells,     s.cq_doorbells,        s.doorbell_writes_skipped,
              s.queue_full,      s.device_errors,  s.cid_out_of_range, s.cid_not_outstanding, s.wrong_sqid,
              s.sq_head_invalid, s.error_statuses, s.timeouts,         s.queue_recoveries,    s.controller_resets,
              s.interrupts,      s.memory_bytes};
}

}  // extern "C"
