/* SPDX-License-Identifier: MIT */
/* The C API from C, against the model: registers, DMA buffers and registered
 * memory, a data pattern through a queue pair at several depths in batches,
 * the card's error status, refused submissions with their errno and message,
 * back-pressure, an injected fault, a raw entry, and handles freed in any order. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vfioq/vfioq.h"
#include "vfioq/vfioq_model.h"

/* From the contract (docs/device-interface.md, section 2). */
enum { kRegId = 0x000, kRegScratch = 0x020 };
#define kIdValue 0x44514753u /* "SGQD" */

static int passed, failed;

#define CHECK(cond, ...)                                                \
    do {                                                                \
        if (cond) {                                                     \
            ++passed;                                                   \
        } else {                                                        \
            ++failed;                                                   \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);        \
            fprintf(stderr, __VA_ARGS__);                               \
            fprintf(stderr, " (last error: %s)\n", vfioq_last_error()); \
        }                                                               \
    } while (0)

#define MUST(call)                                                                                                  \
    do {                                                                                                            \
        int must_rc_ = (call);                                                                                      \
        if (must_rc_ < 0) {                                                                                         \
            fprintf(stderr, "FATAL %s:%d: %s = %d: %s\n", __FILE__, __LINE__, #call, must_rc_, vfioq_last_error()); \
            exit(1);                                                                                                \
        }                                                                                                           \
    } while (0)

/* Each command's completion, kept where its context points. */
typedef struct {
    int status;
    int reported;
    uint32_t bytes;
} outcome;

static void record(const vfioq_completion* c) {
    outcome* o = (outcome*)c->context;
    o->status = c->status;
    o->bytes = c->bytes;
    ++o->reported;
}

/* Polls until `n` outcomes are reported (or a generous number of polls pass). */
static int drain(vfioq_qp* qp, outcome* o, size_t n) {
    for (long spins = 0; spins < 200000000L; ++spins) {
        size_t done = 0;
        for (size_t i = 0; i < n; ++i) done += o[i].reported != 0;
        if (done == n) return 1;
        vfioq_qp_poll(qp, 0);
    }
    return 0;
}

static void registers(vfioq_device* dev) {
    uint64_t id = 0, scratch = 0;
    MUST(vfioq_device_read(dev, 0, kRegId, 32, &id));
    CHECK(id == kIdValue, "ID reads %#llx", (unsigned long long)id);
    MUST(vfioq_device_write(dev, 0, kRegScratch, 32, 0x1234));
    MUST(vfioq_device_read(dev, 0, kRegScratch, 32, &scratch));
    CHECK(scratch == 0x1234, "SCRATCH reads back %#llx", (unsigned long long)scratch);
    CHECK(vfioq_device_bar_size(dev, 0) == 16384, "BAR0 is 16 KiB");

    int rc = vfioq_device_read(dev, 0, 2, 32, &id);
    CHECK(rc == -EINVAL, "a misaligned read is refused with EINVAL, not %d", rc);
    CHECK(strstr(vfioq_last_error(), "0x2") != NULL, "the message names the offset: %s", vfioq_last_error());
    rc = vfioq_device_read(dev, 3, 0, 32, &id);
    CHECK(rc < 0 && strstr(vfioq_last_error(), "BAR3") != NULL, "a BAR that is not there is refused: %d", rc);
    uint64_t vendor = 0;
    MUST(vfioq_device_config_read(dev, 0, 16, &vendor));
    CHECK(vendor == 0x1234, "config space: vendor %#llx", (unsigned long long)vendor);
    char why[64];
    CHECK(!vfioq_device_gone(dev, why, sizeof(why)) && why[0] == '\0', "a live device is not gone");
}

static void open_errors(void) {
    vfioq_device* dev = NULL;
    int rc = vfioq_device_open("vfio-user:/nonexistent/card.sock", &dev);
    CHECK(rc < 0 && dev == NULL, "a socket that is not there is refused: %d", rc);
    CHECK(strstr(vfioq_last_error(), "/nonexistent/card.sock") != NULL, "the message names the path");
    rc = vfioq_device_open("nonsense", &dev);
    CHECK(rc == -EINVAL, "an address of no kind is EINVAL, not %d", rc);
    CHECK(vfioq_device_open(NULL, &dev) == -EINVAL, "a NULL address is EINVAL");

    vfioq_model_options mo;
    vfioq_model_options_init(&mo);
    mo.faults = "drop=2";
    rc = vfioq_model_open(&mo, &dev);
    CHECK(rc == -EINVAL && strstr(vfioq_last_error(), "drop=2") != NULL, "a bad fault spec is named: %s",
          vfioq_last_error());
    vfioq_model_options zero;
    memset(&zero, 0, sizeof(zero));
    CHECK(vfioq_model_open(&zero, &dev) == -EINVAL, "options not initialised are refused");
}

/* Writes a pattern to card memory and reads it back, `depth` commands at a time, in batches. */
static void pattern(vfioq_controller* ctrl, vfioq_device* dev, uint32_t depth) {
    vfioq_qp_options qo;
    vfioq_qp_options_init(&qo);
    qo.depth = depth;
    vfioq_qp* qp = NULL;
    MUST(vfioq_qp_open(ctrl, &qo, &qp));
    CHECK(vfioq_qp_capacity(qp) == depth, "depth %u: capacity %u", depth, vfioq_qp_capacity(qp));

    enum { kBlock = 4096, kCommands = 96 };
    vfioq_dma_buffer *out = NULL, *in = NULL;
    MUST(vfioq_dma_alloc(dev, kBlock * kCommands, &out));
    MUST(vfioq_dma_alloc(dev, kBlock * kCommands, &in));
    unsigned char* o = vfioq_dma_data(out);
    for (size_t i = 0; i < (size_t)kBlock * kCommands; ++i) o[i] = (unsigned char)(i * 31 + depth);
    memset(vfioq_dma_data(in), 0, kBlock * kCommands);

    for (int op = VFIOQ_OP_WRITE; op <= VFIOQ_OP_READ; ++op) {
        vfioq_dma_buffer* buf = op == VFIOQ_OP_WRITE ? out : in;
        vfioq_segment seg[kCommands];
        vfioq_request req[kCommands];
        outcome got[kCommands];
        memset(got, 0, sizeof(got));
        for (int i = 0; i < kCommands; ++i) {
            seg[i].iova = vfioq_dma_iova(buf) + (uint64_t)i * kBlock;
            seg[i].len = kBlock;
            req[i] = (vfioq_request){op, (uint64_t)i * kBlock, &seg[i], 1, record, &got[i]};
        }
        size_t sent = 0;
        int refused = 0;
        while (sent < kCommands && refused == 0) {
            int n = vfioq_qp_submit_batch(qp, req + sent, kCommands - sent);
            if (n < 0)
                refused = n;
            else
                sent += (size_t)n;
            vfioq_qp_poll(qp, 0);
        }
        CHECK(refused == 0, "depth %u: a batch is refused: %d", depth, refused);
        CHECK(drain(qp, got, kCommands), "depth %u: every command is reported", depth);
        int ok = 1;
        for (int i = 0; i < kCommands; ++i) ok &= got[i].status == VFIOQ_SUCCESS && got[i].bytes == kBlock;
        CHECK(ok, "depth %u: every %s succeeded and moved its block", depth, op == VFIOQ_OP_WRITE ? "write" : "read");
    }
    CHECK(memcmp(vfioq_dma_data(out), vfioq_dma_data(in), kBlock * kCommands) == 0,
          "depth %u: what was read is what was written", depth);
    vfioq_qp_stats stats;
    vfioq_qp_stats_get(qp, &stats);
    CHECK(stats.submitted == 2 * kCommands && stats.completed == 2 * kCommands,
          "depth %u: stats count %llu submitted, %llu completed", depth, (unsigned long long)stats.submitted,
          (unsigned long long)stats.completed);
    CHECK(vfioq_qp_close(qp) == 0, "closing an idle queue pair");
    CHECK(vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_NOP, 0, NULL, 0, NULL, NULL}) == -EPIPE,
          "a submission after close is EPIPE");
    vfioq_qp_free(qp);
    vfioq_dma_free(out);
    vfioq_dma_free(in);
}

