#include "numeric.h"
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

/* The same loops over int32 and int64 inputs: written once, instantiated per type. */
#define DEFINE_ABSMAX(name, type)                                                                  \
    IE_HOT uint64_t name(const type *x, size_t n) {                                                       \
        uint64_t m = 0;                                                                            \
        for (size_t i = 0; i < n; i++)                                                             \
            if (ie_abs64(x[i]) > m) m = ie_abs64(x[i]);                                            \
        return m;                                                                                  \
    }
DEFINE_ABSMAX(ie_absmax_s64, int64_t)
DEFINE_ABSMAX(ie_absmax_s32, int32_t)

#define DEFINE_SHIFT(name, in_type, out_type)                                                      \
    IE_HOT void name(const in_type *x, size_t n, int s, int bits, ie_rounder r, out_type *y) {     \
        int64_t lim = ((int64_t)1 << bits) - 1;                                                    \
        if (s >= 0 && s <= 62 && !r.nearest) { /* branch-free common case, vectorizes */           \
            ie_srshift p = ie_srshift_make(s);                                                     \
            for (size_t i = 0; i < n; i++) {                                                       \
                int64_t v = ie_srshift_apply(x[i], p, ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ r.key)); \
                y[i] = (out_type)(v > lim ? lim : (v < -lim ? -lim : v));                          \
            }                                                                                      \
            return;                                                                                \
        }                                                                                          \
        for (size_t i = 0; i < n; i++)                                                             \
            y[i] = (out_type)ie_clamp64(ie_shift_round(x[i], s, ie_draw(r, (uint32_t)i)), lim);    \
    }
DEFINE_SHIFT(ie_shift_s64_s32, int64_t, int32_t)
DEFINE_SHIFT(ie_shift_s32_s32, int32_t, int32_t)
DEFINE_SHIFT(ie_shift_s64_s8_bits, int64_t, int8_t)
DEFINE_SHIFT(ie_shift_s32_s8_bits, int32_t, int8_t)

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

/* ---- dyadic arithmetic ---------------------------------------------------------------------- */

/* Highest set bit position + 1 of the term c*x (exponent ce + ex), or INT32_MIN when zero. */
static int32_t term_top(ie_dyadic c, uint64_t xmax, int32_t ex) {
    if (c.m == 0 || xmax == 0) return INT32_MIN;
    return c.e + ex + ie_bitlen64(ie_abs64(c.m) * xmax);
}

/* The common case, branch-free so it vectorizes: both shifts in [0, 62] (a missing term has a
 * zero multiplier, which rounds to 0). Identical to ie_shift_round for these shifts. */
IE_HOT static void axpby_fast(int32_t *out, size_t n, int64_t am, const int32_t *x, int sa, int64_t bm,
                              const int32_t *y, int sb, uint32_t key) {
    ie_srshift pa = ie_srshift_make(sa), pb = ie_srshift_make(sb);
    for (size_t i = 0; i < n; i++) {
        uint32_t d = ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ key), d2 = ie_hash32(d ^ 0x5bd1e995U);
        out[i] = (int32_t)(ie_srshift_apply(am * x[i], pa, d) + ie_srshift_apply(bm * y[i], pb, d2));
    }
}

