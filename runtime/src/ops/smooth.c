/* The smooth activations' tables (GELU in its erf and tanh forms, Tanh, Erf, and powers: Sqrt,
 * Reciprocal, Pow with 2p an integer) and the elementary functions on dyadics they are made of:
 * exp2, exp, expm1, erf/erfc. Each entry is a dyadic (31-bit mantissa; every operation rounds to
 * nearest); the table then meets at one exponent, its largest entry with 54 bits (dY times it
 * stays below 2^62). ops/activation.c applies the tables.
 * The definitions where the real function has none:
 *   x^p for p = k/2 with k odd (Sqrt, Pow 0.5, -0.5) is 0 for x < 0, and so is its slope;
 *   x^p for p < 0 (Reciprocal, Pow -1, -0.5) is 0 at x = 0 (1/0 := 0), slope 0 there;
 *   the slope of Sqrt (and of x^p, 0 < p < 1) at x = 0 is 0. */
#include "ops.h"

#define SMOOTH_BITS 54

static const ie_dyadic ONE = {1, 0}, ZERO = {0, 0};
static const ie_dyadic LOG2E = {1549082005, -30};        /* log2(e) */
static const ie_dyadic TWO_RSQRT_PI = {1211587905, -30}; /* 2 / sqrt(pi) */

/* ---- elementary functions ---------------------------------------------------------------------- */

#define EXP2_LIMIT (1 << 20)

