/* Training state encoding (the exact part of a checkpoint): step counter, master weights and
 * momentum, tied to the model by its CRC. The layout (little-endian, docs/format.md):
 *   "IES1" u16 version u16 0 | u32 size | u32 crc of [16, size) | u32 model crc | u32 params |
 *   u64 step | per parameter: u32 numel, u32 has_momentum, i32 w_exp, i32 m_exp,
 *   numel x i32 master, [numel x i32 momentum] */
#include <string.h>

#include "internal.h"

#define STATE_MAGIC "IES1"
#define STATE_VERSION 1
#define STATE_HEADER 32
#define STATE_PARAM_HEADER 16
#define MAX_MANTISSA (1 << 30)
#define MAX_EXPONENT 4096


static size_t state_bytes(const ie_session *s) {
    size_t n = STATE_HEADER;
    for (uint32_t i = 0; i < s->model->n_params; i++)
        n += STATE_PARAM_HEADER + (size_t)4 * s->params[i].numel * (s->params[i].mom ? 2 : 1);
    return n;
}

ie_status ie_session_state_size(const ie_session *s, size_t *bytes) {
    if (!s || !bytes) return IE_ERR_ARG;
    *bytes = state_bytes(s);
    return IE_OK;
}

/* The encoding goes through one emitter for the digest, save_state and read_state: it runs
 * the CRC over bytes 16.. (what the header's CRC covers) and copies the bytes that fall in the
 * caller's window [lo, hi) to out + (position - lo). */
typedef struct state_sink {
    size_t pos, lo, hi;
    uint8_t *out; /* NULL: the CRC only */
    uint32_t crc;
} state_sink;

static void put(state_sink *k, const uint8_t *b, size_t n) {
    if (k->pos >= 16) k->crc = ie_crc32_update(k->crc, b, n);
    for (size_t i = 0; i < n; i++, k->pos++)
        if (k->out && k->pos >= k->lo && k->pos < k->hi) k->out[k->pos - k->lo] = b[i];
}

static void put32(state_sink *k, uint32_t v) {
    uint8_t b[4];
    ie_wr32(b, v);
    put(k, b, 4);
}

/* The whole encoding; the header's CRC field is `crc` (the caller's first pass computed it). */
static uint32_t emit(const ie_session *s, state_sink *k, uint32_t crc) {
    uint8_t head[8] = {0, 0, 0, 0, STATE_VERSION, 0, 0, 0};
    memcpy(head, STATE_MAGIC, 4);
    put(k, head, 8);
    put32(k, (uint32_t)state_bytes(s));
    put32(k, crc);
    put32(k, s->model->crc);
    put32(k, s->model->n_params);
    put32(k, (uint32_t)s->step);
    put32(k, (uint32_t)(s->step >> 32));
    for (uint32_t i = 0; i < s->model->n_params; i++) {
        const ie_param *q = &s->params[i];
        put32(k, q->numel);
        put32(k, q->mom != NULL);
        put32(k, (uint32_t)q->we);
        put32(k, (uint32_t)q->me);
        for (uint32_t j = 0; j < q->numel; j++) put32(k, (uint32_t)q->w[j]);
        if (q->mom)
            for (uint32_t j = 0; j < q->numel; j++) put32(k, (uint32_t)q->mom[j]);
    }
    return k->crc;
}

ie_status ie_session_digest(const ie_session *s, uint32_t *crc32) {
    if (!s || !crc32) return IE_ERR_ARG;
    state_sink k = {0, 0, 0, NULL, 0};
    *crc32 = emit(s, &k, 0);
    return IE_OK;
}

ie_status ie_session_read_state(const ie_session *s, size_t offset, void *buffer, size_t length) {
    if (!s || (!buffer && length)) return IE_ERR_ARG;
    size_t total = state_bytes(s);
    if (total > UINT32_MAX || offset > total || length > total - offset) return IE_ERR_ARG;
    uint32_t crc;
    ie_session_digest(s, &crc);
    state_sink k = {0, offset, offset + length, buffer, 0};
    emit(s, &k, crc);
    return IE_OK;
}

