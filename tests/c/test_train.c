/* Training through the public API: determinism, learning, arenas, and argument errors. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iem_builder.h"
#include "intedge.h"

enum { K = 16, H = 32, C = 4, N = 24 };

static uint32_t f2b(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

/* A separable toy task: class = index of the largest of four feature groups. */
static void make_batch(uint32_t seed, uint32_t *x, int32_t *y) {
    uint32_t r = seed * 2654435761u + 1;
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)(i % C);
        for (int j = 0; j < K; j++) {
            r = r * 1103515245u + 12345u;
            float v = (float)(r >> 16 & 0xff) / 255.0f;
            if (j / (K / C) == y[i]) v += 1.0f;
            x[i * K + j] = f2b(v);
        }
    }
}

static ie_session_config config(uint64_t seed) {
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = N;
    c.loss = IE_LOSS_SOFTMAX_CE;
    ie_dyadic_from_f32_bits(f2b(0.1f), &c.lr);
    ie_dyadic_from_f32_bits(f2b(0.9f), &c.momentum);
    ie_dyadic_from_f32_bits(f2b(1e-4f), &c.weight_decay);
    c.seed = seed;
    return c;
}

/* Parameter p's master mantissas, then its exponent, in a malloc'd array of numel + 1. */
static int32_t *param_copy(ie_model *m, ie_session *s, uint32_t p) {
    ie_param_info info;
    ie_model_param_info(m, p, &info);
    int32_t *w = malloc(4 * ((size_t)info.numel + 1));
    int16_t e = 0;
    CHECK(ie_session_get_param(s, p, w, &e) == IE_OK);
    w[info.numel] = e;
    return w;
}

/* Trains `steps` steps; writes a checksum of all master weights; returns the last stats. */
static ie_step_stats train(ie_model *m, uint64_t seed, int steps, uint32_t *digest, void *arena, size_t arena_size,
                           uint32_t threads) {
    ie_session_config c = config(seed);
    c.threads = threads;
    ie_session *s = NULL;
    ie_step_stats st;
    memset(&st, 0, sizeof st);
    CHECK(ie_session_create(m, &c, arena, arena_size, &s) == IE_OK);
    if (!s) return st;
    CHECK(ie_session_threads(s) == (threads > 1 && IE_TEST_HAVE_THREADS ? threads : 1));
    uint32_t x[N * K];
    int32_t y[N];
    for (int i = 0; i < steps; i++) {
        make_batch((uint32_t)i, x, y);
        CHECK(ie_session_step(s, N, x, y, NULL, &st) == IE_OK);
    }
    uint32_t h = 2166136261u;
    for (uint32_t p = 0; p < ie_model_param_count(m); p++) {
        ie_param_info info;
        ie_model_param_info(m, p, &info);
        int32_t *w = param_copy(m, s, p);
        for (uint32_t i = 0; i < info.numel; i++) h = (h ^ (uint32_t)w[i]) * 16777619u;
        h = (h ^ (uint32_t)(uint16_t)w[info.numel]) * 16777619u;
        free(w);
    }
    *digest = h;
    ie_session_free(s);
    return st;
}