int32_t ie_axpby_s32(int32_t *out, size_t n, ie_dyadic a, const int32_t *x, int32_t ex,
                     ie_dyadic b, const int32_t *y, int32_t ey, ie_rounder r) {
    enum { TERM_BITS = 29 };
    int32_t ta = term_top(a, x ? ie_absmax_s32(x, n) : 0, ex);
    int32_t tb = term_top(b, y ? ie_absmax_s32(y, n) : 0, ey);
    if (ta == INT32_MIN && tb == INT32_MIN) {
        for (size_t i = 0; i < n; i++) out[i] = 0;
        return ex;
    }
    int32_t eo = (ta > tb ? ta : tb) - TERM_BITS;
    /* A term far below the other rounds to (stochastic) noise; the shift clamp keeps it bounded. */
    int sa = ta == INT32_MIN ? 0 : eo - (a.e + ex);
    int sb = tb == INT32_MIN ? 0 : eo - (b.e + ey);
    /* an exact left shift (a term below 29 bits) joins the multiplier, which stays below 2^61 */
    int64_t am = ta == INT32_MIN ? 0 : (int64_t)a.m * ((int64_t)1 << (sa < 0 ? -sa : 0));
    int64_t bm = tb == INT32_MIN ? 0 : (int64_t)b.m * ((int64_t)1 << (sb < 0 ? -sb : 0));
    int fa = sa < 0 ? 0 : sa, fb = sb < 0 ? 0 : sb;
    if (!r.nearest && fa <= 62 && fb <= 62 && sa >= -29 && sb >= -29) {
        axpby_fast(out, n, am, x ? x : out, fa, bm, y ? y : out, fb, r.key);
        return eo;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t draw = ie_draw(r, (uint32_t)i);
        int64_t v = 0;
        if (ta != INT32_MIN) v += ie_shift_round((int64_t)a.m * x[i], sa, draw);
        /* An independent draw for the second term keeps the two roundings uncorrelated. */
        if (tb != INT32_MIN) v += ie_shift_round((int64_t)b.m * y[i], sb, ie_hash32(draw ^ 0x5bd1e995U));
        out[i] = (int32_t)v;
    }
    return eo;
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

static uint64_t isqrt_newton(uint64_t m) {
    uint64_t x = (uint64_t)1 << ((ie_bitlen64(m) + 1) / 2); /* >= sqrt(m) */
    for (;;) {
        uint64_t y = (x + m / x) / 2;
        if (y >= x) return x;
        x = y;
    }
}

ie_dyadic ie_dy_rsqrt(ie_dyadic v) {
    uint64_t m = (uint64_t)(v.m > 0 ? v.m : 1);
    int up = 62 - ie_bitlen64(m);
    m <<= up;
    int64_t e = (int64_t)v.e - up;
    if (e & 1) { m >>= 1; e++; }
    uint64_t s = isqrt_newton(m); /* in [2^30, 2^31) */
    return ie_dy_norm((int64_t)(((uint64_t)1 << 62) / s), (int32_t)(-62 - e / 2));
}

static int32_t top_bit(ie_dyadic c, int32_t e, uint64_t vmax) {
    return c.m && vmax ? c.e + e + ie_bitlen64(ie_abs64(c.m) * vmax) : INT32_MIN;
}

/* One [inner] block of one channel: v = a u + b (x 2^16 - xm) + k, then either its max or the
 * rounded int8 values. Vectorizes; `coef` holds a, b, k at the common exponent. */
IE_HOT static uint64_t affine_block(size_t base, size_t len, const int8_t *u, const int8_t *x, int64_t ca, int64_t cb,
                                    int64_t ck, int64_t xm, ie_srshift p, uint32_t key, int8_t *y) {
    uint64_t max = 0;
    for (size_t i = base; i < base + len; i++) {
        int64_t v = ck + (u ? ca * u[i] : 0) + (x ? cb * ((int64_t)x[i] * 65536 - xm) : 0);
        if (!y) {
            uint64_t a = ie_abs64(v);
            max = a > max ? a : max;
        } else {
            int64_t q = ie_srshift_apply(v, p, ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ key));
            y[i] = (int8_t)(q > 127 ? 127 : (q < -127 ? -127 : q));
        }
    }
    return max;
}

/* affine_block's max without u: v is then monotone in x, so its largest magnitude over a block is
 * at the smallest or the largest x (an int8 min and max, which vectorize 64 wide). */
IE_HOT static uint64_t affine_max_x(size_t base, size_t len, const int8_t *x, int64_t cb, int64_t ck, int64_t xm) {
    int8_t lo = INT8_MAX, hi = INT8_MIN;
    for (size_t i = base; i < base + len; i++) {
        lo = x[i] < lo ? x[i] : lo;
        hi = x[i] > hi ? x[i] : hi;
    }
    if (!len) return 0;
    uint64_t a = ie_abs64(ck + cb * ((int64_t)lo * 65536 - xm)), b = ie_abs64(ck + cb * ((int64_t)hi * 65536 - xm));
    return a > b ? a : b;
}

/* The blocks (one channel of one sample each) of an affine map, shared by a pool's parts: each
 * part takes a range of blocks; the max does not depend on order, and every element's draw is
 * counted from its index, so the bytes do not depend on threads. */
