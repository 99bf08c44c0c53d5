/* AdamW through the public API: it learns, the same bytes on every kernel tier and thread count
 * (where threads are built, with a layer large enough that its passes split over the pool), the
 * arena holds m and v, and a bad configuration is refused with a message naming the fix. The
 * cross builds run it under qemu. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iem_builder.h"
#include "intedge.h"

enum { K = 64, H = 32, C = 4, N = 16, BIG_H = 640 }; /* K x BIG_H = 40,960 weights: past the split size */

static uint32_t f2b(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

static void batch(uint32_t seed, uint32_t *x, int32_t *y) { iemb_class_batch(seed, N, K, C, x, y); }

static ie_session_config adamw_config(void) {
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = N;
    c.optimizer = IE_OPTIM_ADAMW;
    ie_dyadic_from_f32_bits(f2b(1e-2f), &c.lr);
    ie_dyadic_from_f32_bits(f2b(0.9f), &c.beta1);
    ie_dyadic_from_f32_bits(f2b(0.999f), &c.beta2);
    ie_dyadic_from_f32_bits(f2b(1e-8f), &c.eps);
    ie_dyadic_from_f32_bits(f2b(0.01f), &c.weight_decay);
    c.seed = 5;
    return c;
}

/* Trains `steps` steps and returns the state digest (0 on failure); *first, *last: the loss of
 * an evaluation batch before and after. */
static uint32_t train(ie_model *m, ie_session_config c, int steps, int64_t *first, int64_t *last) {
    uint32_t x[N * K];
    int32_t y[N];
    ie_session *s = NULL;
    uint32_t digest = 0;
    ie_step_stats st;
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    if (!s) return 0;
    batch(1000, x, y);
    CHECK(ie_session_evaluate(s, N, x, y, NULL, &st) == IE_OK);
    if (first) *first = st.loss_sum_q16;
    for (int i = 0; i < steps; i++) {
        batch((uint32_t)i, x, y);
        CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_OK);
    }
    batch(1000, x, y);
    CHECK(ie_session_evaluate(s, N, x, y, NULL, &st) == IE_OK);
    if (last) *last = st.loss_sum_q16;
    CHECK(ie_session_digest(s, &digest) == IE_OK);
    ie_session_free(s);
    return digest;
}

/* The same bytes on every kernel tier, and with 2 and 3 threads where threads are built. */
static void check_tiers_and_threads(ie_model *m, int steps, uint32_t want) {
    for (uint32_t threads = 1; threads <= (IE_TEST_HAVE_THREADS ? 3 : 1); threads++)
        for (uint32_t t = 0; ie_kernel_tier(t); t++) {
            ie_session_config c = adamw_config();
            c.threads = threads;
            c.kernels = ie_kernel_tier(t);
            CHECK(train(m, c, steps, NULL, NULL) == want);
        }
}

static void test_learns_and_is_reproducible(ie_model *m) {
    int64_t first = 0, last = 0;
    uint32_t d = train(m, adamw_config(), 25, &first, &last);
    printf("adamw: eval loss %.4f -> %.4f\n", (double)first / 65536 / N, (double)last / 65536 / N);
    CHECK(last < first / 3);
    check_tiers_and_threads(m, 25, d);
    /* the hyper-parameters matter: another eps, another beta2 each give other bytes */
    ie_session_config c = adamw_config();
    ie_dyadic_from_f32_bits(f2b(1e-3f), &c.eps);
    CHECK(train(m, c, 25, NULL, NULL) != d);
    c = adamw_config();
    ie_dyadic_from_f32_bits(f2b(0.99f), &c.beta2);
    CHECK(train(m, c, 25, NULL, NULL) != d);
}

/* m (int32) and v (int64) per trained weight: 12 bytes each beyond SGD's state, and a frozen
 * parameter has none. */
