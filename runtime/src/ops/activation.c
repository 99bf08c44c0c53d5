/* Pointwise activations, each tabulated once per call at the input's exponent: f and f' depend
 * on the int8 input alone, so both are 256-entry tables, and each element costs a lookup (and a
 * product by dY), then one requantization for the tensor.
 *
 * Kinds with a shape (Clip (ReLU6), LeakyRelu, HardSigmoid, HardSwish, Sigmoid) compute their
 * entries here as exact (or Q30) int64 at an exponent of their own. The smooth kinds (GELU in its
 * erf and tanh forms, Tanh, Erf, and powers: Sqrt, Reciprocal, Pow) get theirs from dyadic
 * elementary functions (ops/smooth.c, with the transformer ops).
 * attrs: 0 kind, 1-2 p0 (dyadic m, e), 3-4 p1 (dyadic), 5 flags (Clip: bit 0 has min, bit 1 has
 * max). Clip: p0 = min, p1 = max; LeakyRelu: p0 = alpha; HardSigmoid: p0 = alpha, p1 = beta
 * (HardSwish uses 1/6 and 1/2); Pow: p0 = the exponent p, with 2p an integer in [-8, 8]. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

enum { R_OUT = 1, R_DX };
enum { S_STAGE }; /* the smooth kinds' 256 dyadic entries before they meet at one exponent */

/* Per-tensor constants of f, prepared once per call from the input exponent. */
typedef struct act {
    int kind;
    int32_t ex;    /* input exponent */
    int32_t e;     /* exponent of f's values */
    int32_t ed;    /* exponent of f' values */
    int64_t lo, hi;    /* Clip bounds / HardSigmoid clamp, at exponent e (or et) */
    int64_t am, bm;    /* coefficients at the working exponent */
    int64_t slope_m;   /* HardSigmoid: f' = alpha inside the ramp, as a mantissa at exponent ed */
    int32_t et;        /* HardSigmoid/HardSwish: exponent of t = alpha x + beta */
    int shift_pos;     /* LeakyRelu: left shift of the positive branch */
    uint32_t flags;
} act;

static int64_t sat_shift(int64_t m, int s) { /* m * 2^-s, saturating the (rare) huge left shifts */
    /* a saturated bound or coefficient (2^50 at a unit within 24 bits of x's) is beyond any int8 x;
     * a shift by up to 40 of a large mantissa would overflow 2^63 (fuzz_model found one) */
    if (s < -40 || (s < 0 && (m >= (int64_t)1 << (62 + s) || m <= -((int64_t)1 << (62 + s)))))
        return m == 0 ? 0 : (m > 0 ? ((int64_t)1 << 50) : -((int64_t)1 << 50));
    return ie_shift_round(m, s, 0x80000000U);
}

static act prepare(const int32_t *attrs, int32_t ex) {
    act a = {0};
    ie_dyadic p0 = {attrs[1], attrs[2]}, p1 = {attrs[3], attrs[4]};
    a.kind = attrs[0];
    a.ex = ex;
    a.flags = (uint32_t)attrs[5];
    switch (a.kind) {
    case ACT_CLIP: { /* work at a unit fine enough for x and both bounds (within 24 bits of x) */
        int32_t e = ex;
        if ((a.flags & 1) && p0.m && p0.e < e) e = p0.e;
        if ((a.flags & 2) && p1.m && p1.e < e) e = p1.e;
        if (e < ex - 24) e = ex - 24;
        a.e = e;
        a.lo = (a.flags & 1) ? sat_shift(p0.m, e - p0.e) : INT64_MIN;
        a.hi = (a.flags & 2) ? sat_shift(p1.m, e - p1.e) : INT64_MAX;
        a.ed = -1; /* the slope counts halves (clip_slope) */
        break;
    }
    case ACT_LEAKY_RELU: {
        int32_t ea = p0.e < 0 ? p0.e : 0;
        a.e = ex + ea;
        a.shift_pos = -ea;
        a.am = (int64_t)p0.m * ((int64_t)1 << (p0.e - ea));
        a.ed = ea;
        break;
    }
    case ACT_HARD_SIGMOID:
    case ACT_HARD_SWISH: {
        if (a.kind == ACT_HARD_SWISH) { /* alpha = 1/6, beta = 1/2 */
            p0.m = 715827883; p0.e = -32;
            p1.m = 1; p1.e = -1;
        }
        /* t = alpha x + beta at et = alpha.e + ex (beta aligned there, bounded) */
        a.et = p0.e + ex;
        if (a.et < -50) a.et = -50;
        a.am = sat_shift(p0.m, a.et - (p0.e + ex));
        a.bm = sat_shift(p1.m, a.et - p1.e);
        a.hi = ((int64_t)1 << (-a.et > 50 ? 50 : (-a.et < 0 ? 0 : -a.et))); /* 1.0 at et */
        a.lo = 0;
        a.e = a.kind == ACT_HARD_SIGMOID ? a.et : ex + a.et;
        a.ed = a.kind == ACT_HARD_SIGMOID ? p0.e : a.et;
        a.slope_m = p0.m;
        break;
    }
    case ACT_SIGMOID:
        a.e = -30;
        a.ed = -30;
        break;
    }
    return a;
}