typedef struct affine_job {
    size_t channels, inner, blocks;
    const int8_t *u, *x;
    const int64_t *coef, *xm;
    ie_srshift p;
    uint32_t key;
    int8_t *y; /* NULL: the max pass */
    uint64_t max[IE_MAX_THREADS];
} affine_job;

static void affine_part(void *ctx, uint32_t part, uint32_t parts) {
    affine_job *j = ctx;
    size_t b0, b1, n = j->channels;
    ie_part_range(j->blocks, part, parts, &b0, &b1);
    uint64_t max = 0;
    for (size_t blk = b0; blk < b1; blk++) {
        size_t c = blk % n, base = blk * j->inner;
        int64_t xm = j->x ? j->xm[c] : 0;
        uint64_t m = IE_FAST_PATHS && !j->y && !j->u && j->x
                         ? affine_max_x(base, j->inner, j->x, j->coef[n + c], j->coef[2 * n + c], xm)
                         : affine_block(base, j->inner, j->u, j->x, j->coef[c], j->coef[n + c], j->coef[2 * n + c], xm,
                                        j->p, j->key, j->y);
        max = m > max ? m : max;
    }
    j->max[part] = max;
}

/* below this many elements waking the pool costs more than it saves */
#define AFFINE_SPLIT_MIN ((size_t)1 << 15)

int32_t ie_channel_affine_s8(ie_pool *pool, size_t outer, size_t channels, size_t inner, const int8_t *u, int32_t eu,
                             const int8_t *x, int32_t ex, const int64_t *xm, const ie_dyadic *a, const ie_dyadic *b,
                             const ie_dyadic *k, int64_t *coef, ie_rounder r, int8_t *y) {
    int32_t top = INT32_MIN;
    for (size_t c = 0; c < channels; c++) {
        int32_t t[3] = {u ? top_bit(a[c], eu, 127) : INT32_MIN,
                        x ? top_bit(b[c], ex - 16, (uint64_t)127 * 65536 + ie_abs64(xm[c])) : INT32_MIN,
                        top_bit(k[c], 0, 1)};
        for (int j = 0; j < 3; j++)
            if (t[j] > top) top = t[j];
    }
    size_t total = outer * channels * inner;
    if (top == INT32_MIN) {
        for (size_t i = 0; i < total; i++) y[i] = 0;
        return eu;
    }
    int32_t E = top - 60;
    for (size_t c = 0; c < channels; c++) { /* coefficients at the common exponent E (a zero one stays 0) */
        coef[c] = u && a[c].m ? ie_shift_round(a[c].m, E - (a[c].e + eu), 0x80000000U) : 0;
        coef[channels + c] = x && b[c].m ? ie_shift_round(b[c].m, E - (b[c].e + ex - 16), 0x80000000U) : 0;
        coef[2 * channels + c] = k[c].m ? ie_shift_round(k[c].m, E - k[c].e, 0x80000000U) : 0;
    }
    affine_job j = {channels, inner, outer * channels, u, x, coef, xm, ie_srshift_make(0), r.key, NULL, {0}};
    pool = total >= AFFINE_SPLIT_MIN ? pool : NULL;
    ie_pool_run(pool, affine_part, &j);
    uint64_t max = 0;
    for (uint32_t p = 0; p < ie_pool_threads(pool); p++) max = j.max[p] > max ? j.max[p] : max;
    int sh = ie_requant_shift(max, 7);
    if (sh < 0 || r.nearest) { /* rare: tiny values or evaluation mode; the general rounding */
        for (size_t base = 0, c = 0; base < total; base += inner, c = (c + 1) % channels)
            for (size_t i = base; i < base + inner; i++) {
                int64_t v = coef[2 * channels + c] + (u ? coef[c] * u[i] : 0) +
                            (x ? coef[channels + c] * ((int64_t)x[i] * 65536 - xm[c]) : 0);
                y[i] = (int8_t)ie_clamp64(ie_shift_round(v, sh, ie_draw(r, (uint32_t)i)), 127);
            }
        return E + sh;
    }
    j.p = ie_srshift_make(sh > 62 ? 62 : sh);
    j.y = y;
    ie_pool_run(pool, affine_part, &j);
    return E + sh;
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
