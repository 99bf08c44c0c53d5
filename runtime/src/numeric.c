#include "numeric.h"

#include <string.h>

#include "threads.h"

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ULL;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}

uint32_t ie_stream_key(uint64_t seed, uint32_t stream, uint64_t step) {
    uint64_t k = splitmix64(seed ^ splitmix64(((uint64_t)stream << 32) ^ splitmix64(step)));
    return (uint32_t)(k >> 32);
}

static inline uint32_t abs32(int32_t v) { return v < 0 ? 0u - (uint32_t)v : (uint32_t)v; }

/* ---- passes split over a pool ----------------------------------------------------------------
 * A pass over [0, n) runs as index ranges, one per part of the pool. Every element's draw counts
 * from its own index and maxima combine by max, so the bytes do not depend on the split. */
typedef uint64_t (*range_fn)(const void *ctx, size_t begin, size_t end);

typedef struct split_job {
    ie_range2_fn fn;
    const void *ctx;
    size_t n;
    uint64_t max[IE_MAX_THREADS][2];
} split_job;

/* below this many elements waking the pool costs more than it saves */
#define SPLIT_MIN ((size_t)1 << 15)
#define SPLIT_ALIGN 64 /* elements: parts do not share output cache lines */

static void split_part(void *ctx, uint32_t part, uint32_t parts) {
    split_job *j = ctx;
    size_t b, e;
    ie_part_range(j->n / SPLIT_ALIGN, part, parts, &b, &e);
    j->fn(j->ctx, b * SPLIT_ALIGN, part + 1 == parts ? j->n : e * SPLIT_ALIGN, j->max[part]);
}

void ie_split_max2(ie_pool *pool, size_t n, ie_range2_fn fn, const void *ctx, uint64_t max[2]) {
#if !defined(IE_HAVE_PTHREADS) /* no pool to split over (bare metal): save the flash */
    pool = NULL;
#endif
    if (!pool || n < SPLIT_MIN) {
        fn(ctx, 0, n, max);
        return;
    }
    split_job j = {fn, ctx, n, {{0}}};
    ie_pool_run(pool, split_part, &j);
    max[0] = max[1] = 0;
    for (uint32_t p = 0; p < ie_pool_threads(pool); p++)
        for (int k = 0; k < 2; k++) max[k] = j.max[p][k] > max[k] ? j.max[p][k] : max[k];
}

/* A pass with one maximum, through ie_split_max2. */
typedef struct one_max {
    range_fn fn;
    const void *ctx;
} one_max;

static void one_max_part(const void *ctx, size_t b, size_t e, uint64_t max[2]) {
    const one_max *o = ctx;
    max[0] = o->fn(o->ctx, b, e);
    max[1] = 0;
}

/* Runs fn over [0, n) and returns the largest of what the parts return. */
static uint64_t split_max(ie_pool *pool, size_t n, range_fn fn, const void *ctx) {
    one_max o = {fn, ctx};
    uint64_t max[2];
    ie_split_max2(pool, n, one_max_part, &o, max);
    return max[0];
}

/* The same loops over int32 and int64 inputs: written once, instantiated per type. Each works on
 * an index range [b, e) (the draws count from the global index) and returns the max |value| it
 * read or wrote; the whole-array entry points ignore it, and the compiler drops its computation. */
#define DEFINE_ABSMAX(name, type)                                                                  \
    static inline uint64_t name##_range(const type *x, size_t b, size_t e) {                       \
        uint64_t m = 0;                                                                            \
        for (size_t i = b; i < e; i++)                                                             \
            if (ie_abs64(x[i]) > m) m = ie_abs64(x[i]);                                            \
        return m;                                                                                  \
    }                                                                                              \
    IE_HOT uint64_t name(const type *x, size_t n) { return name##_range(x, 0, n); }
DEFINE_ABSMAX(ie_absmax_s64, int64_t)
DEFINE_ABSMAX(ie_absmax_s32, int32_t)

IE_HOT static uint64_t absmax_s64_part(const void *x, size_t b, size_t e) { return ie_absmax_s64_range(x, b, e); }

uint64_t ie_absmax_s64_split(ie_pool *pool, const int64_t *x, size_t n) { return split_max(pool, n, absmax_s64_part, x); }

#if IE_FAST_PATHS
IE_HOT static uint64_t absmax_s32_part(const void *x, size_t b, size_t e) { return ie_absmax_s32_range(x, b, e); }

uint64_t ie_absmax_s32_split(ie_pool *pool, const int32_t *x, size_t n) { return split_max(pool, n, absmax_s32_part, x); }
#endif

/* y[i] = v clamped to +-lim (which out_type holds), tracking the extremes lo, hi of y. */
#define PUT_CLAMPED(out_type, y, i, v, lim, lo, hi)                                                \
    do {                                                                                           \
        int32_t q_ = (int32_t)((v) > (lim) ? (lim) : ((v) < -(lim) ? -(lim) : (v)));               \
        (y)[i] = (out_type)q_;                                                                     \
        (lo) = q_ < (lo) ? q_ : (lo);                                                              \
        (hi) = q_ > (hi) ? q_ : (hi);                                                              \
    } while (0)

/* Three branch-free loops (they vectorize) before the general one, all equal to ie_shift_round:
 * an exact left shift (s <= 0: no draw), an int32 input shifted by 1..31 bits in 32-bit lanes
 * (ie_srshift32: 16 lanes per AVX-512 vector, not 8), and ie_srshift for shifts of 0..62. The
 * hash input i * golden is stepped in 32 bits (fewer vector ops than from the 64-bit index). */
#define DEFINE_SHIFT(name, in_type, out_type)                                                      \
    static inline uint64_t name##_range(const in_type *x, size_t b, size_t e, int s, int bits, ie_rounder r, \
                                        out_type *y) {                                             \
        int64_t lim = ((int64_t)1 << bits) - 1;                                                    \
        int32_t lo = 0, hi = 0;                                                                    \
        uint32_t h = (uint32_t)b * 0x9E3779B9U;                                                    \
        if (IE_FAST_PATHS && s <= 0 && s >= -62) {                                                 \
            int64_t m = (int64_t)1 << -s;                                                          \
            for (size_t i = b; i < e; i++) {                                                       \
                int64_t v = x[i] * m;                                                              \
                PUT_CLAMPED(out_type, y, i, v, lim, lo, hi);                                       \
            }                                                                                      \
        } else if (IE_FAST_PATHS && sizeof(in_type) == 4 && bits <= 31 && s >= 1 && s <= 31 && !r.nearest) { \
            int32_t lim32 = (int32_t)lim;                                                          \
            for (size_t i = b; i < e; i++, h += 0x9E3779B9U) {                                     \
                int32_t v = ie_srshift32((int32_t)x[i], s, ie_hash32(h ^ r.key));                  \
                PUT_CLAMPED(out_type, y, i, v, lim32, lo, hi);                                     \
            }                                                                                      \
        } else if (s >= 0 && s <= 62 && !r.nearest) {                                             \
            ie_srshift p = ie_srshift_make(s);                                                     \
            for (size_t i = b; i < e; i++, h += 0x9E3779B9U) {                                     \
                int64_t v = ie_srshift_apply(x[i], p, ie_hash32(h ^ r.key));                       \
                PUT_CLAMPED(out_type, y, i, v, lim, lo, hi);                                       \
            }                                                                                      \
        } else                                                                                     \
            for (size_t i = b; i < e; i++) {                                                       \
                int64_t v = ie_shift_round(x[i], s, ie_draw(r, (uint32_t)i));                      \
                PUT_CLAMPED(out_type, y, i, v, lim, lo, hi);                                       \
            }                                                                                      \
        return abs32(lo) > abs32(hi) ? abs32(lo) : abs32(hi);                                      \
    }                                                                                              \
    IE_HOT void name(const in_type *x, size_t n, int s, int bits, ie_rounder r, out_type *y) {     \
        name##_range(x, 0, n, s, bits, r, y);                                                      \
    }
