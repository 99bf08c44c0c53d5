/* The .iem loader on untrusted bytes: truncation at every length, corruption, bad fields.
 * Every buffer is a malloc'd copy of exactly its length, so ASan sees any read past the end. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iem_builder.h"
#include "intedge.h"

static int trained, too_large;

/* A model that loads must train: one step at batch 2 on finite inputs and valid labels. Arenas
 * past 256 KB (a mutated size) are only counted, so the boards' heaps suffice. */
static void train_one_step(ie_model *m) {
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = 2;
    c.loss = IE_LOSS_SOFTMAX_CE;
    c.lr.m = 1;
    c.lr.e = -4;
    size_t need = 0;
    CHECK(ie_session_arena_size(m, &c, &need) == IE_OK);
    uint32_t in = ie_model_input_size(m), out = ie_model_output_size(m);
    if (need > 256 * 1024 || (size_t)in * 2 > 64 * 1024) {
        too_large++;
        return;
    }
    ie_session *s = NULL;
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    uint32_t *x = malloc(sizeof(uint32_t) * 2 * in + 1);
    for (uint32_t i = 0; i < 2 * in; i++) x[i] = 0x3F000000u + (i % 7) * 0x100000u; /* 0.5 .. 0.84 */
    int32_t y[2] = {0, (int32_t)(out > 1)};
    ie_status st = ie_session_step(s, 2, x, y, NULL, NULL);
    CHECK(st == IE_OK);
    if (st != IE_OK) fprintf(stderr, "step: %s\n", ie_session_errmsg(s));
    trained++;
    free(x);
    ie_session_free(s);
}

static ie_status load_copy(const uint8_t *src, size_t n, int fix_crc) {
    uint8_t *copy = malloc(n ? n : 1);
    memcpy(copy, src, n);
    if (fix_crc && n >= 16) iemb_fix_crc(copy, n);
    ie_model *m = NULL;
    ie_status st = ie_model_load(copy, n, &m);
    if (st != IE_OK) CHECK(m != NULL && strlen(ie_model_errmsg(m)) > 0);
    else if (fix_crc) train_one_step(m);
    ie_model_free(m);
    free(copy);
    return st;
}

int main(void) {
    size_t size;
    uint8_t *buf = iemb_mlp(16, 8, 4, &size);
    CHECK(load_copy(buf, size, 0) == IE_OK);

    ie_model *m;
    CHECK(ie_model_load(buf, size, &m) == IE_OK);
    CHECK(ie_model_param_count(m) == 4);
    CHECK(ie_model_input_size(m) == 16 && ie_model_output_size(m) == 4);
    ie_param_info info;
    CHECK(ie_model_param_info(m, 0, &info) == IE_OK && strcmp(info.name, "fc1.weight") == 0 && info.numel == 128);
    CHECK(ie_model_param_info(m, 4, &info) == IE_ERR_ARG);
    ie_model_free(m);

    for (size_t n = 0; n < size; n++) CHECK(load_copy(buf, n, 0) != IE_OK);

    /* a flipped byte anywhere: the CRC refuses it */
    for (size_t i = 0; i < size; i++) {
        buf[i] ^= 0x5A;
        CHECK(load_copy(buf, size, 0) != IE_OK);
        buf[i] ^= 0x5A;
    }
    /* with the CRC recomputed, structural validation must refuse each mutation of the header and
     * tables by name, or accept a model that then trains a step, without reading out of bounds */
    size_t tables = 40 + 48 * 8 + 120 * 3;
    uint32_t x = 7;
    for (int trial = 0; trial < 20000; trial++) {
        uint8_t *mut = malloc(size);
        memcpy(mut, buf, size);
        for (int k = 0; k < 1 + trial % 4; k++) {
            x = x * 1103515245u + 12345u;
            size_t pos = 16 + (x >> 8) % (tables - 16);
            x = x * 1103515245u + 12345u;
            mut[pos] = (trial & 1) ? (uint8_t)(x >> 16) : (uint8_t)(mut[pos] ^ (1u << (x >> 29)));
        }
        ie_status st = load_copy(mut, size, 1);
        CHECK(st == IE_OK || st == IE_ERR_FORMAT || st == IE_ERR_UNSUPPORTED);
        free(mut);
    }
    printf("mutants: %d loaded and trained a step, %d loaded with an arena too large to try here\n", trained, too_large);
    CHECK(trained > 100);
    /* named failures */
    uint8_t *bad = malloc(size);
    memcpy(bad, buf, size);
    bad[0] = 'X';
    CHECK(ie_model_load(bad, size, &m) == IE_ERR_FORMAT && strstr(ie_model_errmsg(m), "magic"));
    ie_model_free(m);
    memcpy(bad, buf, size);
    bad[4] = 9;
    CHECK(ie_model_load(bad, size, &m) == IE_ERR_UNSUPPORTED && strstr(ie_model_errmsg(m), "version"));
    ie_model_free(m);
    memcpy(bad, buf, size);
    bad[40 + 48 * 8 + 120 * 1] = 77; /* node 1's op code */
    iemb_fix_crc(bad, size);
    CHECK(ie_model_load(bad, size, &m) == IE_ERR_UNSUPPORTED && strstr(ie_model_errmsg(m), "op code 77"));
    ie_model_free(m);
    CHECK(ie_model_load(NULL, 10, &m) == IE_ERR_ARG);
    ie_model_free(m);

    /* caller memory (bare metal): the exact size works, one byte less is refused by name */
    size_t need = 0;
    CHECK(ie_model_memory_size(buf, size, &need) == IE_OK && need > 0 && need % 64 == 0);
    CHECK(ie_model_memory_size(bad, 3, &need) == IE_ERR_FORMAT);
    static uint64_t mem[8192];
    CHECK(need <= sizeof mem);
    CHECK(ie_model_load_into(buf, size, mem, need, &m) == IE_OK && (void *)m == (void *)mem);
    CHECK(ie_model_param_info(m, 0, &info) == IE_OK && info.numel == 128);
    ie_model_free(m); /* frees nothing: the memory is the caller's */
    CHECK(ie_model_load_into(buf, size, mem, need - 1, &m) == IE_ERR_NOMEM && strstr(ie_model_errmsg(m), "too small"));
    CHECK(ie_model_load_into(buf, size, (uint8_t *)mem + 4, need, &m) == IE_ERR_ARG && m == NULL);
    bad[0] = 'X';
    CHECK(ie_model_load_into(bad, size, mem, sizeof mem, &m) == IE_ERR_FORMAT && strstr(ie_model_errmsg(m), "magic"));
    free(bad);
    free(buf);

    /* a Softmax (op 16) loads in every build */
    iem_builder b = {0};
    uint32_t dims[1] = {6};
    uint32_t sx = iemb_tensor_add(&b, 0, 1, dims, "x", NULL), sy = iemb_tensor_add(&b, 2, 1, dims, "y", NULL);
    iemb_node_add(&b, 16, &sx, 1, sy, 0, "softmax");
    buf = iemb_finish(&b, sx, sy, &size);
    ie_status st = ie_model_load(buf, size, &m);
    CHECK(st == IE_OK);
    ie_model_free(m);
    free(buf);
    return CHECK_DONE();
}