static int64_t clamp_range(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Clip (ReLU6) as a closed form on values, not on an act (stores through int8_t pointers may
 * alias a struct, which stops the loops from vectorizing): x 2^k clamped, and its 0/1 slope. */
static inline int64_t clip_value(int8_t q, int k, int64_t lo, int64_t hi) {
    return clamp_range((int64_t)q * ((int64_t)1 << k), lo, hi);
}

/* In halves (exponent -1): 2 inside, 1 on a bound, 0 outside. An int8 x on a bound stands for a
 * pre-activation within one ulp of it, on either side about equally often (SR sends a small
 * positive value to 0 with probability 1 - v/ulp): a slope of 0 there (or 1) would bias the
 * gradient, a whole block's by 5-10% in MobileNetV2 (docs/fidelity.md). */
static inline int64_t clip_slope(int8_t q, int k, int64_t lo, int64_t hi) {
    int64_t v = (int64_t)q * ((int64_t)1 << k);
    return (v > lo && v < hi) * 2 + (v == lo) + (v == hi);
}

static int64_t f_value(const act *a, int8_t q) {
    switch (a->kind) {
    case ACT_CLIP: return clip_value(q, a->ex - a->e, a->lo, a->hi);
    case ACT_LEAKY_RELU: return q >= 0 ? (int64_t)q << a->shift_pos : q * a->am;
    case ACT_HARD_SIGMOID: return clamp_range(a->am * q + a->bm, a->lo, a->hi);
    case ACT_HARD_SWISH: return q * clamp_range(a->am * q + a->bm, a->lo, a->hi);
    default: return ie_sigmoid_q30(q, a->ex);
    }
}

static int64_t f_slope(const act *a, int8_t q) {
    switch (a->kind) {
    case ACT_CLIP: return clip_slope(q, a->ex - a->e, a->lo, a->hi);
    case ACT_LEAKY_RELU: return q > 0 ? (int64_t)1 << a->shift_pos : a->am;
    case ACT_HARD_SIGMOID: {
        int64_t t = a->am * q + a->bm;
        return t > a->lo && t < a->hi ? a->slope_m : 0;
    }
    case ACT_HARD_SWISH: { /* 0 below -3, 1 above 3, (2x + 3) / 6 between */
        int64_t t = a->am * q + a->bm;
        if (t <= 0) return 0;
        if (t >= a->hi) return a->hi;
        return 2 * a->am * q + a->bm;
    }
    default: {
        int64_t s = ie_sigmoid_q30(q, a->ex);
        return (s * (((int64_t)1 << 30) - s)) >> 30;
    }
    }
}

/* f (slope 0) or f' (slope 1) at the 256 int8 inputs (q = -128..127 at index q + 128) as int64 at
 * one exponent, which it returns; stage holds 256 dyadics for the smooth kinds. */
int32_t ie_act_table(const int32_t *attrs, int32_t ex, int slope, ie_dyadic *stage, int64_t tab[256]) {
    act a = prepare(attrs, ex);
    if (a.kind < ACT_GELU) {
        for (int q = -128; q < 128; q++) tab[q + 128] = slope ? f_slope(&a, (int8_t)q) : f_value(&a, (int8_t)q);
        return slope ? a.ed : a.e;
    }
    ie_dyadic p0 = {attrs[1], attrs[2]};
    return ie_smooth_table(a.kind, p0, ex, slope, stage, tab);
}

static ie_status act_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (x->kind == IE_KIND_PARAM || x->numel != y->numel) { ie_set_err(err, "input and output must match"); return IE_ERR_FORMAT; }
    if (nd->attrs[0] < 0 || nd->attrs[0] >= ACT_COUNT) {
        ie_set_err(err, "unknown activation %" PRId32, nd->attrs[0]);
        return IE_ERR_FORMAT;
    }
    if (nd->attrs[2] < -100 || nd->attrs[2] > 100 || nd->attrs[4] < -100 || nd->attrs[4] > 100) {
        ie_set_err(err, "parameter exponent out of range");
        return IE_ERR_FORMAT;
    }
    if ((nd->attrs[0] == ACT_LEAKY_RELU || nd->attrs[0] == ACT_HARD_SIGMOID) && (nd->attrs[1] <= 0 || nd->attrs[2] > 0)) {
        ie_set_err(err, "alpha must be positive and below 2^31");
        return IE_ERR_UNSUPPORTED;
    }
    ie_dyadic p0 = {nd->attrs[1], nd->attrs[2]};
    if (nd->attrs[0] == ACT_POW && ie_pow_halves_of(p0) == INT32_MIN) {
        ie_set_err(err, "the exponent of Pow must be a multiple of 1/2 within +-%d", IE_POW_MAX_HALVES / 2);
        return IE_ERR_UNSUPPORTED;
    }
    return IE_OK;
}