DEFINE_SHIFT(ie_shift_s64_s32, int64_t, int32_t)
DEFINE_SHIFT(ie_shift_s32_s32, int32_t, int32_t)
DEFINE_SHIFT(ie_shift_s64_s8_bits, int64_t, int8_t)
DEFINE_SHIFT(ie_shift_s32_s8_bits, int32_t, int8_t)

typedef struct shift_job {
    const void *x;
    void *y;
    int s, bits;
    ie_rounder r;
} shift_job;

/* The split form of a shift above, for the optimizer's large arrays. */
#define DEFINE_SHIFT_SPLIT(name, in_type, out_type)                                                \
    IE_HOT static uint64_t name##_part(const void *ctx, size_t b, size_t e) {                      \
        const shift_job *j = ctx;                                                                  \
        return name##_range(j->x, b, e, j->s, j->bits, j->r, j->y);                                \
    }                                                                                              \
    uint64_t name##_split(ie_pool *pool, const in_type *x, size_t n, int s, int bits, ie_rounder r, out_type *y) { \
        shift_job j = {x, y, s, bits, r};                                                          \
        return split_max(pool, n, name##_part, &j);                                                \
    }
DEFINE_SHIFT_SPLIT(ie_shift_s64_s32, int64_t, int32_t)

typedef struct inplace_job {
    const int64_t *x;
    int32_t *y;
    size_t base;
    int s, bits;
    ie_rounder r;
} inplace_job;

IE_HOT static uint64_t inplace_part(const void *ctx, size_t b, size_t e) {
    const inplace_job *j = ctx;
    return ie_shift_s64_s32_range(j->x, j->base + b, j->base + e, j->s, j->bits, j->r, j->y);
}

/* No call reads what it writes: the first IE_INPLACE_HEAD elements go through a local copy; then
 * each chunk [c, 2c) reads bytes [8c, 16c) and writes [4c, 8c), the int64 elements [c/2, c) that
 * the calls before consumed. The draws count from the global index: ie_shift_s64_s32_split's bytes. */
#define IE_INPLACE_HEAD 64
uint64_t ie_shift_s64_s32_inplace_split(ie_pool *pool, int64_t *x, size_t n, int s, int bits, ie_rounder r) {
    int32_t head[IE_INPLACE_HEAD], *y = (int32_t *)(void *)x;
    size_t c = n < IE_INPLACE_HEAD ? n : IE_INPLACE_HEAD;
    uint64_t max = ie_shift_s64_s32_range(x, 0, c, s, bits, r, head);
    memcpy(y, head, sizeof(int32_t) * c);
    for (; c < n; c *= 2) {
        size_t e = 2 * c < n ? 2 * c : n;
        inplace_job j = {x, y, c, s, bits, r};
        uint64_t m = split_max(pool, e - c, inplace_part, &j);
        max = m > max ? m : max;
    }
    return max;
}
DEFINE_SHIFT_SPLIT(ie_shift_s32_s8_bits, int32_t, int8_t)
#if IE_FAST_PATHS
DEFINE_SHIFT_SPLIT(ie_shift_s32_s32, int32_t, int32_t)
#endif

void ie_shift_s32_s8(const int32_t *x, size_t n, int s, ie_rounder r, int8_t *y) { ie_shift_s32_s8_bits(x, n, s, 7, r, y); }

void ie_shift_s64_s8(const int64_t *x, size_t n, int s, ie_rounder r, int8_t *y) { ie_shift_s64_s8_bits(x, n, s, 7, r, y); }

int ie_requant_s64_s8(const int64_t *x, size_t n, ie_rounder r, int8_t *y) {
    int s = ie_requant_shift(ie_absmax_s64(x, n), 7);
    ie_shift_s64_s8(x, n, s, r, y);
    return s;
}

