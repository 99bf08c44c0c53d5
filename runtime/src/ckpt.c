/* Training state encoding (the exact part of a checkpoint): step counter, master weights and
 * optimizer state, tied to the model by its CRC. The layout (little-endian, docs/format.md):
 *   "IES1" u8 version, 3 x 0 | u32 size | u32 crc of [16, size) | u32 model crc | u32 params |
 *   u64 step | version 2: u32 optimizer, u32 0 |
 *   per parameter, version 1 (SGD): u32 numel, u32 has_momentum, i32 w_exp, i32 m_exp,
 *     numel x i32 master, [numel x i32 momentum]
 *   version 2 (AdamW): u32 numel, u32 arrays (1: m, 2: v), i32 w_exp, i32 m_exp, i32 v_exp, u32 0,
 *     numel x i32 master, [numel x i32 m], [numel x i64 v]
 * SGD sessions write version 1, so their states and digests stay what they were. */
#include <string.h>

#include "internal.h"

#define STATE_MAGIC "IES1"
#define MAX_MANTISSA (1 << 30)
#define MAX_EXPONENT 4096

/* What a version's layout holds: header sizes, and whether v and the optimizer field appear. */
typedef struct state_format {
    uint8_t version;
    uint32_t header, param_header;
} state_format;

static const state_format V1 = {1, 32, 16}, V2 = {2, 40, 24};

static const state_format *format_of(const ie_session *s) { return s->cfg.optimizer == IE_OPTIM_SGD ? &V1 : &V2; }