static void refusals(vfioq_controller* ctrl, vfioq_device* dev) {
    vfioq_qp_options qo;
    vfioq_qp_options_init(&qo);
    qo.depth = 4;
    vfioq_qp* qp = NULL;
    MUST(vfioq_qp_open(ctrl, &qo, &qp));
    vfioq_dma_buffer* buf = NULL;
    MUST(vfioq_dma_alloc(dev, 8192, &buf));
    vfioq_segment seg = {vfioq_dma_iova(buf), 4096};

    int rc = vfioq_qp_submit(qp, &(vfioq_request){7, 0, &seg, 1, NULL, NULL});
    CHECK(rc == -EINVAL && strstr(vfioq_last_error(), "opcode 7") != NULL, "an opcode of none: %d, %s", rc,
          vfioq_last_error());
    vfioq_controller_info info;
    vfioq_controller_info_get(ctrl, &info);
    CHECK(strcmp(info.kind, "SGQ") == 0 && info.max_segments > 0, "the controller is SGQ's: %s", info.kind);
    vfioq_segment* many = calloc(info.max_segments + 1, sizeof(*many));
    rc = vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_WRITE, 0, many, info.max_segments + 1, NULL, NULL});
    CHECK(rc == -EINVAL && strstr(vfioq_last_error(), "segments") != NULL, "too many segments: %s", vfioq_last_error());
    free(many);

    /* Beyond card memory: the driver refuses it, naming the range. */
    rc = vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_WRITE, info.devmem_size, &seg, 1, NULL, NULL});
    CHECK(rc == -EINVAL && strstr(vfioq_last_error(), "beyond") != NULL, "beyond card memory: %d, %s", rc,
          vfioq_last_error());
    CHECK(
        strcmp(vfioq_status_name(VFIOQ_DEVADDR_RANGE), "DEVADDR_RANGE") == 0 && strcmp(vfioq_status_name(99), "?") == 0,
        "status names");

    /* Back-pressure: the fifth of four is EAGAIN, and nothing is lost. */
    outcome nops[5];
    memset(nops, 0, sizeof(nops));
    int cids = 0;
    for (int i = 0; i < 4; ++i)
        cids += vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_NOP, 0, NULL, 0, record, &nops[i]}) >= 0;
    CHECK(cids == 4, "four NOPs fill a queue of four");
    rc = vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_NOP, 0, NULL, 0, record, &nops[4]});
    CHECK(rc == -EAGAIN && vfioq_last_error()[0] != '\0', "the fifth is EAGAIN: %d", rc);
    CHECK(vfioq_qp_outstanding(qp) == 4, "four are outstanding");
    CHECK(drain(qp, nops, 4) && nops[4].reported == 0, "the four complete and the refused one is not reported");

    /* A raw entry the driver's checks would refuse: the card's own verdict. */
    unsigned char entry[64];
    memset(entry, 0, sizeof(entry));
    const uint32_t length = 4096;
    const uint64_t devaddr = info.devmem_size;
    entry[0] = 0x01; /* WRITE */
    memcpy(entry + 4, &length, sizeof(length));
    memcpy(entry + 8, &devaddr, sizeof(devaddr));
    memcpy(entry + 24, &seg.iova, sizeof(seg.iova)); /* DPTR1: one DATA descriptor */
    memcpy(entry + 32, &length, sizeof(length));
    outcome raw = {0, 0, 0};
    rc = vfioq_qp_submit_raw(qp, entry, record, &raw);
    CHECK(rc >= 0, "a raw entry is submitted: %d", rc);
    CHECK(drain(qp, &raw, 1) && raw.status == VFIOQ_DEVADDR_RANGE, "the card answers %s",
          vfioq_status_name(raw.status));

    /* Registered application memory. */
    unsigned char* mine = aligned_alloc(4096, 8192);
    memset(mine, 0x5A, 8192);
    vfioq_registration* reg = NULL;
    MUST(vfioq_dma_register(dev, mine, 8192, &reg));
    uint64_t iova = 0;
    MUST(vfioq_dma_translate(dev, mine + 100, 10, false, &iova));
    CHECK(iova == vfioq_dma_registration_iova(reg, mine + 100), "translate agrees with the registration");
    outcome w = {0, 0, 0};
    vfioq_segment mseg = {vfioq_dma_registration_iova(reg, mine), 8192};
    MUST(vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_WRITE, 0, &mseg, 1, record, &w}));
    CHECK(drain(qp, &w, 1) && w.status == VFIOQ_SUCCESS, "a write from registered memory: %s",
          vfioq_status_name(w.status));
    CHECK(vfioq_dma_unregister(dev, mine, 8192) == -EBUSY, "unregistering held memory is EBUSY");
    vfioq_dma_release(reg);
    CHECK(vfioq_dma_unregister(dev, mine, 8192) == 0, "and works once released");
    CHECK(vfioq_dma_translate(dev, mine, 10, false, &iova) == -EFAULT, "unregistered memory does not translate");
    free(mine);

    vfioq_qp_free(qp);
    vfioq_dma_free(buf);
}

