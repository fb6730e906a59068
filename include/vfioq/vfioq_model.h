/* SPDX-License-Identifier: MIT */
/* The reference model from C (libvfioq-model): a card in this process, for
 * every test and demo to run with no hardware. Errors as in vfioq/vfioq.h. */
#ifndef VFIOQ_VFIOQ_MODEL_H
#define VFIOQ_VFIOQ_MODEL_H

#include "vfioq/vfioq.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct vfioq_model_options {
    uint32_t struct_size;
    bool null_data;      /* commands complete as if their data moved, and none does */
    uint32_t latency_us; /* each command completes no sooner than this after it is fetched */
    bool out_of_order;   /* completions ready together are posted in a seeded random order */
    uint32_t workers;    /* commands run on this many threads (0: on the doorbell thread) */
    uint64_t seed;
    uint64_t devmem_size; /* card memory, bytes */
    /* Completions that go wrong, as vfioq-devsim's --fault, comma-separated:
     * KIND=RATE (a chance per completion) or N:KIND (the Nth completion); KIND is status,
     * drop, duplicate, wrong-cid, stale-phase, late, cfs, hang, all-ones or disconnect.
     * NULL or "": none. */
    const char* faults;
    uint64_t fault_seed;
    uint16_t fault_status; /* the status `status` faults complete with */
} vfioq_model_options;
VFIOQ_C_API void vfioq_model_options_init(vfioq_model_options* options);

/* A device whose card is a model in this process (options may be NULL for the defaults). */
VFIOQ_C_API int vfioq_model_open(const vfioq_model_options* options, vfioq_device** device);
/* From now on vfioq_device_open("model") opens a model with the default options. */
VFIOQ_C_API void vfioq_model_enable(void);

#ifdef __cplusplus
}
#endif

#endif /* VFIOQ_VFIOQ_MODEL_H */