static int64_t aligned_sum(const int8_t *const *x, const int32_t *e, const int8_t *sign, uint32_t k, int32_t e_c,
                           ie_rounder r, size_t i) {
    int64_t v = 0;
    for (uint32_t j = 0; j < k; j++) /* independent draws per term: hash of (element draw, term) */
        v += ie_shift_round(sign ? sign[j] * x[j][i] : x[j][i], e_c - e[j],
                            ie_hash32(ie_draw(r, (uint32_t)i) + j * 0x9E3779B9U));
    return v;
}

/* Multipliers of at most 2^22 keep every sum in int32 (128 (2^22 + 2^22) = 2^30, -128 included):
 * the usual case, since residual branches sit a few bits apart. */
IE_HOT int ie_sum2_s8(const int8_t *x0, int64_t m0, const int8_t *x1, int64_t m1, size_t n, ie_rounder r, int8_t *y) {
    int sh;
    if (IE_FAST_PATHS && ie_abs64(m0) <= ((uint64_t)1 << 22) && ie_abs64(m1) <= ((uint64_t)1 << 22)) {
        int32_t a0 = (int32_t)m0, a1 = (int32_t)m1;
        IE_REQUANT_EACH32(n, i, x0[i] * a0 + x1[i] * a1, r, y, sh);
        return sh;
    }
    IE_REQUANT_EACH(n, i, x0[i] * m0 + x1[i] * m1, r, y, sh);
    return sh;
}

int32_t ie_sum_s8(const int8_t *const *x, const int32_t *e, const int8_t *sign, uint32_t k, size_t n, ie_rounder r,
                  int8_t *y) {
    int32_t lo = e[0], hi = e[0];
    for (uint32_t j = 1; j < k; j++) {
        if (e[j] < lo) lo = e[j];
        if (e[j] > hi) hi = e[j];
    }
    int32_t e_c = hi - 40 > lo ? hi - 40 : lo;
    ie_rounder out = {ie_hash32(r.key ^ 0xA5A5A5A5U), r.nearest};
    if (k == 2 && e_c == lo) { /* the usual fan-out of two: exact left shifts, no term draws (same bytes) */
        int64_t m0 = ((int64_t)1 << (e[0] - e_c)) * (sign ? sign[0] : 1);
        int64_t m1 = ((int64_t)1 << (e[1] - e_c)) * (sign ? sign[1] : 1);
        return e_c + ie_sum2_s8(x[0], m0, x[1], m1, n, out, y);
    }
    uint64_t max = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t a = ie_abs64(aligned_sum(x, e, sign, k, e_c, r, i));
        if (a > max) max = a;
    }
    int sh = ie_requant_shift(max, 7);
    for (size_t i = 0; i < n; i++)
        y[i] = (int8_t)ie_clamp64(ie_shift_round(aligned_sum(x, e, sign, k, e_c, r, i), sh, ie_draw(out, (uint32_t)i)), 127);
    return e_c + sh;
}

/* int32 sums over pieces of 2^16 terms (127^2 2^16 < 2^31) vectorize, where int64 ones barely do. */
#define PIECE ((size_t)1 << 16)
IE_HOT void ie_sums_s8(const int8_t *u, const int8_t *v, size_t n, int64_t *s1, int64_t *s2) {
    v = v ? v : u;
    for (size_t b = 0; b < n; b += PIECE) {
        size_t e = n - b < PIECE ? n : b + PIECE;
        int32_t a1 = 0, a2 = 0;
        for (size_t i = b; i < e; i++) {
            a1 += u[i];
            a2 += u[i] * v[i];
        }
        *s1 += a1;
        *s2 += a2;
    }
}
#undef PIECE

IE_HOT void ie_sums_s16(const int16_t *x, const int8_t *u, size_t n, int64_t *s1, int64_t *s2) {
    int64_t a1 = 0, a2 = 0; /* |x u| < 2^22, x^2 < 2^30: int64 from the start */
    if (u)
        for (size_t i = 0; i < n; i++) {
            a1 += u[i];
            a2 += (int64_t)u[i] * x[i];
        }
    else
        for (size_t i = 0; i < n; i++) {
            a1 += x[i];
            a2 += (int64_t)x[i] * x[i];
        }
    *s1 += a1;
    *s2 += a2;
}

int64_t ie_square_over(int64_t s1, uint64_t count) {
    int64_t c = (int64_t)count, q = s1 / c, r = s1 % c; /* s1 = q c + r, so s1^2 / c = q^2 c + 2 q r + r^2 / c */
    return q * q * c + 2 * q * r + (r * r + c / 2) / c;
}

/* ---- dyadic arithmetic ---------------------------------------------------------------------- */

/* Highest set bit position + 1 of the term c*x (exponent ce + ex), or INT32_MIN when zero. */
static int32_t term_top(ie_dyadic c, uint64_t xmax, int32_t ex) {
    if (c.m == 0 || xmax == 0) return INT32_MIN;
    return c.e + ex + ie_bitlen64(ie_abs64(c.m) * xmax);
}

/* out = a x + b y: each term's mantissa (0: no term), its shift to the output exponent, and its
 * data (the output when absent: never read then, or read times 0). */
typedef struct axpby_job {
    int32_t *out;
    const int32_t *x, *y;
    int32_t am, bm;
    int sa, sb;
    ie_rounder r;
} axpby_job;

/* How axpby_fast computes a term m x rounded by s: the general way in 64 bits; exactly (s = 0);
 * or, for m = 1 and s in 1..31, in 32-bit lanes (ie_srshift32). The same values; the special
 * kinds are the update's master term, and the gradient term of the momentum or weight decay. */
enum { T_WIDE, T_EXACT, T_UNIT };