ie_status ie_session_save_state(const ie_session *s, void *buffer, size_t size) {
    if (!s || !buffer) return IE_ERR_ARG;
    size_t need = state_bytes(s);
    if (size < need || need > UINT32_MAX) return IE_ERR_NOMEM;
    return ie_session_read_state(s, 0, buffer, need);
}

static ie_status refuse(ie_session *s, const char *why) {
    ie_set_err(s->errmsg, "training state refused: %s", why);
    return IE_ERR_FORMAT;
}

static int mantissas_ok(const uint8_t *p, uint32_t n) {
    for (uint32_t k = 0; k < n; k++) {
        int32_t v = (int32_t)ie_rd32(p + 4 * (size_t)k);
        if (v > MAX_MANTISSA || v < -MAX_MANTISSA) return 0;
    }
    return 1;
}

static int exponent_ok(int32_t e) { return e >= -MAX_EXPONENT && e <= MAX_EXPONENT; }

/* Validates everything first, then copies, so a refused buffer leaves the session untouched. */
ie_status ie_session_load_state(ie_session *s, const void *buffer, size_t size) {
    if (!s) return IE_ERR_ARG;
    if (!buffer) return refuse(s, "buffer is NULL");
    const uint8_t *b = buffer;
    if (size < STATE_HEADER || memcmp(b, STATE_MAGIC, 4) != 0) return refuse(s, "not an intedge training state");
    if (b[4] != STATE_VERSION || b[5] || b[6] || b[7]) return refuse(s, "unknown version");
    if (ie_rd32(b + 8) != size) return refuse(s, "truncated or padded");
    if (ie_crc32(b + 16, size - 16) != ie_rd32(b + 12)) return refuse(s, "CRC mismatch (corrupt)");
    if (ie_rd32(b + 16) != s->model->crc) return refuse(s, "it was saved from a different model");
    if (ie_rd32(b + 20) != s->model->n_params) return refuse(s, "parameter count differs");
    if (size != state_bytes(s)) return refuse(s, "its size does not fit this session (trainable set or momentum differ)");
    const uint8_t *p = b + STATE_HEADER;
    for (uint32_t i = 0; i < s->model->n_params; i++) {
        const ie_param *q = &s->params[i];
        uint32_t n = ie_rd32(p);
        if (n != q->numel) return refuse(s, "a parameter's size differs");
        if (ie_rd32(p + 4) != (q->mom != NULL)) return refuse(s, "momentum presence differs (trainable set or momentum changed)");
        if (!exponent_ok((int32_t)ie_rd32(p + 8)) || !exponent_ok((int32_t)ie_rd32(p + 12))) return refuse(s, "exponent out of range");
        p += STATE_PARAM_HEADER;
        uint32_t count = q->mom ? 2 * n : n;
        if (!mantissas_ok(p, count)) return refuse(s, "mantissa out of range");
        p += (size_t)4 * count;
    }
    s->step = (uint64_t)ie_rd32(b + 24) | (uint64_t)ie_rd32(b + 28) << 32;
    p = b + STATE_HEADER;
    for (uint32_t i = 0; i < s->model->n_params; i++) {
        ie_param *q = &s->params[i];
        q->we = (int32_t)ie_rd32(p + 8);
        q->me = (int32_t)ie_rd32(p + 12);
        p += STATE_PARAM_HEADER;
        for (uint32_t k = 0; k < q->numel; k++, p += 4) q->w[k] = (int32_t)ie_rd32(p);
        if (q->mom)
            for (uint32_t k = 0; k < q->numel; k++, p += 4) q->mom[k] = (int32_t)ie_rd32(p);
        ie_param_written(q);
    }
    return IE_OK;
}
