/* SPDX-License-Identifier: MIT */
/* vfioq from C (C11, and C++): the driver library's API behind opaque handles.
 *
 *   vfioq_device* dev;
 *   if (vfioq_device_open("vfio-user:/run/card.sock", &dev) < 0)
 *       fprintf(stderr, "%s\n", vfioq_last_error());
 *
 * Errors: a function that returns int gives 0 (or a count, or a CID) on
 * success and a negative errno on failure; vfioq_last_error() then holds the
 * message, naming the device, register, queue or buffer at fault. It is the
 * calling thread's own and stays until that thread's next failure.
 *
 * Handles: each *_open or *_alloc has its *_close or *_free, which may come in
 * any order. A handle keeps what it was made from alive: a queue pair keeps its
 * controller and device, a buffer its device, so closing a device while its
 * buffers live only gives up the caller's hold on it.
 *
 * Threading: as the C++ API. Device, DMA and controller calls may come from any
 * thread; a queue pair belongs to one thread at a time. vfioq_qp_submit,
 * vfioq_qp_submit_batch and vfioq_qp_poll allocate nothing, take no lock and
 * make no system call beyond the doorbell.
 *
 * "model" as an address needs the model library (vfioq/vfioq_model.h). */
#ifndef VFIOQ_VFIOQ_H
#define VFIOQ_VFIOQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define VFIOQ_C_API __attribute__((visibility("default")))

typedef struct vfioq_device vfioq_device;
typedef struct vfioq_controller vfioq_controller;
typedef struct vfioq_qp vfioq_qp;
typedef struct vfioq_dma_buffer vfioq_dma_buffer;
typedef struct vfioq_registration vfioq_registration;

/* The message of this thread's last failure ("" before any). */
VFIOQ_C_API const char* vfioq_last_error(void);
/* The library's version, "MAJOR.MINOR.PATCH". */
VFIOQ_C_API const char* vfioq_version(void);

/* ---- Devices ------------------------------------------------------------ */

/* Opens "model", "vfio-user:PATH" or a PCI address such as "0000:03:00.0". */
VFIOQ_C_API int vfioq_device_open(const char* address, vfioq_device** device);
VFIOQ_C_API void vfioq_device_close(vfioq_device* device);
VFIOQ_C_API const char* vfioq_device_name(const vfioq_device* device);
/* Register access to a BAR; width in bits (8, 16, 32 or 64), offset naturally aligned. */
VFIOQ_C_API int vfioq_device_read(vfioq_device* device, uint32_t bar, uint64_t offset, unsigned width, uint64_t* value);
VFIOQ_C_API int vfioq_device_write(vfioq_device* device, uint32_t bar, uint64_t offset, unsigned width, uint64_t value);
VFIOQ_C_API int vfioq_device_config_read(vfioq_device* device, uint64_t offset, unsigned width, uint64_t* value);
VFIOQ_C_API int vfioq_device_config_write(vfioq_device* device, uint64_t offset, unsigned width, uint64_t value);
/* 0 for a BAR the device does not implement. */
VFIOQ_C_API uint64_t vfioq_device_bar_size(const vfioq_device* device, uint32_t bar);
/* Removed, dead or disconnected; the reason is copied into `why` (NUL-terminated, cut to `size`). */
VFIOQ_C_API bool vfioq_device_gone(const vfioq_device* device, char* why, size_t size);

/* ---- DMA memory ----------------------------------------------------------- */

/* A buffer the device can reach, of `size` bytes. */
VFIOQ_C_API int vfioq_dma_alloc(vfioq_device* device, size_t size, vfioq_dma_buffer** buffer);
VFIOQ_C_API void vfioq_dma_free(vfioq_dma_buffer* buffer);
VFIOQ_C_API void* vfioq_dma_data(const vfioq_dma_buffer* buffer);
VFIOQ_C_API size_t vfioq_dma_size(const vfioq_dma_buffer* buffer);
VFIOQ_C_API uint64_t vfioq_dma_iova(const vfioq_dma_buffer* buffer);

/* Application memory registered for DMA (through the registration cache); the
 * registration holds it until released, and a command may use it meanwhile. */
VFIOQ_C_API int vfioq_dma_register(vfioq_device* device, const void* addr, size_t len,
                                   vfioq_registration** registration);