static inline int64_t axpby_term(int kind, int64_t m, int32_t x, ie_srshift p, int s, uint32_t draw) {
    return kind == T_EXACT ? m * x : kind == T_UNIT ? ie_srshift32(x, s, draw) : ie_srshift_apply(m * x, p, draw);
}

/* The common case, branch-free so it vectorizes: both shifts fa, fb in [0, 62] (a missing term
 * has a zero multiplier, which rounds to 0). Identical to ie_shift_round for these shifts. The
 * hash input i * golden is stepped in 32 bits, and max|v| follows from the extremes: fewer vector
 * operations. */
static inline uint32_t axpby_fast(const axpby_job *j, size_t b, size_t e, int64_t am, int fa, int64_t bm, int fb,
                                  int ka, int kb) {
    int32_t *out = j->out;
    const int32_t *x = j->x, *y = j->y;
    ie_srshift pa = ie_srshift_make(fa), pb = ie_srshift_make(fb);
    uint32_t key = j->r.key, h = (uint32_t)b * 0x9E3779B9U;
    int32_t lo = 0, hi = 0;
    for (size_t i = b; i < e; i++, h += 0x9E3779B9U) {
        uint32_t d = ie_hash32(h ^ key), d2 = ie_hash32(d ^ 0x5bd1e995U);
        int32_t v = (int32_t)(axpby_term(ka, am, x[i], pa, fa, d) + axpby_term(kb, bm, y[i], pb, fb, d2));
        out[i] = v;
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    return abs32(lo) > abs32(hi) ? abs32(lo) : abs32(hi);
}

IE_HOT static uint64_t axpby_part(const void *ctx, size_t b, size_t e) {
    const axpby_job *j = ctx;
    int sa = j->sa, sb = j->sb, fa = sa < 0 ? 0 : sa, fb = sb < 0 ? 0 : sb;
    if (!j->r.nearest && fa <= 62 && fb <= 62 && sa >= -29 && sb >= -29) {
        /* an exact left shift (a term below 29 bits) joins the multiplier, which stays below 2^61 */
        int64_t am = (int64_t)j->am * ((int64_t)1 << (fa - sa)), bm = (int64_t)j->bm * ((int64_t)1 << (fb - sb));
        if (IE_FAST_PATHS && fa == 0) return axpby_fast(j, b, e, am, fa, bm, fb, T_EXACT, T_WIDE);
        if (IE_FAST_PATHS && fb == 0) return axpby_fast(j, b, e, am, fa, bm, fb, T_WIDE, T_EXACT);
        if (IE_FAST_PATHS && bm == 1 && fb >= 1 && fb <= 31) return axpby_fast(j, b, e, am, fa, bm, fb, T_WIDE, T_UNIT);
        return axpby_fast(j, b, e, am, fa, bm, fb, T_WIDE, T_WIDE);
    }
    uint32_t max = 0;
    for (size_t i = b; i < e; i++) {
        uint32_t draw = ie_draw(j->r, (uint32_t)i);
        int64_t v = 0;
        if (j->am) v += ie_shift_round((int64_t)j->am * j->x[i], sa, draw);
        /* An independent draw for the second term keeps the two roundings uncorrelated. */
        if (j->bm) v += ie_shift_round((int64_t)j->bm * j->y[i], sb, ie_hash32(draw ^ 0x5bd1e995U));
        j->out[i] = (int32_t)v;
        max = abs32((int32_t)v) > max ? abs32((int32_t)v) : max;
    }
    return max;
}

int32_t ie_axpby_s32_split(ie_pool *pool, int32_t *out, size_t n, ie_dyadic a, const int32_t *x, int32_t ex,
                           uint64_t xmax, ie_dyadic b, const int32_t *y, int32_t ey, uint64_t ymax, int term_bits,
                           ie_rounder r, uint64_t *out_max) {
    return ie_axpby_s32_floor(pool, out, n, a, x, ex, xmax, b, y, ey, ymax, term_bits, INT32_MIN, r, out_max);
}

int32_t ie_axpby_s32_floor(ie_pool *pool, int32_t *out, size_t n, ie_dyadic a, const int32_t *x, int32_t ex,
                           uint64_t xmax, ie_dyadic b, const int32_t *y, int32_t ey, uint64_t ymax, int term_bits,
                           int32_t eo_floor, ie_rounder r, uint64_t *out_max) {
    int32_t ta = term_top(a, x ? xmax : 0, ex);
    int32_t tb = term_top(b, y ? ymax : 0, ey);
    if (ta == INT32_MIN && tb == INT32_MIN) {
        for (size_t i = 0; i < n; i++) out[i] = 0;
        if (out_max) *out_max = 0;
        return ex > eo_floor ? ex : eo_floor;
    }
    int32_t eo = (ta > tb ? ta : tb) - term_bits;
    if (eo < eo_floor) eo = eo_floor;
    /* A term far below the other rounds to (stochastic) noise; the shift clamp keeps it bounded. */
    axpby_job j = {out, x ? x : out, y ? y : out, ta == INT32_MIN ? 0 : a.m, tb == INT32_MIN ? 0 : b.m,
                   ta == INT32_MIN ? 0 : eo - (a.e + ex), tb == INT32_MIN ? 0 : eo - (b.e + ey), r};
    uint64_t max = split_max(pool, n, axpby_part, &j);
    if (out_max) *out_max = max;
    return eo;
}

int32_t ie_axpby_s32(int32_t *out, size_t n, ie_dyadic a, const int32_t *x, int32_t ex, ie_dyadic b,
                     const int32_t *y, int32_t ey, ie_rounder r) {
    return ie_axpby_s32_split(NULL, out, n, a, x, ex, x ? ie_absmax_s32(x, n) : 0, b, y, ey,
                              y ? ie_absmax_s32(y, n) : 0, IE_TERM_BITS, r, NULL);
}

/* ---- scalar dyadics ------------------------------------------------------------------------ */

ie_dyadic ie_dy_norm(int64_t m, int32_t e) {
    ie_dyadic d = {0, 0};
    if (m == 0) return d;
    int sh = ie_bitlen64(ie_abs64(m)) - 31;
    if (sh > 0) {
        m = ie_shift_round(m, sh, 0x80000000U);
        e += sh;
        if (ie_abs64(m) >> 31) { /* rounding carried into bit 31 */
            m = ie_asr64(m, 1);
            e++;
        }
    }
    d.m = (int32_t)m;
    d.e = e;
    return d;
}

ie_dyadic ie_dy_mul(ie_dyadic a, ie_dyadic b) { return ie_dy_norm((int64_t)a.m * b.m, a.e + b.e); }

ie_dyadic ie_dy_add(ie_dyadic a, ie_dyadic b) {
    if (a.m == 0) return b;
    if (b.m == 0) return a;
    int32_t e = a.e < b.e ? a.e : b.e, hi = a.e < b.e ? b.e : a.e;
    if (hi - e > 31) e = hi - 31; /* the smaller term then rounds away below 2^-31 of the larger */
    return ie_dy_norm(ie_shift_round(a.m, e - a.e, 0x80000000U) + ie_shift_round(b.m, e - b.e, 0x80000000U), e);
}

ie_dyadic ie_dy_recip(uint64_t n) {
    /* round(2^62 / n) keeps 31+ significant bits for every n below 2^32 */
    return ie_dy_norm((int64_t)((((uint64_t)1 << 62) + n / 2) / n), -62);
}

ie_dyadic ie_dy_div(ie_dyadic a, ie_dyadic b) {
    ie_dyadic zero = {0, 0};
    if (a.m == 0 || b.m == 0) return zero;
    uint64_t num = ie_abs64(a.m), den = ie_abs64(b.m);
    int up = 62 - ie_bitlen64(num);
    uint64_t q = ((num << up) + den / 2) / den; /* num << up >= 2^61 and den < 2^31: q >= 2^30 */
    return ie_dy_norm((a.m < 0) != (b.m < 0) ? -(int64_t)q : (int64_t)q, a.e - up - b.e);
}

static uint64_t isqrt_newton(uint64_t m) {
    uint64_t x = (uint64_t)1 << ((ie_bitlen64(m) + 1) / 2); /* >= sqrt(m) */
    for (;;) {
        uint64_t y = (x + m / x) / 2;
        if (y >= x) return x;
        x = y;
    }
}

/* floor(sqrt) of v's mantissa brought to 62 bits (an even exponent): in [2^30, 2^31), with the
 * root's exponent in *e (v.m > 0). */
static uint64_t sqrt_mantissa(ie_dyadic v, int32_t *e) {
    uint64_t m = (uint64_t)v.m;
    int up = 62 - ie_bitlen64(m);
    m <<= up;
    int64_t ev = (int64_t)v.e - up;
    if (ev & 1) { m >>= 1; ev++; }
    *e = (int32_t)(ev / 2);
    return isqrt_newton(m);
}

ie_dyadic ie_dy_rsqrt(ie_dyadic v) {
    ie_dyadic one = {1, 0};
    int32_t e;
    uint64_t s = sqrt_mantissa(v.m > 0 ? v : one, &e);
    return ie_dy_norm((int64_t)(((uint64_t)1 << 62) / s), -62 - e);
}

ie_dyadic ie_dy_sqrt(ie_dyadic v) {
    ie_dyadic zero = {0, 0};
    int32_t e;
    if (v.m <= 0) return zero;
    uint64_t s = sqrt_mantissa(v, &e);
    return ie_dy_norm((int64_t)s, e);
}

int32_t ie_dy_common(const ie_dyadic *v, size_t n, int bits, int64_t *out) {
    int32_t top = INT32_MIN;
    for (size_t i = 0; i < n; i++)
        if (ie_dy_top(v[i]) > top) top = ie_dy_top(v[i]);
    if (top == INT32_MIN) {
        for (size_t i = 0; i < n; i++) out[i] = 0;
        return 0;
    }
    for (size_t i = 0; i < n; i++) out[i] = ie_shift_round(v[i].m, top - bits - v[i].e, 0x80000000U);
    return top - bits;
}

ie_dyadic ie_dy_inv(ie_dyadic v) {
    uint64_t m = (uint64_t)(v.m > 0 ? v.m : 1);
    return ie_dy_norm((int64_t)((((uint64_t)1 << 62) + m / 2) / m), -62 - v.e);
}

ie_dyadic ie_dy_powsum(ie_dyadic b, uint64_t t) {
    static const ie_dyadic one = {1, 0};
    ie_dyadic p = one, s = {0, 0}; /* b^k and the sum of its k terms, for k = t's leading bits */
    for (int bit = ie_bitlen64(t) - 1; bit >= 0; bit--) {
        s = ie_dy_mul(s, ie_dy_add(one, p));
        p = ie_dy_mul(p, p);
        if (t >> bit & 1) {
            s = ie_dy_add(one, ie_dy_mul(b, s));
            p = ie_dy_mul(p, b);
        }
        if (p.m && p.e + ie_bitlen64(ie_abs64(p.m)) < -80) p.m = 0; /* below 2^-80: 1 + p is 1 */
    }
    return s;
}

static int32_t top_bit(ie_dyadic c, int32_t e, uint64_t vmax) {
    return c.m && vmax ? c.e + e + ie_bitlen64(ie_abs64(c.m) * vmax) : INT32_MIN;
}

/* u[i], times its position's weight when there are weights (uw[i - base] for a block at base). */
static inline int64_t weighted(const int8_t *u, const int32_t *uw, size_t i, size_t base) {
    return uw ? (int64_t)u[i] * uw[i - base] : u[i];
}

/* One [inner] block of one channel: v = a u + b (x 2^16 - xm) + k (x int8; or x 2^8 - xm, x
 * int16), then either its max or the rounded int8 values. Vectorizes; `coef` holds a, b, k at
 * the common exponent. One body for both widths of x (AFFINE_X). */
#define AFFINE_X(BLOCK, MAX_X, XT, XMIN, XMAX, SCALE)                                                                 \
    IE_HOT static uint64_t BLOCK(size_t base, size_t len, const int8_t *u, const int32_t *uw, const XT *x, int64_t ca,  \
                                 int64_t cb, int64_t ck, int64_t xm, ie_srshift p, uint32_t key, int8_t *y) {          \
        uint64_t max = 0;                                                                                              \
        for (size_t i = base; i < base + len; i++) {                                                                   \
            int64_t v = ck + (u ? ca * weighted(u, uw, i, base) : 0) + (x ? cb * ((int64_t)x[i] * SCALE - xm) : 0);    \
            if (!y) {                                                                                                  \
                uint64_t a = ie_abs64(v);                                                                              \
                max = a > max ? a : max;                                                                               \
            } else {                                                                                                   \
                int64_t q = ie_srshift_apply(v, p, ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ key));                      \
                y[i] = (int8_t)(q > 127 ? 127 : (q < -127 ? -127 : q));                                                \
            }                                                                                                          \
        }                                                                                                              \
        return max;                                                                                                    \
    }                                                                                                                  \
    /* BLOCK's max without u: v is then monotone in x, so its largest magnitude over a block is at   \
     * the smallest or the largest x (a min and max, which vectorize wide). */                       \
    IE_HOT static uint64_t MAX_X(size_t base, size_t len, const XT *x, int64_t cb, int64_t ck, int64_t xm) {            \
        XT lo = XMAX, hi = XMIN;                                                                                       \
        for (size_t i = base; i < base + len; i++) {                                                                   \
            lo = x[i] < lo ? x[i] : lo;                                                                                \
            hi = x[i] > hi ? x[i] : hi;                                                                                \
        }                                                                                                              \
        if (!len) return 0;                                                                                            \
        uint64_t a = ie_abs64(ck + cb * ((int64_t)lo * SCALE - xm)), b = ie_abs64(ck + cb * ((int64_t)hi * SCALE - xm)); \
        return a > b ? a : b;                                                                                          \
    }
