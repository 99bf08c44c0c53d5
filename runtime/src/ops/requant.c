/* Requantization steps every op with an int32 accumulator shares. Large tensors split both
 * passes (max, then rounding) over the pool by element ranges: the max does not depend on order
 * and every element's draw is counted from its index, so the bytes do not depend on threads. */
#include "ops.h"

/* below this many elements waking the pool costs more than it saves */
#define SPLIT_MIN ((size_t)1 << 15)

typedef struct requant_job {
    const ie_kernels *k;
    int32_t *acc;
    size_t total, inner, channels;
    const int64_t *bias;
    int sh;
    ie_rounder r;
    int8_t *y;
    int16_t *y16; /* instead of y: int16 out (ie_tensor_is_q16) */
    uint64_t max[IE_MAX_THREADS];
} requant_job;

static void absmax_part(void *p, uint32_t part, uint32_t parts) {
    requant_job *j = p;
    size_t b, e;
    ie_part_range(j->total, part, parts, &b, &e);
    j->max[part] = j->k->absmax_s32_bias(j->acc, b, e, j->bias, j->inner, j->channels);
}

static void round_part(void *p, uint32_t part, uint32_t parts) {
    const requant_job *j = p;
    size_t b, e;
    ie_part_range(j->total, part, parts, &b, &e);
    j->k->requant_s32_bias_s8(j->acc, b, e, j->bias, j->inner, j->channels, j->sh, j->r.key, j->r.nearest, j->y);
}

/* Elements [b, e) of acc + bias[channel] shifted right by sh with their SR draws and clamped to
 * +-lim, into y16 or y32 (y32 may be acc itself: each element is read before it is written). The
 * scalar form for outputs wider than int8, in runs of one channel's bias; the common shift
 * branch-free (ie_srshift_apply, equal to ie_shift_round with ie_draw's draw). */
static void round_wide(const requant_job *j, size_t b, size_t e, int sh, int64_t lim, int16_t *y16, int32_t *y32) {
    int common = !j->r.nearest && sh >= 0 && sh <= 62;
    ie_srshift sp = ie_srshift_make(common ? sh : 0);
    for (size_t base = b, stop; base < e; base = stop) {
        size_t blk = base / j->inner;
        stop = (blk + 1) * j->inner < e ? (blk + 1) * j->inner : e;
        int64_t bias = j->bias ? j->bias[blk % j->channels] : 0;
        for (size_t i = base; i < stop; i++) {
            int64_t v = (int64_t)j->acc[i] + bias, q;
            if (common)
                q = ie_srshift_apply(v, sp, ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ j->r.key));
            else
                q = ie_shift_round(v, sh, ie_draw(j->r, (uint32_t)i));
            q = ie_clamp64(q, lim);
            if (y16)
                y16[i] = (int16_t)q;
            else
                y32[i] = (int32_t)q;
        }
    }
}

/* Evaluation's wide output (ie_wide_capture): the same sums rounded to IE_WIDE_BITS bits, by
 * the same draws, over the accumulator (evaluation has no backward to keep it for). One scalar
 * pass, on the output's node alone. */
static void capture_wide(const requant_job *j, uint64_t max, ie_wide_capture *w) {
    int sh = ie_requant_shift(max, IE_WIDE_BITS);
    round_wide(j, 0, j->total, sh, ((int64_t)1 << IE_WIDE_BITS) - 1, NULL, j->acc);
    w->q = j->acc;
    w->delta = sh - j->sh;
    w->hit = 1;
}

/* round_part to int16 (a Conv's output before a BatchNorm at bn_input_bits 16), every tier */
static void round16_part(void *p, uint32_t part, uint32_t parts) {
    const requant_job *j = p;
    size_t b, e;
    ie_part_range(j->total, part, parts, &b, &e);
    round_wide(j, b, e, j->sh, 32767, j->y16, NULL);
}

/* y (or y16) = requant(acc + bias[channel]); returns the shift. */
static int requant(const ie_exec *rt, int32_t *acc, size_t total, size_t inner, size_t channels,
                   const int64_t *bias, ie_rounder r, int8_t *y, int16_t *y16) {
    uint64_t t0 = ie_prof_start(rt->prof);
    requant_job j = {rt->k, acc, total, inner, channels, bias, 0, r, y, y16, {0}};
    ie_pool *pool = total >= SPLIT_MIN ? rt->pool : NULL;
    uint32_t parts = ie_pool_threads(pool);
    ie_pool_run(pool, absmax_part, &j);
    uint64_t max = 0;
    for (uint32_t p = 0; p < parts; p++) max = j.max[p] > max ? j.max[p] : max;
    j.sh = ie_requant_shift(max, y16 ? 15 : 7);
    ie_pool_run(pool, y16 ? round16_part : round_part, &j);
    if (rt->wide && y && rt->wide->y == y) capture_wide(&j, max, rt->wide);
    ie_prof_add(rt->prof, IE_PROF_ROUND, t0);
    return j.sh;
}

int32_t ie_requant_bias(const ie_exec *rt, int32_t *acc, size_t total, int32_t e_acc, size_t inner,
                        size_t channels, const int32_t *bias, int32_t eb, int64_t *bias_al, const ie_rounder r[3],
                        int8_t *y, int16_t *y16) {
    int32_t e = e_acc;
    if (bias) {
        int32_t e_work = eb - 31 > e ? eb - 31 : e;
        if (e_work > e) ie_shift_s32_s32(acc, total, e_work - e, 31, r[0], acc);
        for (size_t j = 0; j < channels; j++)
            bias_al[j] = ie_shift_round(bias[j], e_work - eb, ie_draw(r[1], (uint32_t)j));
        e = e_work;
    }
    return e + requant(rt, acc, total, inner, channels, bias ? bias_al : NULL, r[2], y, y16);
}

int ie_requant_acc(const ie_exec *rt, int32_t *acc, size_t total, ie_rounder r, int8_t *y) {
    return requant(rt, acc, total, 1, 1, NULL, r, y, NULL);
}