static void act_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int bwd = ie_plan_requires_grad(p, nd->in[0]);
    if (bwd) ie_plan_keep(p, nd->in[0], B);
    if (nd->attrs[0] >= ACT_GELU) ie_plan_node_scratch(p, node, S_STAGE, 256 * sizeof(ie_dyadic), F, bwd ? B : F);
}

/* f and f' depend on the int8 input alone: both are tabulated once per call (256 values), so
 * each element costs a lookup (and a product by dY), then the requantization. Returns the shift. */
IE_HOT static int act_apply(const int64_t tab[256], const int8_t *q, const int8_t *dy, size_t n, ie_rounder r,
                            int8_t *y) {
    int sh;
    if (dy) IE_REQUANT_EACH(n, i, dy[i] * tab[q[i] + 128], r, y, sh);
    else IE_REQUANT_EACH(n, i, tab[q[i] + 128], r, y, sh);
    return sh;
}

/* Clip computed in place of the lookups (a table lookup is a gather in vector code, slow on
 * x86): the same values, the same bytes. x 2^k stays below 127 2^24, so when the bounds let the
 * clamped values fit int32 (lo, hi saturated to int32 change no comparison with them), both
 * passes run in 32-bit lanes (IE_REQUANT_EACH32). */
#define CLIP32(i) (dy ? dy[i] * (int32_t)clip_slope(q[i], k, lo, hi) : (int32_t)clip_value(q[i], k, lo, hi))

IE_HOT static int clip_apply32(const act *a, const int8_t *q, const int8_t *dy, size_t n, ie_rounder r, int8_t *y) {
    int sh, k = a->ex - a->e;
    int64_t lo = a->lo, hi = a->hi;
    if (lo > INT32_MAX || hi < -INT32_MAX) {
        if (dy) IE_REQUANT_EACH(n, i, dy[i] * clip_slope(q[i], k, lo, hi), r, y, sh);
        else IE_REQUANT_EACH(n, i, clip_value(q[i], k, lo, hi), r, y, sh);
        return sh;
    }
    lo = lo < -INT32_MAX ? -INT32_MAX : lo;
    hi = hi > INT32_MAX ? INT32_MAX : hi;
    IE_REQUANT_EACH32(n, i, CLIP32(i), r, y, sh);
    return sh;
}
#undef CLIP32