VFIOQ_C_API void vfioq_dma_release(vfioq_registration* registration);
/* The IOVA of a byte inside the registered memory. */
VFIOQ_C_API uint64_t vfioq_dma_registration_iova(const vfioq_registration* registration, const void* p);
/* The IOVA of [addr, addr + len) in a buffer or held registration; EFAULT if it is in
 * neither, EACCES if the device would write memory the process can only read. */
VFIOQ_C_API int vfioq_dma_translate(vfioq_device* device, const void* addr, size_t len, bool device_writes,
                                    uint64_t* iova);
/* Unmaps a cached registration nobody holds (EBUSY while one does). */
VFIOQ_C_API int vfioq_dma_unregister(vfioq_device* device, const void* addr, size_t len);

/* ---- The controller ----------------------------------------------------- */

/* Options carry their own size, so that a program built against an older header
 * still works: fill them with the *_init function first. */
typedef struct vfioq_controller_options {
    uint32_t struct_size;
    uint32_t ready_timeout_ms;  /* 0: the card's CAP.TO */
    bool nvme_use_prp;          /* NVMe: PRPs even where SGLs are supported */
    bool nvme_shadow_doorbells; /* NVMe: Doorbell Buffer Config when offered (default true) */
} vfioq_controller_options;
VFIOQ_C_API void vfioq_controller_options_init(vfioq_controller_options* options);

typedef struct vfioq_controller_info {
    char kind[8]; /* "SGQ" or "NVMe" */
    uint32_t version;
    uint32_t queue_pairs;
    uint32_t interrupt_queue_pairs;
    uint32_t max_queue_entries;
    uint64_t devmem_size;
    uint64_t max_transfer;
    uint32_t max_segments;
    uint32_t segment_alignment;
    uint32_t block_size;
    uint32_t ready_timeout_ms;
} vfioq_controller_info;

/* Brings the card up (options may be NULL for the defaults). */
VFIOQ_C_API int vfioq_controller_open(vfioq_device* device, const vfioq_controller_options* options,
                                      vfioq_controller** controller);
VFIOQ_C_API void vfioq_controller_close(vfioq_controller* controller);
VFIOQ_C_API void vfioq_controller_info_get(const vfioq_controller* controller, vfioq_controller_info* info);
/* Normal shutdown; open queue pairs are closed first. */
VFIOQ_C_API int vfioq_controller_shutdown(vfioq_controller* controller);
/* The event vector's eventfd (fatal status, queue errors); -1 if none. */
VFIOQ_C_API int vfioq_controller_event_fd(const vfioq_controller* controller);

/* ---- Queue pairs ---------------------------------------------------------- */

/* A command's fate: the card's status codes, then the driver's own verdicts. */
enum vfioq_status {
    VFIOQ_SUCCESS = 0,
    VFIOQ_INVALID_OPCODE,
    VFIOQ_INVALID_FIELD,
    VFIOQ_DEVADDR_RANGE,
    VFIOQ_LENGTH_INVALID,
    VFIOQ_SGL_INVALID,
    VFIOQ_SGL_LENGTH_MISMATCH,
    VFIOQ_DMA_FAULT,
    VFIOQ_ABORTED,
    VFIOQ_INTERNAL,
    VFIOQ_UNKNOWN_DEVICE_STATUS,
    VFIOQ_CANCELLED,
    VFIOQ_TIMEOUT,
    VFIOQ_RESET,
    VFIOQ_DEVICE_GONE,
};
/* "SUCCESS", "DMA_FAULT", ...; "?" for a value that is none of them. */
VFIOQ_C_API const char* vfioq_status_name(int status);

enum vfioq_opcode {
    VFIOQ_OP_WRITE, /* host -> card */
    VFIOQ_OP_READ,  /* card -> host */
    VFIOQ_OP_NOP,
};

typedef struct vfioq_completion {
    int status;             /* enum vfioq_status */
    uint16_t device_status; /* the card's raw status; 0 where the driver decided */
    uint16_t qid;
    uint16_t cid;
    uint32_t bytes; /* moved, as the card reports */
    void* context;  /* as given at submission */
} vfioq_completion;
/* Called on the polling thread; it may submit, but not poll. */
typedef void (*vfioq_callback)(const vfioq_completion* completion);

typedef struct vfioq_segment {
    uint64_t iova;
    uint64_t len;
} vfioq_segment;