int main(void) {
    size_t size;
    uint8_t *buf = iemb_mlp(K, H, C, &size);
    ie_model *m;
    CHECK(ie_model_load(buf, size, &m) == IE_OK);

    /* the loss falls and accuracy rises on a separable task */
    uint32_t d1 = 0, d2 = 0, d3 = 0;
    ie_session_config c = config(1);
    ie_session *s;
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    uint32_t x[N * K];
    int32_t y[N];
    ie_step_stats first, last;
    make_batch(1000, x, y);
    CHECK(ie_session_evaluate(s, N, x, y, NULL, &first) == IE_OK);
    for (int i = 0; i < 60; i++) {
        make_batch((uint32_t)i, x, y);
        CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_OK);
    }
    make_batch(1000, x, y);
    CHECK(ie_session_evaluate(s, N, x, y, NULL, &last) == IE_OK);
    printf("loss %.4f -> %.4f, correct %u -> %u of %d\n", (double)first.loss_sum_q16 / 65536 / N,
           (double)last.loss_sum_q16 / 65536 / N, (unsigned)first.n_correct, (unsigned)last.n_correct, N);
    CHECK(last.loss_sum_q16 < first.loss_sum_q16 / 2);
    CHECK(last.n_correct >= N - 1);
    CHECK(ie_session_step_count(s) == 60);

    /* argument errors name the problem */
    y[3] = C;
    CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_ERR_VALUE && strstr(ie_session_errmsg(s), "label 4 of sample 3"));
    CHECK(ie_session_step(s, N + 1, x, y, NULL, NULL) == IE_ERR_ARG);
    x[5] = 0x7FC00000U;
    y[3] = 0;
    CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_ERR_VALUE && strstr(ie_session_errmsg(s), "NaN"));
    ie_session_free(s);

    /* determinism: same seed, same bytes; another seed, other bytes */
    train(m, 7, 30, &d1, NULL, 0, 1);
    train(m, 7, 30, &d2, NULL, 0, 1);
    train(m, 8, 30, &d3, NULL, 0, 1);
    CHECK(d1 == d2);
    CHECK(d1 != d3);

    /* every thread count gives the same bytes */
    for (uint32_t threads = 2; threads <= 3; threads++) {
        uint32_t dt;
        train(m, 7, 30, &dt, NULL, 0, threads);
        CHECK(dt == d1);
    }

    /* a caller-provided arena of exactly the reported size gives the same bytes */
    size_t need = 0;
    CHECK(ie_session_arena_size(m, &c, &need) == IE_OK && need > 0);
    void *arena = malloc(need);
    c = config(7);
    train(m, 7, 30, &d3, arena, need, 1);
    CHECK(d3 == d1);
    CHECK(ie_session_create(m, &c, arena, need / 2, &s) == IE_ERR_NOMEM && strstr(ie_model_errmsg(m), "too small"));
    free(arena);

    /* a frozen first layer needs a smaller arena and keeps its weights to the byte (weight decay
     * and momentum are on), while the head trains */
    uint8_t flags[4] = {0, 0, 1, 1};
    size_t head_only = 0;
    c.trainable = flags;
    CHECK(ie_session_arena_size(m, &c, &head_only) == IE_OK && head_only < need);
    printf("arena: full %lu bytes, head only %lu bytes\n", (unsigned long)need, (unsigned long)head_only);
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    int32_t *before[4];
    for (uint32_t p = 0; p < 4; p++) before[p] = param_copy(m, s, p);
    for (int i = 0; i < 30; i++) {
        make_batch((uint32_t)i, x, y);
        CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_OK);
    }
    for (uint32_t p = 0; p < 4; p++) {
        ie_param_info info;
        ie_model_param_info(m, p, &info);
        int32_t *after = param_copy(m, s, p);
        int same = memcmp(before[p], after, 4 * ((size_t)info.numel + 1)) == 0;
        CHECK(same == !flags[p]);
        free(after);
        free(before[p]);
    }
    ie_session_free(s);

    /* MSE on the same logits: loss falls */
    c = config(3);
    c.loss = IE_LOSS_MSE;
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    uint32_t t[N * C];
    make_batch(5, x, y);
    for (int i = 0; i < N * C; i++) t[i] = f2b(y[i / C] == i % C ? 1.0f : 0.0f);
    ie_step_stats a, b;
    CHECK(ie_session_evaluate(s, N, x, NULL, t, &a) == IE_OK);
    for (int i = 0; i < 40; i++) CHECK(ie_session_step(s, N, x, NULL, t, NULL) == IE_OK);
    CHECK(ie_session_evaluate(s, N, x, NULL, t, &b) == IE_OK);
    printf("mse %.4f -> %.4f\n", (double)a.loss_sum_q16 / 65536 / N, (double)b.loss_sum_q16 / 65536 / N);
    CHECK(b.loss_sum_q16 < a.loss_sum_q16 / 2);
    ie_session_free(s);

    ie_model_free(m);
    free(buf);
    return CHECK_DONE();
}