/* A model whose first completion carries an error status. */
static void injected_fault(void) {
    vfioq_model_options mo;
    vfioq_model_options_init(&mo);
    mo.faults = "1:status";
    mo.fault_status = 9;
    vfioq_device* dev = NULL;
    MUST(vfioq_model_open(&mo, &dev));
    vfioq_controller* ctrl = NULL;
    MUST(vfioq_controller_open(dev, NULL, &ctrl));
    vfioq_qp* qp = NULL;
    MUST(vfioq_qp_open(ctrl, NULL, &qp));
    outcome got[2];
    memset(got, 0, sizeof(got));
    MUST(vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_NOP, 0, NULL, 0, record, &got[0]}));
    MUST(vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_NOP, 0, NULL, 0, record, &got[1]}));
    CHECK(drain(qp, got, 2), "both NOPs are reported");
    CHECK(got[0].status == VFIOQ_INTERNAL && got[1].status == VFIOQ_SUCCESS, "the first is %s, the second %s",
          vfioq_status_name(got[0].status), vfioq_status_name(got[1].status));
    /* Freed in the order a careless program might: device, controller, then the queue pair. */
    vfioq_device_close(dev);
    vfioq_controller_close(ctrl);
    outcome late = {0, 0, 0};
    MUST(vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_NOP, 0, NULL, 0, record, &late}));
    CHECK(drain(qp, &late, 1) && late.status == VFIOQ_SUCCESS, "the queue pair still works on its own");
    vfioq_qp_free(qp);
}