AFFINE_X(affine_block, affine_max_x, int8_t, INT8_MIN, INT8_MAX, 65536)
AFFINE_X(affine_block16, affine_max_x16, int16_t, INT16_MIN, INT16_MAX, 256)
#undef AFFINE_X

/* x[i] 2^16 (int8) or x16[i] 2^8 (int16), in the centring unit */
static inline int64_t x_scaled(const int8_t *x, const int16_t *x16, size_t i) {
    return x ? (int64_t)x[i] * 65536 : (int64_t)x16[i] * 256;
}

/* affine_block's max with u and x, approximated in 32-bit lanes: v / 2^32 = A u + B x + C with
 * A = floor(ca / 2^32), B = floor(cb 2^16 / 2^32), C = floor((ck - cb xm) / 2^32), less than 257
 * off (each floor loses under one unit per unit of |u|, |x| <= 128, and one for C). Each term is
 * below 2^60 (the common exponent's choice), so the sum stays below 2^31. affine_max_bits turns
 * the max of |A u + B x + C| into bitlen(max |v|) when that is certain. */
IE_HOT static uint64_t affine_max_approx(size_t base, size_t len, const int8_t *u, const int8_t *x, int64_t ca,
                                         int64_t cb, int64_t ck, int64_t xm) {
    int32_t a = (int32_t)(ca >> 32), b = (int32_t)(cb >> 16), k = (int32_t)((ck - cb * xm) >> 32);
    uint32_t max = 0;
    for (size_t i = base; i < base + len; i++) {
        int32_t v = a * u[i] + b * x[i] + k;
        uint32_t m = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
        max = m > max ? m : max;
    }
    return max;
}

