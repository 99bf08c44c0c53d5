/* Elementary functions in integers; see fixmath.h. */
#include "fixmath.h"

#define Q30 (1LL << 30)

static int64_t round_shift_nearest(int64_t x, int s) { return ie_shift_round(x, s, 0x80000000U); }

/* 2^f for f in [0, 1) as Q30, in Q30: a degree-6 polynomial (max relative error 5e-9). */
static int64_t exp2_frac_q30(int64_t f) {
    static const int64_t c[7] = {1073741824, 744260848, 257945537, 59571654, 10398739, 1330132, 234908};
    int64_t p = c[6];
    for (int i = 5; i >= 0; i--) p = c[i] + round_shift_nearest(p * f, 30);
    return p;
}

int64_t ie_exp2_neg_q16(int64_t t) {
    if (t >= (int64_t)31 << 16) return 0;
    int64_t k = (t + 0xFFFF) >> 16;                         /* 2^-t = 2^-k * 2^(k - t), with k - t in [0, 1) */
    return round_shift_nearest(exp2_frac_q30(((k << 16) - t) << 14), (int)k);
}

int64_t ie_sigmoid_q30(int64_t q, int32_t e) {
    int64_t g = (int64_t)(q < 0 ? -q : q) * IE_LOG2E_Q30; /* |x| log2(e) at e - 30 */
    int sh = 30 - 16 - e;
    int64_t t = sh < -20 || (sh < 0 && g > ((int64_t)40 << 16 >> -sh)) ? ((int64_t)40 << 16)
              : (sh >= 0 ? round_shift_nearest(g, sh) : g << -sh);
    int64_t u = ie_exp2_neg_q16(t); /* e^-|x|, Q30 */
    int64_t pos = (Q30 * Q30 + (Q30 + u) / 2) / (Q30 + u); /* 1 / (1 + e^-|x|) */
    return q >= 0 ? pos : Q30 - pos;
}

int64_t ie_log2_q16(uint64_t x) {
    int k = ie_bitlen64(x) - 1;
    uint64_t y = k > 30 ? x >> (k - 30) : x << (30 - k); /* mantissa in [1, 2), Q30 */
    int64_t r = (int64_t)k << 16;
    for (int b = 15; b >= 0; b--) {
        y = (y * y + ((uint64_t)1 << 29)) >> 30;
        if (y >= (uint64_t)2 << 30) {
            y >>= 1;
            r |= (int64_t)1 << b;
        }
    }
    return r;
}

int64_t ie_gap_log2e_q16(int32_t gap, int32_t e) {
    if (gap == 0) return 0;
    int64_t v = (int64_t)gap * IE_LOG2E_Q30; /* exponent e - 30; want -16 */
    int sh = 30 - 16 - e;
    if (sh < -40) return INT64_MAX / 4; /* logits so large that every gap dwarfs 2^31 */
    if (sh < 0) {
        int64_t lim = (int64_t)62 << 16;
        return v > (lim >> -sh) ? lim : v << -sh;
    }
    return round_shift_nearest(v, sh);
}

/* ---- dyadics ---------------------------------------------------------------------------------- */

static const ie_dyadic ONE = {1, 0}, ZERO = {0, 0};
static const ie_dyadic LOG2E = {1549082005, -30};    /* log2(e) */
static const ie_dyadic TWO_RSQRT_PI = {1211587905, -30}; /* 2 / sqrt(pi) */
#define EXP2_LIMIT (1 << 20)

ie_dyadic ie_dy_exp2(ie_dyadic t) {
    if (t.m == 0) return ONE;
    int32_t top = ie_dy_top(t);
    if (top > 21) return t.m < 0 ? ZERO : ie_dy_norm(1, EXP2_LIMIT); /* outside the documented range */
    /* t in Q30 (rounded when finer), split into k = floor(t) and the fraction f in [0, 1) */
    int64_t q30 = t.e >= -30 ? (int64_t)t.m * ((int64_t)1 << (t.e + 30)) : round_shift_nearest(t.m, -30 - t.e);
    int64_t k = ie_asr64(q30, 30), f = q30 - k * Q30;
    if (k < -EXP2_LIMIT) return ZERO;
    return ie_dy_norm(exp2_frac_q30(f), (int32_t)k - 30);
}

