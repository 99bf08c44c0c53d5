/* Memory limits: an arena too small for the plan, and models whose sizes pass 32 bits (huge dims,
 * element counts, tensor and node counts, a batch times a tensor, an op's scratch) are refused at load or planning
 * time with a message, never wrapped into a small size. The cross builds run it on 32-bit
 * targets, where a wrapped size_t would plan a tiny arena. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iem_builder.h"
#include "intedge.h"

static int says(const char *msg, const char *part) {
    if (strstr(msg, part)) return 1;
    fprintf(stderr, "message '%s' lacks '%s'\n", msg, part);
    return 0;
}

static ie_session_config config(uint32_t batch) {
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = batch;
    c.loss = IE_LOSS_MSE;
    ie_dyadic_from_f32_bits(0x3C23D70Au, &c.lr); /* 0.01 */
    return c;
}

/* The arena ie_session_arena_size names works; one byte short of the plan is IE_ERR_NOMEM with a
 * message, no session, and nothing written (ASan watches the buffer's end). */
static void test_arena_too_small(void) {
    size_t size, need = 0;
    uint8_t *buf = iemb_mlp(16, 8, 4, &size);
    ie_model *m = NULL;
    CHECK(ie_model_load(buf, size, &m) == IE_OK);
    ie_session_config c = config(4);
    CHECK(ie_session_arena_size(m, &c, &need) == IE_OK && need > 64);
    uint8_t *arena = malloc(need);
    ie_session *s = NULL;
    CHECK(arena && ie_session_create(m, &c, arena, need, &s) == IE_OK && s);
    ie_session_free(s);
    s = NULL;
    /* need includes 64 bytes of slack for aligning the pointer: 65 fewer is short wherever it lands */
    uint8_t *small = malloc(need - 65);
    CHECK(small && ie_session_create(m, &c, small, need - 65, &s) == IE_ERR_NOMEM && s == NULL);
    CHECK(says(ie_model_errmsg(m), "is too small: this config needs"));
    CHECK(ie_session_create(m, &c, small, 0, &s) == IE_ERR_NOMEM && s == NULL);
    free(small);
    free(arena);
    ie_model_free(m);
    free(buf);
}

/* A one-node model: input of `rank` dims -> Relu. */
static ie_status load_dims(uint8_t rank, const uint32_t *dims, ie_model **m, uint8_t **buf) {
    iem_builder b;
    memset(&b, 0, sizeof b);
    uint32_t x = iemb_tensor_add(&b, 0, rank, dims, "x", NULL);
    uint32_t y = iemb_tensor_add(&b, 2, rank, dims, "y", NULL);
    iemb_node_add(&b, 2, &x, 1, y, 0, "relu");
    size_t size;
    *buf = iemb_finish(&b, x, y, &size);
    return ie_model_load(*buf, size, m);
}

static void test_huge_dims(void) {
    /* 65536 x 65537 = 2^32 + 65536: wrapped to 32 bits it would be 65536 elements */
    static const uint32_t wraps[2] = {65536, 65537}, max[6] = {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu,
                                                                0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu};
    static const uint32_t over[3] = {1u << 14, 1u << 14, 2}, at[2] = {1u << 14, 1u << 14};
    const uint32_t *dims[3] = {wraps, max, over};
    const uint8_t ranks[3] = {2, 6, 3};
    for (int k = 0; k < 3; k++) {
        ie_model *m = NULL;
        uint8_t *buf = NULL;
        CHECK(load_dims(ranks[k], dims[k], &m, &buf) == IE_ERR_UNSUPPORTED);
        CHECK(says(ie_model_errmsg(m), "tensor 0: more than 268435456 elements"));
        ie_model_free(m);
        free(buf);
    }
    ie_model *m = NULL;
    uint8_t *buf = NULL;
    CHECK(load_dims(2, at, &m, &buf) == IE_OK); /* 2^28 elements exactly: a valid model */
    ie_model_free(m);
    free(buf);
}

/* Counts in the header past the limits, including one whose table size wraps 32 bits
 * (0x05555556 x 48 bytes = 2^32 + 32). */
