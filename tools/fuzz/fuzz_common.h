/* What the libFuzzer harnesses of the loaders share (docs/reliability.md). Both formats, .iem and
 * the training state, carry their size at byte 8 and a CRC-32 of bytes [16, size) at byte 12. The
 * harness rewrites the size, and the fuzz build's loaders skip the CRC check (ie_crc_ok), so that
 * a mutation reaches the parser instead of stopping at a checksum: the fuzzer explores what a
 * corrupt file that passed its checks does. */
#ifndef INTEDGE_FUZZ_COMMON_H
#define INTEDGE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intedge.h"

/* A copy of the input with its size field made to match (when it has one), on the heap so that
 * ASan sees reads past its end. */
static uint8_t *fuzz_fixed_copy(const uint8_t *data, size_t size) {
    uint8_t *b = malloc(size ? size : 1);
    if (!b) abort();
    if (size) memcpy(b, data, size);
    if (size >= 12 && size <= UINT32_MAX)
        for (int i = 0; i < 4; i++) b[8 + i] = (uint8_t)(size >> (8 * i));
    return b;
}

/* Sessions larger than this are skipped (planned, not created): a 2^28-element tensor is a
 * valid model, but allocating it would measure the machine, not the loader. */
#define FUZZ_MAX_ARENA ((size_t)32 << 20)

/* One training step at batch 2 on zero inputs with label 0: every forward, backward and optimizer
 * path of the model's ops runs once. Returns the step's status. */
static ie_status fuzz_one_step(ie_session *s, const ie_model *m) {
    uint32_t n_inputs = ie_model_input_count(m);
    const void *inputs[16] = {0};
    ie_status st = IE_OK;
    if (n_inputs > 16) return IE_ERR_UNSUPPORTED;
    for (uint32_t i = 0; i < n_inputs && st == IE_OK; i++) {
        ie_input_info info;
        if (ie_model_input_info(m, i, &info) != IE_OK) st = IE_ERR_ARG;
        else if (!(inputs[i] = calloc((size_t)2 * info.numel + 1, 4))) abort();
    }
    int32_t labels[2] = {0, 0};
    ie_step_stats stats;
    if (st == IE_OK) st = ie_session_step_inputs(s, 2, inputs, labels, NULL, &stats);
    for (uint32_t i = 0; i < n_inputs; i++) free((void *)inputs[i]);
    return st;
}

/* The optimizers a state can be saved by: plain SGD, SGD with momentum (a second array per
 * parameter) and AdamW (the format's version 2, with m and v). */
enum { FUZZ_SGD, FUZZ_MOMENTUM, FUZZ_ADAMW, FUZZ_OPTIMIZERS };

static ie_session_config fuzz_config(int optimizer) {
    ie_session_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 2;
    cfg.loss = IE_LOSS_SOFTMAX_CE;
    ie_dyadic_from_f32_bits(0x3C23D70Au, &cfg.lr); /* 0.01 */
    if (optimizer == FUZZ_MOMENTUM) ie_dyadic_from_f32_bits(0x3F666666u, &cfg.momentum); /* 0.9 */
    if (optimizer == FUZZ_ADAMW) {
        cfg.optimizer = IE_OPTIM_ADAMW;
        ie_dyadic_from_f32_bits(0x3F666666u, &cfg.beta1); /* 0.9 */
        ie_dyadic_from_f32_bits(0x3F7FBE77u, &cfg.beta2); /* 0.999 */
        ie_dyadic_from_f32_bits(0x322BCC77u, &cfg.eps);   /* 1e-8 */
    }
    ie_dyadic_from_f32_bits(0x38D1B717u, &cfg.weight_decay); /* 1e-4 */
    cfg.seed = 7;
    return cfg;
}

/* A session for m, or NULL when m is refused at planning or its arena is over FUZZ_MAX_ARENA. */
static ie_session *fuzz_session(ie_model *m, int optimizer) {
    ie_session_config cfg = fuzz_config(optimizer);
    size_t arena = 0;
    ie_session *s = NULL;
    if (ie_session_arena_size(m, &cfg, &arena) != IE_OK || arena > FUZZ_MAX_ARENA) return NULL;
    if (ie_session_create(m, &cfg, NULL, 0, &s) != IE_OK) return NULL;
    return s;
}

#endif