ie_dyadic ie_dy_exp(ie_dyadic x) { return ie_dy_exp2(ie_dy_mul(x, LOG2E)); }

/* |a| < |b| 2^-bits (a, b dyadics): a term too small to change a sum at that precision */
static int negligible(ie_dyadic a, ie_dyadic b, int bits) { return a.m == 0 || ie_dy_top(a) < ie_dy_top(b) - bits; }

ie_dyadic ie_dy_expm1(ie_dyadic x) {
    if (x.m == 0 || ie_dy_top(x) > -1) return ie_dy_add(ie_dy_exp(x), ie_dy_neg(ONE)); /* |x| >= 1/2 */
    ie_dyadic term = x, sum = x; /* sum of x^n / n! */
    for (int n = 2; !negligible(term, sum, 33); n++) {
        ie_dyadic k = {n, 0};
        term = ie_dy_div(ie_dy_mul(term, x), k);
        sum = ie_dy_add(sum, term);
    }
    return sum;
}

/* erf(z) for 0 <= z < 2: 2/sqrt(pi) e^-z^2 sum_n z (2 z^2)^n / (1 3 5 ... (2n + 1)); every term
 * is positive, so the sum keeps its relative precision (at most 25 terms here). */
static ie_dyadic erf_series(ie_dyadic z) {
    ie_dyadic z2 = ie_dy_mul(z, z), w = {z2.m, z2.e + 1}, term = z, sum = z;
    for (int n = 1; !negligible(term, sum, 33); n++) {
        ie_dyadic k = {2 * n + 1, 0};
        term = ie_dy_div(ie_dy_mul(term, w), k);
        sum = ie_dy_add(sum, term);
    }
    return ie_dy_mul(ie_dy_mul(TWO_RSQRT_PI, ie_dy_exp(ie_dy_neg(z2))), sum);
}

/* erfc(z) for z >= 2: e^-z^2 / sqrt(pi) / (z + (1/2) / (z + 1 / (z + (3/2) / (z + ...)))),
 * 32 levels evaluated from the bottom (truncation error below 1e-11 from z = 2 on). */
static ie_dyadic erfc_fraction(ie_dyadic z) {
    ie_dyadic k = z;
    for (int n = 32; n >= 1; n--) k = ie_dy_add(z, ie_dy_div(ie_dy_norm(n, -1), k));
    ie_dyadic tail = ie_dy_exp(ie_dy_neg(ie_dy_mul(z, z)));
    return ie_dy_div(ie_dy_mul(tail, ie_dy_norm(TWO_RSQRT_PI.m, TWO_RSQRT_PI.e - 1)), k);
}

static int below_2(ie_dyadic z) { return ie_dy_top(z) <= 1; } /* 0 <= z < 2 */

ie_dyadic ie_dy_erfc(ie_dyadic x) {
    if (x.m <= 0) return x.m == 0 ? ONE : ie_dy_add(ONE, ie_dy_erf(ie_dy_neg(x)));
    return below_2(x) ? ie_dy_add(ONE, ie_dy_neg(erf_series(x))) : erfc_fraction(x);
}

ie_dyadic ie_dy_erf(ie_dyadic x) {
    if (x.m == 0) return ZERO;
    ie_dyadic z = x.m < 0 ? ie_dy_neg(x) : x;
    ie_dyadic r = below_2(z) ? erf_series(z) : ie_dy_add(ONE, ie_dy_neg(erfc_fraction(z)));
    return x.m < 0 ? ie_dy_neg(r) : r;
}
