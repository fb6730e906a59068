/* SPDX-License-Identifier: MIT */
/* hello_dma in C: opens a device (the built-in model unless an address is
 * given), brings the card up, writes a buffer into card memory by DMA, reads it
 * back into another and compares. Build it against the installed library with
 *   cc hello_dma.c $(pkg-config --cflags --libs vfioq-model) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <vfioq/vfioq.h>
#include <vfioq/vfioq_model.h>

static void must(int rc, const char* what) {
    if (rc < 0) {
        fprintf(stderr, "hello_dma: %s: %s\n", what, vfioq_last_error());
        exit(1);
    }
}

/* Completion callbacks get the context given at submission. */
static void on_complete(const vfioq_completion* c) { *(int*)c->context = c->status; }

int main(int argc, char** argv) {
    vfioq_model_enable(); /* "model" is served by libvfioq-model */
    vfioq_device* dev;
    must(vfioq_device_open(argc > 1 ? argv[1] : "model", &dev), "open");
    vfioq_controller* ctrl;
    must(vfioq_controller_open(dev, NULL, &ctrl), "bring-up");
    vfioq_qp_options options;
    vfioq_qp_options_init(&options);
    options.depth = 2;
    vfioq_qp* qp;
    must(vfioq_qp_open(ctrl, &options, &qp), "queue pair");

    enum { kSize = 64 * 1024 };
    vfioq_dma_buffer *out, *in;
    must(vfioq_dma_alloc(dev, kSize, &out), "buffer");
    must(vfioq_dma_alloc(dev, kSize, &in), "buffer");
    unsigned char* bytes = vfioq_dma_data(out);
    for (size_t i = 0; i < kSize; ++i) bytes[i] = (unsigned char)(i * 7 + 3);

    /* Host -> card at card address 0x1000, then card -> host. */
    for (int op = VFIOQ_OP_WRITE; op <= VFIOQ_OP_READ; ++op) {
        vfioq_segment seg = {vfioq_dma_iova(op == VFIOQ_OP_WRITE ? out : in), kSize};
        int status = -1;
        vfioq_request request = {op, 0x1000, &seg, 1, on_complete, &status};
        must(vfioq_qp_submit(qp, &request), "submit");
        while (vfioq_qp_poll(qp, 0) == 0) {
        }
        if (status != VFIOQ_SUCCESS) {
            fprintf(stderr, "hello_dma: %s failed: %s\n", op == VFIOQ_OP_WRITE ? "write" : "read",
                    vfioq_status_name(status));
            return 1;
        }
    }
    const int same = memcmp(vfioq_dma_data(out), vfioq_dma_data(in), kSize) == 0;
    printf("hello_dma (C): wrote %d bytes to %s and read them back: %s\n", kSize, vfioq_device_name(dev),
           same ? "identical" : "DIFFERENT");
    vfioq_qp_free(qp);
    vfioq_dma_free(out);
    vfioq_dma_free(in);
    vfioq_controller_close(ctrl);
    vfioq_device_close(dev);
    return same ? 0 : 1;
}