/* max |v| lies within 257 * 2^32 of approx * 2^32: if every integer in that range has one bit
 * length, a value of that length times 2^32 has the exact max's bit length (all that requant
 * uses). 0: uncertain, run the exact pass. */
static uint64_t affine_max_bits(uint64_t approx) {
    if (approx <= 257 || ie_bitlen64(approx - 257) != ie_bitlen64(approx + 256)) return 0;
    return (approx - 257) << 32;
}

/* The blocks (one channel of one sample each) of an affine map, shared by a pool's parts: each
 * part takes a range of blocks; the max does not depend on order, and every element's draw is
 * counted from its index, so the bytes do not depend on threads. */
typedef struct affine_job {
    size_t channels, inner, blocks;
    const int8_t *u, *x;
    const int16_t *x16;
    const int32_t *uw;
    const int64_t *coef, *xm;
    ie_srshift p;
    uint32_t key;
    int8_t *y; /* NULL: the max pass */
    int approx; /* the max pass (y NULL) by affine_max_approx */
    uint64_t max[IE_MAX_THREADS];
} affine_job;

static void affine_part(void *ctx, uint32_t part, uint32_t parts) {
    affine_job *j = ctx;
    size_t b0, b1, n = j->channels;
    ie_part_range(j->blocks, part, parts, &b0, &b1);
    uint64_t max = 0;
    for (size_t blk = b0; blk < b1; blk++) {
        size_t c = blk % n, base = blk * j->inner;
        int64_t xm = j->x || j->x16 ? j->xm[c] : 0, ca = j->coef[c], cb = j->coef[n + c], ck = j->coef[2 * n + c];
        uint64_t m = !j->y && j->approx ? affine_max_approx(base, j->inner, j->u, j->x, ca, cb, ck, xm)
                     : IE_FAST_PATHS && !j->y && !j->u && j->x ? affine_max_x(base, j->inner, j->x, cb, ck, xm)
                     : IE_FAST_PATHS && !j->y && !j->u && j->x16 ? affine_max_x16(base, j->inner, j->x16, cb, ck, xm)
                     : j->x16 ? affine_block16(base, j->inner, j->u, j->uw, j->x16, ca, cb, ck, xm, j->p, j->key, j->y)
                              : affine_block(base, j->inner, j->u, j->uw, j->x, ca, cb, ck, xm, j->p, j->key, j->y);
        max = m > max ? m : max;
    }
    j->max[part] = max;
}