/* A buffer freed while its command waits in the card: the command faults, the process lives. */
static void freed_buffer(void) {
    vfioq_model_options mo;
    vfioq_model_options_init(&mo);
    mo.latency_us = 20000;
    vfioq_device* dev = NULL;
    MUST(vfioq_model_open(&mo, &dev));
    vfioq_controller* ctrl = NULL;
    MUST(vfioq_controller_open(dev, NULL, &ctrl));
    vfioq_qp* qp = NULL;
    MUST(vfioq_qp_open(ctrl, NULL, &qp));
    vfioq_dma_buffer* buf = NULL;
    MUST(vfioq_dma_alloc(dev, 65536, &buf));
    vfioq_segment seg = {vfioq_dma_iova(buf), 65536};
    outcome got = {0, 0, 0};
    MUST(vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_READ, 0, &seg, 1, record, &got}));
    vfioq_dma_free(buf);
    CHECK(drain(qp, &got, 1), "the command on a freed buffer is reported");
    CHECK(got.status == VFIOQ_DMA_FAULT, "it completes %s, not SUCCESS", vfioq_status_name(got.status));
    vfioq_qp_free(qp);
    vfioq_controller_close(ctrl);
    vfioq_device_close(dev);
}

/* A queue pair freed with commands in flight reports each of them first. */
static void free_in_flight(vfioq_controller* ctrl) {
    vfioq_qp* qp = NULL;
    MUST(vfioq_qp_open(ctrl, NULL, &qp));
    outcome got[8];
    memset(got, 0, sizeof(got));
    for (int i = 0; i < 8; ++i) MUST(vfioq_qp_submit(qp, &(vfioq_request){VFIOQ_OP_NOP, 0, NULL, 0, record, &got[i]}));
    vfioq_qp_free(qp);
    int once = 1;
    for (int i = 0; i < 8; ++i) once &= got[i].reported == 1;
    CHECK(once, "each command is reported once when its queue pair is freed");
}

int main(void) {
    CHECK(strlen(vfioq_version()) >= 5, "a version: %s", vfioq_version());
    vfioq_model_enable();
    vfioq_device* dev = NULL;
    MUST(vfioq_device_open("model", &dev));
    CHECK(strcmp(vfioq_device_name(dev), "model") == 0, "the device is named %s", vfioq_device_name(dev));
    registers(dev);
    open_errors();

    vfioq_controller_options co;
    vfioq_controller_options_init(&co);
    vfioq_controller* ctrl = NULL;
    MUST(vfioq_controller_open(dev, &co, &ctrl));
    const uint32_t depths[] = {1, 16, 256};
    for (size_t i = 0; i < sizeof(depths) / sizeof(depths[0]); ++i) pattern(ctrl, dev, depths[i]);
    refusals(ctrl, dev);
    free_in_flight(ctrl);
    CHECK(vfioq_controller_shutdown(ctrl) == 0, "a normal shutdown");
    vfioq_controller_close(ctrl);
    vfioq_device_close(dev);
    injected_fault();
    freed_buffer();

    printf("%d passed, %d failed\n", passed, failed);
    return failed == 0 ? 0 : 1;
}