/* Clip in 16-bit lanes (32 per AVX-512 vector), for the usual case. Its values are multiples of
 * 2^t, t the common trailing zeros of 2^k and the bounds (ReLU6: x's unit, so t = k), so dividing
 * x 2^k and the bounds by 2^t changes no comparison and only shifts the values' shift by t; then
 * when x 2^(k - t) fits the lanes (k - t <= 7: |x 2^(k-t)| <= 2^14, and |dY slope| <= 256) and the
 * bounds lie within +-32767 (saturated there, a bound beyond x's reach compares the same), the
 * same bytes as clip_apply32 come from 16-bit lanes:
 * - forward: x 2^k clamped is monotone in x, so max |value| is at the int8 min or max of x, and
 *   the values the data can take are those of [min, max]: when all of them are exact at the shift
 *   (ReLU6's always are), every rounding mode gives value 2^-shift; otherwise clip_apply32 runs;
 * - dX: dY slope rounds only where a slope of 1 (x on a bound) meets an odd dY, so the shift runs
 *   on every element and only those, found a block at a time, take their draw. */
static int16_t sat16(int64_t v) { return (int16_t)(v < -32767 ? -32767 : (v > 32767 ? 32767 : v)); }
static inline int16_t clip16_value(int8_t q, int k, int16_t lo, int16_t hi) {
    int16_t v = (int16_t)(q * (1 << k));
    return v < lo ? lo : (v > hi ? hi : v);
}
static inline int16_t clip16_slope(int8_t q, int k, int16_t lo, int16_t hi) {
    int16_t v = (int16_t)(q * (1 << k));
    return (int16_t)((v > lo && v < hi) * 2 + (v == lo) + (v == hi));
}
static inline int8_t clamp127(int32_t v) { return (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v)); }

#define CLIP16_BLOCK 64

/* The values here are the true ones over 2^t: the shift is t more, unless all are 0. */
IE_HOT static int clip_forward16(int k, int t, int16_t lo, int16_t hi, const int8_t *q, size_t n, int8_t *y,
                                 int *shift) {
    int8_t qmin = 127, qmax = -128;
    for (size_t i = 0; i < n; i++) {
        qmin = q[i] < qmin ? q[i] : qmin;
        qmax = q[i] > qmax ? q[i] : qmax;
    }
    uint32_t max = 0, bits = 0;
    for (int v = qmin; v <= qmax; v++) {
        int32_t value = clip16_value((int8_t)v, k, lo, hi);
        uint32_t a = value < 0 ? 0u - (uint32_t)value : (uint32_t)value;
        max = a > max ? a : max;
        bits |= (uint32_t)value;
    }
    int s = ie_requant_shift(max, 7);
    if (!ie_shift_is_exact(bits, s)) return 0;
    if (s <= 0)
        for (size_t i = 0; i < n; i++) y[i] = clamp127(clip16_value(q[i], k, lo, hi) * (1 << -s));
    else
        for (size_t i = 0; i < n; i++) y[i] = clamp127(clip16_value(q[i], k, lo, hi) >> s);
    *shift = max ? s + t : s;
    return 1;
}

/* dX of elements [b, b + len) at a shift s >= 1: dY slope 2^-s, where it has fraction bits with
 * the element's draw (about one element in 60 has them in MobileNetV2's ReLU6; they are looked
 * for 8 flags a word). Returns the OR of the block's |dY slope|, whose bit
 * length is the max's. */
IE_INLINE uint16_t clip_dx_block(int k, int16_t lo, int16_t hi, const int8_t *restrict q, const int8_t *restrict dy,
                                 size_t b, size_t len, int s, ie_rounder r, int8_t *restrict dx) {
    uint16_t frac = (uint16_t)((1u << s) - 1), magnitudes = 0;
    uint8_t rounds[CLIP16_BLOCK] = {0};
    for (size_t i = 0; i < len; i++) {
        int16_t v = (int16_t)(dy[b + i] * clip16_slope(q[b + i], k, lo, hi));
        magnitudes |= (uint16_t)(v < 0 ? -v : v);
        rounds[i] = (uint8_t)((uint16_t)v & frac);
        dx[b + i] = (int8_t)(v >> s); /* |v| <= 254, or 256 (dY -128) with s = 2: within +-127 */
    }
    for (size_t w = 0; w < len; w += 8) { /* 8 flags a word */
        uint64_t any;
        memcpy(&any, rounds + w, 8);
        for (size_t i = w; any && i < w + 8 && i < len; i++)
            if (rounds[i]) {
                int16_t v = (int16_t)(dy[b + i] * clip16_slope(q[b + i], k, lo, hi));
                dx[b + i] = clamp127(ie_srshift32(v, s, ie_draw(r, (uint32_t)(b + i))));
            }
    }
    return magnitudes;
}