ie_dyadic ie_dy_exp2(ie_dyadic t) {
    if (t.m == 0) return ONE;
    int32_t top = ie_dy_top(t);
    if (top > 21) return t.m < 0 ? ZERO : ie_dy_norm(1, EXP2_LIMIT); /* outside the documented range */
    /* t in Q30 (rounded when finer), split into k = floor(t) and the fraction f in [0, 1) */
    int64_t q30 = t.e >= -30 ? (int64_t)t.m * ((int64_t)1 << (t.e + 30)) : ie_shift_round(t.m, -30 - t.e, 0x80000000U);
    int64_t k = ie_asr64(q30, 30), f = q30 - k * ((int64_t)1 << 30);
    if (k < -EXP2_LIMIT) return ZERO;
    return ie_dy_norm(ie_exp2_frac_q30(f), (int32_t)k - 30);
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

/* ---- the smooth kinds ------------------------------------------------------------------------ */

static const ie_dyadic RSQRT_2 = {1518500250, -31};     /* 1 / sqrt(2) */
static const ie_dyadic RSQRT_2PI = {1713444047, -32};   /* 1 / sqrt(2 pi) */
static const ie_dyadic SQRT_2_PI = {1713444047, -31};   /* sqrt(2 / pi) */
static const ie_dyadic GELU_C = {1536395701, -35};      /* 0.044715 */
static const ie_dyadic GELU_3C = {1152296776, -33};     /* 3 * 0.044715 */

static ie_dyadic dy_half(ie_dyadic a) { a.e--; return a; }

int ie_pow_halves_of(ie_dyadic p) {
    if (p.m == 0) return 0;
    if (p.e > 4 || p.e < -40) return INT32_MIN;
    int64_t num = (int64_t)p.m * ((int64_t)1 << (p.e + 1 > 0 ? p.e + 1 : 0)), den = (int64_t)1 << (p.e + 1 < 0 ? -(p.e + 1) : 0);
    if (num % den || num / den < -IE_POW_MAX_HALVES || num / den > IE_POW_MAX_HALVES) return INT32_MIN;
    return (int)(num / den);
}

/* x^(k/2) with the definitions above (k = 0 gives 1, 0^0 included). */
static ie_dyadic pow_halves(ie_dyadic x, int k) {
    if (k == 0) return ONE;
    if (x.m == 0 || (x.m < 0 && k % 2)) return ZERO;
    ie_dyadic base = k % 2 ? ie_dy_sqrt(x) : x, r = ONE;
    for (int i = 0; i < (k < 0 ? -k : k) / (k % 2 ? 1 : 2); i++) r = ie_dy_mul(r, base);
    return k < 0 ? ie_dy_div(ONE, r) : r;
}

/* sigmoid(2 s) and 1 - sigmoid(2 s) for s >= 0, each with its relative precision (w = e^-2s). */
static void sigmoid2(ie_dyadic s, ie_dyadic *sig, ie_dyadic *rest) {
    ie_dyadic w = ie_dy_exp(ie_dy_norm(-(int64_t)s.m, s.e + 1)), d = ie_dy_add(ONE, w);
    *sig = ie_dy_div(ONE, d);
    *rest = ie_dy_div(w, d);
}

/* f, or f' with slope set, of a smooth kind at x and at -x (x >= 0): the odd and even symmetries
 * halve the work, and each side keeps its own relative precision (the GELU tails come from erfc
 * and e^-2s, never from 1 - something). p0 = Pow's exponent. */
static void smooth_pair(int kind, ie_dyadic p0, ie_dyadic x, int slope, ie_dyadic *pos, ie_dyadic *neg) {
    ie_dyadic x2 = ie_dy_mul(x, x); /* exact: x = q 2^e */
    switch (kind) {
    case ACT_GELU: { /* x Phi(x); Phi(x) + x phi(x); Phi(-x) = erfc(x / sqrt 2) / 2 */
        ie_dyadic lower = dy_half(ie_dy_erfc(ie_dy_mul(x, RSQRT_2))), upper = ie_dy_add(ONE, ie_dy_neg(lower));
        if (!slope) {
            *pos = ie_dy_mul(x, upper);
            *neg = ie_dy_neg(ie_dy_mul(x, lower));
            return;
        }
        ie_dyadic d = ie_dy_mul(x, ie_dy_mul(RSQRT_2PI, ie_dy_exp(ie_dy_neg(dy_half(x2)))));
        *pos = ie_dy_add(upper, d);
        *neg = ie_dy_add(lower, ie_dy_neg(d));
        return;
    }
    case ACT_GELU_TANH: { /* 0.5 x (1 + tanh s) = x sigmoid(2 s), s = sqrt(2/pi) (x + 0.044715 x^3), odd */
        ie_dyadic sig, rest, s = ie_dy_mul(SQRT_2_PI, ie_dy_add(x, ie_dy_mul(GELU_C, ie_dy_mul(x2, x))));
        sigmoid2(s, &sig, &rest);
        if (!slope) {
            *pos = ie_dy_mul(x, sig);
            *neg = ie_dy_neg(ie_dy_mul(x, rest));
            return;
        }
        ie_dyadic ds = ie_dy_mul(SQRT_2_PI, ie_dy_add(ONE, ie_dy_mul(GELU_3C, x2))); /* s', even */
        ie_dyadic d = ie_dy_mul(x, ie_dy_mul(ie_dy_mul(sig, rest), ie_dy_norm(ds.m, ds.e + 1))); /* x sigmoid'(2s) 2 s' */
        *pos = ie_dy_add(sig, d);
        *neg = ie_dy_add(rest, ie_dy_neg(d));
        return;
    }
    case ACT_TANH: { /* tanh x = -u / (2 + u), u = e^-2x - 1; tanh' = 4 w / (1 + w)^2, w = e^-2x */
        ie_dyadic twice = {-x.m, x.e + 1};
        if (slope) {
            ie_dyadic w = ie_dy_exp(twice), d = ie_dy_add(ONE, w);
            *pos = *neg = ie_dy_div(ie_dy_norm(w.m, w.e + 2), ie_dy_mul(d, d));
            return;
        }
        ie_dyadic u = ie_dy_expm1(twice);
        *pos = ie_dy_div(ie_dy_neg(u), ie_dy_add(ie_dy_norm(2, 0), u));
        *neg = ie_dy_neg(*pos);
        return;
    }
    case ACT_ERF: /* erf x, odd; 2 / sqrt(pi) e^-x^2, even */
        *pos = slope ? ie_dy_mul(TWO_RSQRT_PI, ie_dy_exp(ie_dy_neg(x2))) : ie_dy_erf(x);
        *neg = slope ? *pos : ie_dy_neg(*pos);
        return;
    default: { /* x^(k/2); (k/2) x^(k/2 - 1) */
        int k = kind == ACT_SQRT ? 1 : kind == ACT_RECIPROCAL ? -2 : ie_pow_halves_of(p0);
        ie_dyadic scale = {slope ? k : 1, slope ? -1 : 0};
        *pos = ie_dy_mul(scale, pow_halves(x, slope ? k - 2 : k));
        *neg = ie_dy_mul(scale, pow_halves(ie_dy_neg(x), slope ? k - 2 : k));
        return;
    }
    }
}

int32_t ie_smooth_table(int kind, ie_dyadic p0, int32_t ex, int slope, ie_dyadic *stage, int64_t tab[256]) {
    for (int q = 0; q <= 128; q++) {
        ie_dyadic x = {q, ex}, pos, neg;
        smooth_pair(kind, p0, x, slope, &pos, &neg);
        if (q < 128) stage[128 + q] = pos;
        if (q > 0) stage[128 - q] = neg;
    }
    return ie_dy_common(stage, 256, SMOOTH_BITS, tab);
}