static size_t state_bytes(const ie_session *s) {
    const state_format *f = format_of(s);
    size_t n = f->header;
    for (uint32_t i = 0; i < s->model->n_params; i++) {
        const ie_param *q = &s->params[i];
        n += f->param_header + (size_t)4 * q->numel * (q->mom ? 2 : 1) + (q->v ? (size_t)8 * q->numel : 0);
    }
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
    const state_format *f = format_of(s);
    uint8_t head[8] = {0, 0, 0, 0, f->version, 0, 0, 0};
    memcpy(head, STATE_MAGIC, 4);
    put(k, head, 8);
    put32(k, (uint32_t)state_bytes(s));
    put32(k, crc);
    put32(k, s->model->crc);
    put32(k, s->model->n_params);
    put32(k, (uint32_t)s->step);
    put32(k, (uint32_t)(s->step >> 32));
    if (f == &V2) {
        put32(k, (uint32_t)s->cfg.optimizer);
        put32(k, 0);
    }
    for (uint32_t i = 0; i < s->model->n_params; i++) {
        const ie_param *q = &s->params[i];
        put32(k, q->numel);
        put32(k, (q->mom != NULL) | (q->v != NULL) << 1);
        put32(k, (uint32_t)q->we);
        put32(k, (uint32_t)q->me);
        if (f == &V2) {
            put32(k, (uint32_t)q->ve);
            put32(k, 0);
        }
        for (uint32_t j = 0; j < q->numel; j++) put32(k, (uint32_t)q->w[j]);
        if (q->mom)
            for (uint32_t j = 0; j < q->numel; j++) put32(k, (uint32_t)q->mom[j]);
        if (q->v)
            for (uint32_t j = 0; j < q->numel; j++) {
                put32(k, (uint32_t)q->v[j]);
                put32(k, (uint32_t)((uint64_t)q->v[j] >> 32));
            }
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

/* v values are below 2^62 and not negative */
static int seconds_ok(const uint8_t *p, uint32_t n) {
    for (uint32_t k = 0; k < n; k++)
        if (ie_rd32(p + 8 * (size_t)k + 4) >> 30) return 0;
    return 1;
}

static const char *const OPTIMIZER_NAMES[] = {"SGD", "AdamW"};

/* Validates everything first, then copies, so a refused buffer leaves the session untouched. */
ie_status ie_session_load_state(ie_session *s, const void *buffer, size_t size) {
    if (!s) return IE_ERR_ARG;
    if (!buffer) return refuse(s, "buffer is NULL");
    const uint8_t *b = buffer;
    if (size < V1.header || memcmp(b, STATE_MAGIC, 4) != 0) return refuse(s, "not an intedge training state");
    if ((b[4] != V1.version && b[4] != V2.version) || b[5] || b[6] || b[7]) return refuse(s, "unknown version");
    const state_format *f = b[4] == V1.version ? &V1 : &V2;
    if (size < f->header || ie_rd32(b + 8) != size) return refuse(s, "truncated or padded");
    if (!ie_crc_ok(b + 16, size - 16, ie_rd32(b + 12))) return refuse(s, "CRC mismatch (corrupt)");
    if (ie_rd32(b + 16) != s->model->crc) return refuse(s, "it was saved from a different model");
    if (ie_rd32(b + 20) != s->model->n_params) return refuse(s, "parameter count differs");
    uint32_t optimizer = f == &V1 ? IE_OPTIM_SGD : ie_rd32(b + 32);
    if (optimizer > IE_OPTIM_ADAMW || (f == &V2 && ie_rd32(b + 36))) return refuse(s, "unknown optimizer");
    if (optimizer != (uint32_t)s->cfg.optimizer || f != format_of(s)) {
        ie_set_err(s->errmsg, "training state refused: it was saved by an %s session; this session runs %s",
                   OPTIMIZER_NAMES[optimizer], OPTIMIZER_NAMES[s->cfg.optimizer]);
        return IE_ERR_FORMAT;
    }
    if (size != state_bytes(s)) return refuse(s, "its size does not fit this session (trainable set or momentum differ)");
    const uint8_t *p = b + f->header;
    for (uint32_t i = 0; i < s->model->n_params; i++) {
        const ie_param *q = &s->params[i];
        uint32_t n = ie_rd32(p);
        if (n != q->numel) return refuse(s, "a parameter's size differs");
        if (ie_rd32(p + 4) != ((q->mom != NULL) | (uint32_t)(q->v != NULL) << 1))
            return refuse(s, "optimizer state presence differs (trainable set or momentum changed)");
        if (!exponent_ok((int32_t)ie_rd32(p + 8)) || !exponent_ok((int32_t)ie_rd32(p + 12)) ||
            (f == &V2 && (!exponent_ok((int32_t)ie_rd32(p + 16)) || ie_rd32(p + 20))))
            return refuse(s, "exponent out of range");
        p += f->param_header;
        uint32_t count = q->mom ? 2 * n : n;
        if (!mantissas_ok(p, count)) return refuse(s, "mantissa out of range");
        p += (size_t)4 * count;
        if (q->v) {
            if (!seconds_ok(p, n)) return refuse(s, "second moment out of range");
            p += (size_t)8 * n;
        }
    }
    s->step = (uint64_t)ie_rd32(b + 24) | (uint64_t)ie_rd32(b + 28) << 32;
    p = b + f->header;
    for (uint32_t i = 0; i < s->model->n_params; i++) {
        ie_param *q = &s->params[i];
        q->we = (int32_t)ie_rd32(p + 8);
        q->me = (int32_t)ie_rd32(p + 12);
        if (f == &V2) q->ve = (int32_t)ie_rd32(p + 16);
        p += f->param_header;
        for (uint32_t k = 0; k < q->numel; k++, p += 4) q->w[k] = (int32_t)ie_rd32(p);
        if (q->mom)
            for (uint32_t k = 0; k < q->numel; k++, p += 4) q->mom[k] = (int32_t)ie_rd32(p);
        if (q->v)
            for (uint32_t k = 0; k < q->numel; k++, p += 8) q->v[k] = (int64_t)((uint64_t)ie_rd32(p) | (uint64_t)ie_rd32(p + 4) << 32);
        ie_param_written(q);
    }
    return IE_OK;
}