/* below this many elements waking the pool costs more than it saves */
#define AFFINE_SPLIT_MIN ((size_t)1 << 15)

static uint64_t affine_max(ie_pool *pool, affine_job *j) {
    ie_pool_run(pool, affine_part, j);
    uint64_t max = 0;
    for (uint32_t p = 0; p < ie_pool_threads(pool); p++) max = j->max[p] > max ? j->max[p] : max;
    return max;
}

int32_t ie_channel_affine_s8(ie_pool *pool, size_t outer, size_t channels, size_t inner, const int8_t *u, int32_t eu,
                             const int32_t *uw, const int8_t *x, const int16_t *x16, int32_t ex, const int64_t *xm,
                             const ie_dyadic *a, const ie_dyadic *b, const ie_dyadic *k, int64_t *coef, ie_rounder r,
                             int8_t *y) {
    int32_t top = INT32_MIN;
    uint64_t umax = 127, xmax = x ? (uint64_t)127 * 65536 : (uint64_t)32767 * 256;
    int has_x = x || x16;
    if (uw) umax *= ie_absmax_s32(uw, inner);
    for (size_t c = 0; c < channels; c++) {
        int32_t t[3] = {u ? top_bit(a[c], eu, umax) : INT32_MIN,
                        has_x ? top_bit(b[c], ex - 16, xmax + ie_abs64(xm[c])) : INT32_MIN,
                        top_bit(k[c], 0, 1)};
        for (int j = 0; j < 3; j++)
            if (t[j] > top) top = t[j];
    }
    size_t total = outer * channels * inner;
    if (top == INT32_MIN) {
        for (size_t i = 0; i < total; i++) y[i] = 0;
        for (size_t i = 0; i < 3 * channels; i++) coef[i] = 0; /* as the coefficients say (ie_channel_affine_relu_bwd) */
        return eu;
    }
    int32_t E = top - 60;
    for (size_t c = 0; c < channels; c++) { /* coefficients at the common exponent E (a zero one stays 0) */
        coef[c] = u && a[c].m ? ie_shift_round(a[c].m, E - (a[c].e + eu), 0x80000000U) : 0;
        coef[channels + c] = has_x && b[c].m ? ie_shift_round(b[c].m, E - (b[c].e + ex - 16), 0x80000000U) : 0;
        coef[2 * channels + c] = k[c].m ? ie_shift_round(k[c].m, E - k[c].e, 0x80000000U) : 0;
    }
    affine_job j = {channels, inner, outer * channels, u, x, x16, uw, coef, xm, ie_srshift_make(0), r.key, NULL,
                    IE_FAST_PATHS && u && !uw && x, {0}};
    pool = total >= AFFINE_SPLIT_MIN ? pool : NULL;
    uint64_t max = affine_max(pool, &j);
    if (j.approx && !(max = affine_max_bits(max))) { /* a max near a power of two: the exact pass */
        j.approx = 0;
        max = affine_max(pool, &j);
    }
    int sh = ie_requant_shift(max, 7);
    if (sh < 0 || r.nearest) { /* rare: tiny values or evaluation mode; the general rounding */
        for (size_t base = 0, c = 0; base < total; base += inner, c = (c + 1) % channels)
            for (size_t i = base; i < base + inner; i++) {
                int64_t v = coef[2 * channels + c] + (u ? coef[c] * weighted(u, uw, i, base) : 0) +
                            (has_x ? coef[channels + c] * (x_scaled(x, x16, i) - xm[c]) : 0);
                y[i] = (int8_t)ie_clamp64(ie_shift_round(v, sh, ie_draw(r, (uint32_t)i)), 127);
            }
        return E + sh;
    }
    j.p = ie_srshift_make(sh > 62 ? 62 : sh);
    j.y = y;
    ie_pool_run(pool, affine_part, &j);
    return E + sh;
}

void ie_channel_affine_relu_bwd(size_t outer, size_t channels, size_t inner, const int8_t *x, const int16_t *x16,
                                const int64_t *xm, const int64_t *coef, const int8_t *y, const int8_t *dy, int8_t *dx) {
    size_t total = outer * channels * inner;
    for (size_t base = 0, c = 0; base < total; base += inner, c = (c + 1) % channels) {
        int64_t k = coef[2 * channels + c], slope = coef[channels + c];
        for (size_t i = base; i < base + inner; i++) /* dy is read before dx is written */
            dx[i] = y[i] > 0 || k + slope * (x_scaled(x, x16, i) - xm[c]) > 0 ? dy[i] : 0;
    }
}

/* ---- the float boundary --------------------------------------------------------------------- */

int ie_f32_bits_is_finite(uint32_t bits) { return ((bits >> 23) & 0xFF) != 0xFF; }

/* Decodes |v| = mant * 2^exp (mant < 2^24). */
static void f32_decode(uint32_t v, uint32_t *mant, int32_t *exp) {
    uint32_t biased = (v >> 23) & 0xFF, frac = v & 0x7FFFFF;
    *mant = biased ? (frac | 0x800000U) : frac;
    *exp = (biased ? (int32_t)biased : 1) - 150;
}

