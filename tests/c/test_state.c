/* Training state save/load, for SGD (state version 1) and AdamW (version 2): bit-exact
 * continuation, refusal of damaged buffers (under ASan) and of another optimizer's state. Also
 * the uint8 input mapping (pixels with per-channel offset and scale). */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iem_builder.h"
#include "intedge.h"

enum { K = 16, H = 8, C = 4, N = 8 };

static uint32_t f2b(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

static void batch(int step, uint32_t *x, int32_t *y) {
    for (int i = 0; i < N; i++) {
        y[i] = (step + i) % C;
        for (int j = 0; j < K; j++) x[i * K + j] = f2b((float)((i * 7 + j * 3 + step) % 11) / 11.0f + (j % C == y[i]));
    }
}

static ie_optimizer optimizer; /* the one the tests below run */

static ie_session *make(ie_model *m) {
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = N;
    c.optimizer = optimizer;
    if (optimizer == IE_OPTIM_ADAMW) {
        ie_dyadic_from_f32_bits(f2b(0.01f), &c.lr);
        ie_dyadic_from_f32_bits(f2b(0.9f), &c.beta1);
        ie_dyadic_from_f32_bits(f2b(0.999f), &c.beta2);
        ie_dyadic_from_f32_bits(f2b(1e-8f), &c.eps);
    } else {
        ie_dyadic_from_f32_bits(f2b(0.05f), &c.lr);
        ie_dyadic_from_f32_bits(f2b(0.9f), &c.momentum);
    }
    ie_dyadic_from_f32_bits(f2b(0.001f), &c.weight_decay);
    c.seed = 42;
    ie_session *s = NULL;
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    return s;
}

static void run(ie_session *s, int from, int to) {
    uint32_t x[N * K];
    int32_t y[N];
    for (int i = from; i < to; i++) {
        batch(i, x, y);
        CHECK(ie_session_step(s, N, x, y, NULL, NULL) == IE_OK);
    }
}

static uint8_t *save(ie_session *s, size_t *size) {
    CHECK(ie_session_state_size(s, size) == IE_OK);
    uint8_t *buf = malloc(*size);
    CHECK(ie_session_save_state(s, buf, *size) == IE_OK);
    /* streamed in odd pieces, the state is the same bytes */
    uint8_t piece[7];
    for (size_t off = 0; off < *size; off += sizeof piece) {
        size_t n = *size - off < sizeof piece ? *size - off : sizeof piece;
        CHECK(ie_session_read_state(s, off, piece, n) == IE_OK && memcmp(piece, buf + off, n) == 0);
    }
    CHECK(ie_session_read_state(s, *size, piece, 1) == IE_ERR_ARG);
    CHECK(ie_session_read_state(s, 1, piece, *size) == IE_ERR_ARG);
    /* the digest is the CRC the saved header carries */
    uint32_t digest = 0;
    CHECK(ie_session_digest(s, &digest) == IE_OK && digest == ((uint32_t)buf[12] | (uint32_t)buf[13] << 8 |
                                                               (uint32_t)buf[14] << 16 | (uint32_t)buf[15] << 24));
    return buf;
}

static void test_continuation(ie_model *m) {
    ie_session *a = make(m), *b = make(m);
    run(a, 0, 10);
    size_t size, end_a_size, end_b_size;
    uint8_t *mid = save(a, &size);
    CHECK(mid[4] == (optimizer == IE_OPTIM_SGD ? 1 : 2)); /* SGD keeps writing version 1 */
    run(a, 10, 25);
    CHECK(ie_session_load_state(b, mid, size) == IE_OK);
    CHECK(ie_session_step_count(b) == 10);
    run(b, 10, 25);
    uint8_t *end_a = save(a, &end_a_size), *end_b = save(b, &end_b_size);
    CHECK(end_a_size == end_b_size && memcmp(end_a, end_b, end_a_size) == 0);

    /* every truncation, every flipped byte: refused, and the session keeps its state */
    for (size_t n = 0; n < size; n++) {
        uint8_t *copy = malloc(n ? n : 1);
        memcpy(copy, mid, n);
        CHECK(ie_session_load_state(b, copy, n) == IE_ERR_FORMAT);
        free(copy);
    }
    for (size_t i = 0; i < size; i += 7) {
        mid[i] ^= 0x10;
        CHECK(ie_session_load_state(b, mid, size) == IE_ERR_FORMAT);
        mid[i] ^= 0x10;
    }
    CHECK(strstr(ie_session_errmsg(b), "refused") != NULL);
    free(end_b);
    end_b = save(b, &end_b_size);
    CHECK(memcmp(end_a, end_b, end_a_size) == 0);
    free(mid); free(end_a); free(end_b);
    ie_session_free(a);
    ie_session_free(b);
}

/* The optimizer keeps max|w| and max|mom| from one step to the next: loading a state or setting
 * weights must drop them. After each such write, a fresh session given the same state (its
 * maxima computed anew) must go on in step. */
static void expect_same_future(ie_model *m, ie_session *b) {
    size_t size, sb, sd;
    uint8_t *st = save(b, &size);
    ie_session *d = make(m);
    CHECK(ie_session_load_state(d, st, size) == IE_OK);
    run(b, 30, 33);
    run(d, 30, 33);
    uint8_t *end_b = save(b, &sb), *end_d = save(d, &sd);
    CHECK(sb == sd && memcmp(end_b, end_d, sb) == 0);
    free(st); free(end_b); free(end_d);
    ie_session_free(d);
}

static void test_writes_drop_cached_maxima(ie_model *m) {
    ie_session *a = make(m), *b = make(m);
    run(a, 0, 10);
    size_t size;
    uint8_t *mid = save(a, &size);
    run(b, 0, 20);
    CHECK(ie_session_load_state(b, mid, size) == IE_OK);
    expect_same_future(m, b);
    int32_t w[K * H];
    int16_t e;
    CHECK(ie_session_get_param(b, 0, w, &e) == IE_OK);
    for (int i = 0; i < K * H; i++) w[i] /= 4;
    CHECK(ie_session_set_param(b, 0, w, e) == IE_OK);
    expect_same_future(m, b);
    uint32_t f[K * H];
    for (int i = 0; i < K * H; i++) f[i] = f2b((float)(i % 13) / 64.0f);
    CHECK(ie_session_set_param_f32_bits(b, 0, f) == IE_OK);
    expect_same_future(m, b);
    free(mid);
    ie_session_free(a);
    ie_session_free(b);
}

/* A state of one optimizer is refused by a session of the other, with both named. */
static void test_other_optimizer(ie_model *m) {
    optimizer = IE_OPTIM_SGD;
    ie_session *sgd = make(m);
    optimizer = IE_OPTIM_ADAMW;
    ie_session *adamw = make(m);
    size_t a_size, s_size;
    uint8_t *a_state = save(adamw, &a_size), *s_state = save(sgd, &s_size);
    CHECK(ie_session_load_state(sgd, a_state, a_size) == IE_ERR_FORMAT &&
          strstr(ie_session_errmsg(sgd), "saved by an AdamW session; this session runs SGD"));
    CHECK(ie_session_load_state(adamw, s_state, s_size) == IE_ERR_FORMAT &&
          strstr(ie_session_errmsg(adamw), "saved by an SGD session; this session runs AdamW"));
    free(a_state); free(s_state);
    ie_session_free(sgd);
    ie_session_free(adamw);
}

/* A state from another model is refused by CRC. */
static void test_other_model(ie_model *m) {
    size_t size2;
    uint8_t *buf2 = iemb_mlp(K, H + 1, C, &size2);
    ie_model *m2;
    CHECK(ie_model_load(buf2, size2, &m2) == IE_OK);
    ie_session *a = make(m), *b = make(m2);
    size_t size;
    uint8_t *st = save(a, &size);
    CHECK(ie_session_load_state(b, st, size) == IE_ERR_FORMAT && strstr(ie_session_errmsg(b), "different model"));
    free(st);
    ie_session_free(a); ie_session_free(b);
    ie_model_free(m2);
    free(buf2);
}

/* uint8 input: (256 p - offset) * scale, nearest rounding in eval mode, checked via a
 * model whose first layer is the identity. */
static void test_u8_input(void) {
    enum { CH = 2, PIX = 3 };
    static float eye[36];
    for (int i = 0; i < 6; i++) eye[i * 6 + i] = 1.0f;
    float zero[6] = {0};
    iem_builder b;
    memset(&b, 0, sizeof b);
    uint32_t d_in[2] = {CH, PIX}, six = 6, d_w[2] = {6, 6};
    uint32_t in = iemb_tensor_add(&b, 0, 2, d_in, "x", NULL);
    uint32_t flat = iemb_tensor_add(&b, 2, 1, &six, "flat", NULL);
    uint32_t w = iemb_tensor_add(&b, 1, 2, d_w, "w", eye), bias = iemb_tensor_add(&b, 1, 1, &six, "b", zero);
    uint32_t out = iemb_tensor_add(&b, 2, 1, &six, "y", NULL);
    uint32_t r[1] = {in}, g[3] = {flat, w, bias};
    iemb_node_add(&b, 3, r, 1, flat, 0, "flatten");
    iemb_node_add(&b, 1, g, 3, out, 1, "fc");
    size_t size;
    uint8_t *buf = iemb_finish(&b, in, out, &size);
    ie_model *m;
    CHECK(ie_model_load(buf, size, &m) == IE_OK);
    /* channel 0: (p/255 - 0.5) / 0.25; channel 1: p/255 / 0.5 */
    int32_t off[CH] = {32640, 0};                      /* 0.5 * 255 * 256 */
    int32_t scale[CH] = {16843009, 8421505};           /* 2^30 / (255 * std), rounded */
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = 1;
    c.input_format = IE_INPUT_U8;
    c.input_channels = CH;
    c.input_offset_q8 = off;
    c.input_scale_m = scale;
    c.input_scale_e = -30;
    ie_session *s;
    CHECK(ie_session_create(m, &c, NULL, 0, &s) == IE_OK);
    uint8_t px[6] = {0, 128, 255, 0, 51, 255};
    uint32_t y[6];
    CHECK(ie_session_forward_f32_bits(s, 1, px, y) == IE_OK);
    float want[6] = {-2.0f, 2.0f / 255.0f, 2.0f, 0.0f, 0.4f, 2.0f};
    for (int i = 0; i < 6; i++) {
        float got;
        memcpy(&got, &y[i], 4);
        CHECK(got - want[i] < 0.04f && want[i] - got < 0.04f); /* int8 twice: <= 2 ulps of 2^-6 */
    }
    int32_t bad_scale[CH] = {0, 1};
    c.input_scale_m = bad_scale;
    ie_session *s2;
    CHECK(ie_session_create(m, &c, NULL, 0, &s2) == IE_ERR_ARG && strstr(ie_model_errmsg(m), "positive scale"));
    ie_session_free(s);
    ie_model_free(m);
    free(buf);
}

int main(void) {
    size_t size;
    uint8_t *buf = iemb_mlp(K, H, C, &size);
    ie_model *m;
    CHECK(ie_model_load(buf, size, &m) == IE_OK);
    for (int k = 0; k < 2; k++) {
        optimizer = k ? IE_OPTIM_ADAMW : IE_OPTIM_SGD;
        test_continuation(m);
        test_writes_drop_cached_maxima(m);
        test_other_model(m);
    }
    test_other_optimizer(m);
    test_u8_input();
    ie_model_free(m);
    free(buf);
    return CHECK_DONE();
}
