/* What the libFuzzer harnesses of the loaders share (tools/fuzz/README in docs/reliability.md).
 * Both formats, .iem and the training state, carry their size at byte 8 and a CRC-32 of bytes
 * [16, size) at byte 12. The harness rewrites both, so that a mutation reaches the parser instead
 * of stopping at the CRC: the fuzzer explores what a corrupt file that passed its checksum does. */
#ifndef INTEDGE_FUZZ_COMMON_H
#define INTEDGE_FUZZ_COMMON_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "intedge.h"

/* zlib's CRC-32, as both formats use it (kept here so that the harness does not lean on the
 * runtime's own CRC, which it is testing). */
static uint32_t fuzz_crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1u)));
    }
    return ~c;
}

static void fuzz_put32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A copy of the input with its size and CRC fields made to match (when it has them), on the
 * heap so that ASan sees reads past its end. */
static uint8_t *fuzz_fixed_copy(const uint8_t *data, size_t size) {
    uint8_t *b = malloc(size ? size : 1);
    if (!b) abort();
    if (size) memcpy(b, data, size);
    if (size >= 16 && size <= UINT32_MAX) {
        fuzz_put32(b + 8, (uint32_t)size);
        fuzz_put32(b + 12, fuzz_crc32(b + 16, size - 16));
    }
    return b;
}

/* Sessions larger than this are skipped (planned, not created): a 2^28-element tensor is a
 * valid model, but allocating it would measure the machine, not the loader. */
#define FUZZ_MAX_ARENA ((size_t)32 << 20)

/* One SGD step at batch 2 on zero inputs with label 0: every forward, backward and optimizer
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

static ie_session_config fuzz_config(int momentum) {
    ie_session_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.batch_size = 2;
    cfg.loss = IE_LOSS_SOFTMAX_CE;
    ie_dyadic_from_f32_bits(0x3C23D70Au, &cfg.lr); /* 0.01 */
    if (momentum) ie_dyadic_from_f32_bits(0x3F666666u, &cfg.momentum); /* 0.9 */
    ie_dyadic_from_f32_bits(0x38D1B717u, &cfg.weight_decay);            /* 1e-4 */
    cfg.seed = 7;
    return cfg;
}

/* A session for m, or NULL when m is refused at planning or its arena is over FUZZ_MAX_ARENA. */
static ie_session *fuzz_session(ie_model *m, int momentum) {
    ie_session_config cfg = fuzz_config(momentum);
    size_t arena = 0;
    ie_session *s = NULL;
    if (ie_session_arena_size(m, &cfg, &arena) != IE_OK || arena > FUZZ_MAX_ARENA) return NULL;
    if (ie_session_create(m, &cfg, NULL, 0, &s) != IE_OK) return NULL;
    return s;
}

#endif