static void test_arena(ie_model *m) {
    ie_session_config sgd;
    memset(&sgd, 0, sizeof sgd);
    sgd.batch_size = N;
    ie_session_config adamw = adamw_config();
    size_t a = 0, b = 0;
    CHECK(ie_session_arena_size(m, &sgd, &a) == IE_OK && ie_session_arena_size(m, &adamw, &b) == IE_OK);
    size_t params = (size_t)K * H + H + (size_t)H * C + C;
    CHECK(b >= a + 12 * params && b <= a + 12 * params + 64 * 9);
    uint8_t head_only[4] = {0, 0, 1, 1};
    adamw.trainable = head_only;
    CHECK(ie_session_arena_size(m, &adamw, &b) == IE_OK && b < a);
}

static ie_status create(ie_model *m, ie_session_config c, const char *expect) {
    ie_session *s = NULL;
    ie_status st = ie_session_create(m, &c, NULL, 0, &s);
    CHECK(st == IE_ERR_ARG && s == NULL && strstr(ie_model_errmsg(m), expect));
    ie_session_free(s);
    return st;
}

static void test_bad_configs(ie_model *m) {
    ie_session_config c = adamw_config();
    ie_dyadic_from_f32_bits(f2b(0.9f), &c.momentum);
    create(m, c, "AdamW takes beta1, not momentum");
    c = adamw_config();
    ie_dyadic_from_f32_bits(f2b(1.0f), &c.beta1);
    create(m, c, "0 <= beta1 < 1");
    c = adamw_config();
    c.beta2.m = 0;
    create(m, c, "0 < beta2 < 1");
    c = adamw_config();
    ie_dyadic_from_f32_bits(f2b(-1e-8f), &c.eps);
    create(m, c, "eps >= 0");
    c = adamw_config();
    ie_dyadic_from_f32_bits(f2b(0.95f), &c.beta1);
    ie_dyadic_from_f32_bits(f2b(0.9f), &c.beta2);
    create(m, c, "beta1^2 < beta2");
    c = adamw_config();
    c.optimizer = (ie_optimizer)7;
    create(m, c, "unknown optimizer 7");
    /* beta1 = 0 (m is the gradient) is AdamW too */
    c = adamw_config();
    c.beta1.m = 0;
    ie_session *s = NULL;
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    ie_session_free(s);
}

/* A first step whose gradient is zero for a parameter (all-zero inputs: the first layer's weights
 * get none) while v is still 0: both terms of v are absent, and choosing v's exponent subtracted
 * from INT32_MIN (signed overflow; libFuzzer's fuzz_state found it, UBSan reports it). */
static void test_zero_gradient_first_step(ie_model *m) {
    ie_session *s = NULL;
    ie_session_config c = adamw_config();
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    if (!s) return;
    static uint32_t x[N * K]; /* +0.0f */
    int32_t y[N] = {0};
    uint32_t before = 0, after = 0;
    CHECK(ie_session_digest(s, &before) == IE_OK);
    CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_OK);
    CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_OK);
    CHECK(ie_session_digest(s, &after) == IE_OK && after != before);
    ie_session_free(s);
}

int main(void) {
    size_t size;
    uint8_t *buf = iemb_mlp(K, H, C, &size);
    ie_model *m;
    CHECK(ie_model_load(buf, size, &m) == IE_OK);
    test_learns_and_is_reproducible(m);
    test_arena(m);
    test_bad_configs(m);
    test_zero_gradient_first_step(m);
    ie_model_free(m);
    free(buf);
    if (IE_TEST_HAVE_THREADS) { /* the optimizer's passes split over the pool */
        buf = iemb_mlp(K, BIG_H, C, &size);
        CHECK(ie_model_load(buf, size, &m) == IE_OK);
        check_tiers_and_threads(m, 4, train(m, adamw_config(), 4, NULL, NULL));
        ie_model_free(m);
        free(buf);
    }
    return CHECK_DONE();
}