typedef struct vfioq_request {
    int opcode;       /* enum vfioq_opcode */
    uint64_t devaddr; /* byte offset in card memory */
    const vfioq_segment* segments;
    size_t segment_count;
    vfioq_callback callback; /* may be NULL */
    void* context;
} vfioq_request;

typedef struct vfioq_qp_options {
    uint32_t struct_size;
    uint32_t depth;            /* commands outstanding at once (default 256) */
    uint32_t sq_entries;       /* 0: depth + 1 */
    uint32_t cq_entries;       /* 0: depth + 1 */
    bool interrupts;           /* MSI-X to an eventfd; vfioq_qp_wait() */
    uint16_t coalesce_entries; /* Q_COAL; 0, 0: every completion */
    uint16_t coalesce_usecs;
    uint32_t poll_batch;         /* most completions one poll reaps (default 256) */
    uint32_t sgl_pages;          /* segment array pages; 0: depth / 4, at least 16 */
    uint32_t command_timeout_ms; /* default 30000; 0: never */
} vfioq_qp_options;
VFIOQ_C_API void vfioq_qp_options_init(vfioq_qp_options* options);

typedef struct vfioq_qp_stats {
    uint64_t submitted, completed;
    uint64_t sq_doorbells, cq_doorbells, doorbell_writes_skipped;
    uint64_t queue_full;
    uint64_t device_errors, cid_out_of_range, cid_not_outstanding, wrong_sqid, sq_head_invalid;
    uint64_t error_statuses, timeouts, queue_recoveries, controller_resets;
    uint64_t interrupts;
    uint64_t memory_bytes;
} vfioq_qp_stats;

/* A queue pair on the next free queue id (options may be NULL for the defaults). */
VFIOQ_C_API int vfioq_qp_open(vfioq_controller* controller, const vfioq_qp_options* options, vfioq_qp** qp);
/* Closes the queue if it is open (every outstanding command is reported first), then frees it. */
VFIOQ_C_API void vfioq_qp_free(vfioq_qp* qp);
/* Disables the queue and reports every outstanding command; later submissions fail with EPIPE. */
VFIOQ_C_API int vfioq_qp_close(vfioq_qp* qp);
/* The command's CID, or: -EAGAIN when the queue is full (poll, then try again; nothing was
 * queued), -EINVAL for a request the card's limits refuse, -EPIPE after close, -ENODEV once the
 * device is gone, -EIO when recovery could not bring the queue back. */
VFIOQ_C_API int vfioq_qp_submit(vfioq_qp* qp, const vfioq_request* request);
/* Submits in order until one is refused or the queue is full, with one doorbell per up to 64;
 * returns how many went. An error only when the first is refused for other than back-pressure. */
VFIOQ_C_API int vfioq_qp_submit_batch(vfioq_qp* qp, const vfioq_request* requests, size_t count);
/* A 64-byte submission entry as it is, but for its CID, which the queue pair fills in. */
VFIOQ_C_API int vfioq_qp_submit_raw(vfioq_qp* qp, const void* entry, vfioq_callback callback, void* context);
/* Reaps up to `max` completions (0: the poll batch) and calls their callbacks; never blocks.
 * Recovery (timeouts, resets, a device gone) runs here. Returns how many. */
VFIOQ_C_API int vfioq_qp_poll(vfioq_qp* qp, uint32_t max);
/* Interrupt mode: waits up to `timeout_ms` for the queue's vector, then polls (-ENOTSUP when polled). */
VFIOQ_C_API int vfioq_qp_wait(vfioq_qp* qp, uint32_t timeout_ms, uint32_t max);
/* Interrupt mode: the queue's eventfd for an event loop (read it, then poll); -1 when polled. */
VFIOQ_C_API int vfioq_qp_event_fd(const vfioq_qp* qp);
VFIOQ_C_API uint16_t vfioq_qp_id(const vfioq_qp* qp);
VFIOQ_C_API uint32_t vfioq_qp_capacity(const vfioq_qp* qp);
VFIOQ_C_API uint32_t vfioq_qp_outstanding(const vfioq_qp* qp);
VFIOQ_C_API void vfioq_qp_stats_get(const vfioq_qp* qp, vfioq_qp_stats* stats);

#ifdef __cplusplus
}
#endif

#endif /* VFIOQ_VFIOQ_H */