static void test_huge_counts(void) {
    size_t size;
    uint8_t *good = iemb_mlp(16, 8, 4, &size);
    static const struct { uint32_t offset, value; const char *says; } cases[] = {
        {16, 0xFFFFFFFFu, "tensor or node count out of range"},
        {16, 0x05555556u, "tensor or node count out of range"},
        {20, 0x80000000u, "tensor or node count out of range"},
        {20, 0x02222223u, "tensor or node count out of range"},
        {16, 65536, "tensor or node table out of bounds"},
        {20, 65536, "tensor or node table out of bounds"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint8_t *buf = malloc(size);
        memcpy(buf, good, size);
        for (int i = 0; i < 4; i++) buf[cases[k].offset + (uint32_t)i] = (uint8_t)(cases[k].value >> (8 * i));
        iemb_fix_crc(buf, size);
        ie_model *m = NULL;
        CHECK(ie_model_load(buf, size, &m) == IE_ERR_FORMAT);
        CHECK(says(ie_model_errmsg(m), cases[k].says));
        ie_model_free(m);
        free(buf);
    }
    free(good);
}

/* Planning c is refused with IE_ERR_NOMEM and a message, and so is creating its session. */
static void check_refused(ie_model *m, const ie_session_config *c) {
    size_t need = 0;
    CHECK(ie_session_arena_size(m, c, &need) == IE_ERR_NOMEM);
    CHECK(says(ie_model_errmsg(m), "this model needs an arena of more than"));
    ie_session *s = NULL;
    CHECK(ie_session_create(m, c, NULL, 0, &s) == IE_ERR_NOMEM && s == NULL);
}

/* c needs more than `bytes` (past 2^32, within a 64-bit host's limit): planned on a 64-bit host,
 * refused on a 32-bit target. */
static void check_past_32_bits(ie_model *m, const ie_session_config *c, uint64_t bytes) {
    size_t need = 0;
    if (sizeof(size_t) == 4) {
        check_refused(m, c);
        return;
    }
    CHECK(ie_session_arena_size(m, c, &need) == IE_OK && (uint64_t)need > bytes);
}

/* Input [1, 2^14, 2^14] (2^28 elements) -> MaxPool 128x128, stride 128 -> [1, 128, 128]. At
 * batch 1 the plan takes a little over 2^28 bytes (planned, never allocated); at batch 2^14 the
 * input alone takes 2^42 bytes, past IE_MAX_ARENA_BYTES (and 0 once wrapped to 32 bits). */
static void test_batch_times_tensor(void) {
    iem_builder b;
    memset(&b, 0, sizeof b);
    static const uint32_t in[3] = {1, 1u << 14, 1u << 14}, out[3] = {1, 128, 128};
    uint32_t x = iemb_tensor_add(&b, 0, 3, in, "x", NULL);
    uint32_t y = iemb_tensor_add(&b, 2, 3, out, "y", NULL);
    iemb_node_add(&b, 5, &x, 1, y, 128, "pool");
    static const int32_t attrs[6] = {128, 128, 128, 128, 1, 1}; /* kh kw sh sw dh dw */
    memcpy(b.n[0].attrs, attrs, sizeof attrs);
    size_t size, need = 0;
    uint8_t *buf = iemb_finish(&b, x, y, &size);
    ie_model *m = NULL;
    CHECK(ie_model_load(buf, size, &m) == IE_OK);
    ie_session_config c = config(1);
    CHECK(ie_session_arena_size(m, &c, &need) == IE_OK && need > (1u << 28));
    c = config(16); /* 2^32 bytes: past what a 32-bit target may plan, fine on a 64-bit host */
    check_past_32_bits(m, &c, (uint64_t)1 << 32);
    c = config(1u << 14);
    check_refused(m, &c);
    ie_model_free(m);
    free(buf);
}

/* An op's scratch past 32 bits while the tensors stay within a 32-bit target's arena: input
 * [1, 2^14, 2^14] -> Conv with a kh x kw kernel ("same" pads) -> [1, 2^14, 2^14] -> MaxPool
 * 128 x 128 -> [1, 128, 128], the weight frozen. The im2col columns take kh kw x 2^28 bytes; the
 * tensors and the conv's int32 sums 1.5 GiB. A 4 x 8 kernel (2^33 bytes of columns) plans on a
 * 64-bit host and is refused on a 32-bit target; a 64 x 128 one (2^41 bytes) is refused
 * everywhere. Computed in a 32-bit size_t, both wrap to 0 and plan 1.5 GiB. */
static void test_op_scratch_past_32_bits(void) {
    static const float weights[64 * 128]; /* zeros: the test plans, it never trains */
    static const uint32_t kernels[2][2] = {{4, 8}, {64, 128}}, plane[3] = {1, 1u << 14, 1u << 14}, out[3] = {1, 128, 128};
    static const int32_t pool[6] = {128, 128, 128, 128, 1, 1}; /* kh kw sh sw dh dw */
    static const uint8_t frozen = 0;
    for (int k = 0; k < 2; k++) {
        uint32_t kh = kernels[k][0], kw = kernels[k][1];
        iem_builder b;
        memset(&b, 0, sizeof b);
        const uint32_t wdims[4] = {1, 1, kh, kw};
        uint32_t in[2] = {iemb_tensor_add(&b, 0, 3, plane, "x", NULL), iemb_tensor_add(&b, 1, 4, wdims, "w", weights)};
        uint32_t y = iemb_tensor_add(&b, 2, 3, plane, "y", NULL), z = iemb_tensor_add(&b, 2, 3, out, "z", NULL);
        iemb_node_add(&b, 4, in, 2, y, 1, "conv");
        /* group kh kw sh sw dh dw, pads top left bottom right */
        const int32_t attrs[11] = {1, (int32_t)kh, (int32_t)kw, 1, 1, 1, 1,
                                   (int32_t)(kh - 1) / 2, (int32_t)(kw - 1) / 2, (int32_t)kh / 2, (int32_t)kw / 2};
        memcpy(b.n[0].attrs, attrs, sizeof attrs);
        iemb_node_add(&b, 5, &y, 1, z, 128, "pool");
        memcpy(b.n[1].attrs, pool, sizeof pool);
        size_t size;
        uint8_t *buf = iemb_finish(&b, in[0], z, &size);
        ie_model *m = NULL;
        CHECK(ie_model_load(buf, size, &m) == IE_OK);
        ie_session_config c = config(1);
        c.trainable = &frozen;
        if (k == 0)
            check_past_32_bits(m, &c, (uint64_t)kh * kw << 28);
        else
            check_refused(m, &c);
        ie_model_free(m);
        free(buf);
    }
}

int main(void) {
    test_arena_too_small();
    test_huge_dims();
    test_huge_counts();
    test_batch_times_tensor();
    test_op_scratch_past_32_bits();
    return CHECK_DONE();
}