/* One pass in the usual case: dY's max is about 127 and some slope 2 meets it, so the shift is 1;
 * the blocks run at 1 while they find the max, and again at the real shift when it is not 1. */
IE_HOT static int clip_backward16(int k, int16_t lo, int16_t hi, const int8_t *q, const int8_t *dy, size_t n,
                                  ie_rounder r, int8_t *dx) {
    uint16_t magnitudes = 0;
    for (size_t b = 0; b < n; b += CLIP16_BLOCK)
        magnitudes |= clip_dx_block(k, lo, hi, q, dy, b, n - b < CLIP16_BLOCK ? n - b : CLIP16_BLOCK, 1, r, dx);
    int s = ie_requant_shift(magnitudes, 7);
    if (s == 1) return s;
    if (s <= 0) {
        for (size_t i = 0; i < n; i++) dx[i] = clamp127(dy[i] * clip16_slope(q[i], k, lo, hi) * (1 << -s));
        return s;
    }
    for (size_t b = 0; b < n; b += CLIP16_BLOCK)
        clip_dx_block(k, lo, hi, q, dy, b, n - b < CLIP16_BLOCK ? n - b : CLIP16_BLOCK, s, r, dx);
    return s;
}

/* The trailing zeros t <= k common to 2^k and a bound b (0 divides by any power of two). */
static int common_zeros(int t, int64_t b) {
    while (t > 0 && (b & (((int64_t)1 << t) - 1)) != 0) t--;
    return t;
}

static int clip_apply(const act *a, const int8_t *q, const int8_t *dy, size_t n, ie_rounder r, int8_t *y) {
    int k = a->ex - a->e, t = k, sh;
    if (a->flags & 1) t = common_zeros(t, a->lo);
    if (a->flags & 2) t = common_zeros(t, a->hi);
    int64_t lo = (a->flags & 1) ? a->lo / ((int64_t)1 << t) : INT64_MIN; /* exact divisions */
    int64_t hi = (a->flags & 2) ? a->hi / ((int64_t)1 << t) : INT64_MAX;
    if (k - t <= 7 && lo <= 32767 && hi >= -32767) {
        if (dy) return clip_backward16(k - t, sat16(lo), sat16(hi), q, dy, n, r, y);
        if (clip_forward16(k - t, t, sat16(lo), sat16(hi), q, n, y, &sh)) return sh;
    }
    return clip_apply32(a, q, dy, n, r, y);
}

int32_t ie_act_run(const int32_t *attrs, int32_t ex, const int8_t *q, const int8_t *dy, size_t n, ie_rounder r,
                   ie_dyadic *stage, int path, int8_t *y) {
    act a = prepare(attrs, ex);
    int32_t e = dy ? a.ed : a.e;
    if (IE_FAST_PATHS && a.kind == ACT_CLIP && path == IE_ACT_FAST) return e + clip_apply(&a, q, dy, n, r, y);
    if (IE_FAST_PATHS && a.kind == ACT_CLIP && path == IE_ACT_CLIP32) return e + clip_apply32(&a, q, dy, n, r, y);
    int64_t tab[256];
    e = ie_act_table(attrs, ex, dy != NULL, stage, tab);
    return e + act_apply(tab, q, dy, n, r, y);
}

static void act_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    size_t n = (size_t)s->n * s->model->tensors[nd->in[0]].numel;
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, R_OUT));
    y->e = ie_act_run(nd->attrs, x->e, x->q, NULL, n, r, s->nodes[node].scratch[S_STAGE],
                      IE_FAST_PATHS ? IE_ACT_FAST : IE_ACT_TABLE, y->q);
}

static void act_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (!x->requires_grad) return;
    size_t n = (size_t)s->n * s->model->tensors[nd->in[0]].numel;
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, R_DX));
    x->ge = y->ge + ie_act_run(nd->attrs, x->e, x->q, y->g, n, r, s->nodes[node].scratch[S_STAGE],
                               IE_FAST_PATHS ? IE_ACT_FAST : IE_ACT_TABLE, x->g);
}

const ie_op_def ie_op_activation = {"Activation", 1, 1, 1, act_check, act_plan, act_forward, act_backward};