ie_status ie_f32_common_exponent(const uint32_t *v, size_t n, int bits, int32_t *e_out) {
    uint32_t max_mag = 0;
    for (size_t i = 0; i < n; i++) {
        if (!ie_f32_bits_is_finite(v[i])) return IE_ERR_VALUE;
        uint32_t mag = v[i] & 0x7FFFFFFFU; /* magnitudes order like unsigned integers */
        if (mag > max_mag) max_mag = mag;
    }
    if (max_mag == 0) {
        *e_out = -bits;
        return IE_OK;
    }
    uint32_t mant;
    int32_t exp;
    f32_decode(max_mag, &mant, &exp);
    *e_out = exp + ie_bitlen64(mant) - bits;
    return IE_OK;
}

int ie_f32_bits_to_int32(uint32_t bits, int32_t *out) {
    uint32_t mant;
    int32_t exp;
    if (!ie_f32_bits_is_finite(bits)) return 0;
    f32_decode(bits, &mant, &exp);
    uint64_t mag;
    if (exp >= 0) {
        if (mant && exp + ie_bitlen64(mant) > 31) return 0; /* |v| >= 2^31 */
        mag = (uint64_t)mant << exp;
    } else {
        if (exp < -24 || mant & ((1u << -exp) - 1)) return mant == 0 ? (*out = 0, 1) : 0; /* a fraction */
        mag = mant >> -exp;
    }
    *out = (bits >> 31) ? -(int32_t)mag : (int32_t)mag;
    return 1;
}

int32_t ie_f32_to_fixed(uint32_t v, int32_t e, int bits, uint32_t draw) {
    uint32_t mant;
    int32_t exp;
    f32_decode(v, &mant, &exp);
    if (mant == 0) return 0;
    int32_t s = e - exp;
    int64_t lim = ((int64_t)1 << bits) - 1;
    if (s < 0 && ie_bitlen64(mant) - s > bits) return (int32_t)((v >> 31) ? -lim : lim);
    int64_t m = (v >> 31) ? -(int64_t)mant : (int64_t)mant;
    return (int32_t)ie_clamp64(ie_shift_round(m, s, draw), lim);
}

/* ie_f32_to_fixed with bits 7 over an array whose common exponent e leaves no value above 7 bits
 * (so no shift below 0; a denormal maximum can break that: the general loop then redoes all), in
 * a form that vectorizes: per-element shifts through ie_srshift. */
IE_HOT void ie_f32_to_s8(const uint32_t *v, size_t n, int32_t e, ie_rounder r, int8_t *q) {
    int negative_shift = 0;
    for (size_t i = 0; IE_FAST_PATHS && !r.nearest && i < n; i++) {
        uint32_t mant;
        int32_t exp;
        f32_decode(v[i], &mant, &exp);
        int32_t s = e - exp;
        negative_shift |= s < 0;
        s = s < 0 ? 0 : (s > 62 ? 62 : s);
        int64_t x = ie_srshift_apply(v[i] >> 31 ? -(int64_t)mant : (int64_t)mant, ie_srshift_make(s),
                                     ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ r.key));
        q[i] = (int8_t)(x > 127 ? 127 : (x < -127 ? -127 : x));
    }
    if (IE_FAST_PATHS && !r.nearest && !negative_shift) return;
    for (size_t i = 0; i < n; i++) q[i] = (int8_t)ie_f32_to_fixed(v[i], e, 7, ie_draw(r, (uint32_t)i));
}

/* a * 2^-s rounded to nearest, ties to even (a < 2^63). */
static uint64_t round_shift_even(uint64_t a, int s) {
    if (s <= 0) return a << -s;
    if (s > 63) return 0;
    uint64_t q = a >> s, rem = a & (((uint64_t)1 << s) - 1), half = (uint64_t)1 << (s - 1);
    if (rem > half || (rem == half && (q & 1))) q++;
    return q;
}

uint32_t ie_fixed_to_f32_bits(int64_t m, int32_t e) {
    if (m == 0) return 0;
    uint32_t sign = m < 0 ? 0x80000000U : 0;
    uint64_t a = ie_abs64(m);
    int32_t len = ie_bitlen64(a);
    int64_t biased = (int64_t)len - 1 + e + 127;
    if (biased >= 255) return sign | 0x7F800000U;
    uint64_t bits;
    if (biased >= 1) {
        /* the mantissa keeps its implicit bit, so a carry to 2^24 bumps the exponent field */
        bits = ((uint64_t)(biased - 1) << 23) + round_shift_even(a, len - 24);
    } else {
        int64_t s = (int64_t)len - 24 + 1 - biased;
        bits = s > 63 ? 0 : round_shift_even(a, (int)s);
    }
    if (bits >= 0x7F800000U) return sign | 0x7F800000U;
    return sign | (uint32_t)bits;
}

ie_status ie_dyadic_from_f32_bits(uint32_t bits, ie_dyadic *out) {
    if (!out) return IE_ERR_ARG;
    if (!ie_f32_bits_is_finite(bits)) return IE_ERR_VALUE;
    uint32_t mant;
    int32_t exp;
    f32_decode(bits, &mant, &exp);
    if (mant == 0) {
        out->m = 0;
        out->e = 0;
        return IE_OK;
    }
    int up = 31 - ie_bitlen64(mant); /* fill 31 bits; exact, since mant has at most 24 */
    int32_t m = (int32_t)(mant << up);
    out->m = (bits >> 31) ? -m : m;
    out->e = exp - up;
    return IE_OK;
}

const char *ie_status_str(ie_status status) {
    switch (status) {
    case IE_OK: return "ok";
    case IE_ERR_ARG: return "invalid argument";
    case IE_ERR_FORMAT: return "malformed buffer";
    case IE_ERR_UNSUPPORTED: return "unsupported";
    case IE_ERR_NOMEM: return "out of memory";
    case IE_ERR_VALUE: return "invalid value";
    case IE_ERR_STATE: return "invalid state";
    }
    return "unknown status";
}
