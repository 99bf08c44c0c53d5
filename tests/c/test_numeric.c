/* The number format: requantization edge cases, SR unbiasedness, the float boundary. */
#include <string.h>

#include "check.h"
#include "numeric.h"
#include "threads.h"

static uint32_t f2b(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }
static float b2f(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }

static void test_requant_zero_and_powers(void) {
    int64_t x[4] = {0, 0, 0, 0};
    int8_t y[4] = {1, 1, 1, 1};
    ie_rounder r = {ie_stream_key(1, 2, 3), 0};
    int s = ie_requant_s64_s8(x, 4, r, y);
    CHECK(s == -7);
    CHECK(y[0] == 0 && y[3] == 0);
    for (int p = 0; p < 62; p++) { /* max|acc| exactly at each power of two, both signs */
        int64_t v[3] = {(int64_t)1 << p, -((int64_t)1 << p), ((int64_t)1 << p) / 3};
        int8_t q[3];
        int sh = ie_requant_s64_s8(v, 3, r, q);
        CHECK(sh == p + 1 - 7);
        CHECK(q[0] == 64 && q[1] == -64); /* a power of two maps exactly to 64 */
        CHECK(q[2] >= -127 && q[2] <= 127);
    }
}

static void test_never_minus_128(void) {
    /* -(2^k) + tiny would round to -128 without the clamp */
    for (int s = 1; s < 30; s++) {
        int64_t v[2] = {-(((int64_t)128 << s) - 1), 5};
        int8_t q[2];
        for (uint32_t seed = 0; seed < 50; seed++) {
            ie_rounder r = {ie_stream_key(seed, 1, 0), 0};
            int sh = ie_requant_s64_s8(v, 2, r, q);
            CHECK(sh == s);
            CHECK(q[0] >= -127);
        }
    }
}

static void test_shift_round_unbiased(void) {
    /* mean of SR(x / 2^s) over many draws converges to x / 2^s; each draw gives the floor or the
     * floor + 1. Every fraction is far from 0 and 1/2 (s = 40: -18.618..., with low bits set), so
     * truncation, flooring or rounding to nearest would miss the mean by 0.1 or more. */
    int64_t xs[3] = {12345, -0x129e3779bdedLL, 7};
    int ss[3] = {5, 40, 3};
    for (int c = 0; c < 3; c++) {
        double sum = 0;
        const int n = 200000;
        int64_t lo = ie_asr64(xs[c], ss[c]);
        int in_range = 1;
        ie_rounder r = {ie_stream_key(99, (uint32_t)c, 0), 0};
        for (int i = 0; i < n; i++) {
            int64_t v = ie_shift_round(xs[c], ss[c], ie_draw(r, (uint32_t)i));
            in_range &= v == lo || v == lo + 1;
            sum += (double)v;
        }
        double mean = sum / n, want = (double)xs[c] / (double)((int64_t)1 << ss[c]);
        CHECK(in_range);
        CHECK(mean - want < 0.01 && want - mean < 0.01);
    }
    /* nearest mode: half rounds up, deterministic */
    CHECK(ie_shift_round(3, 1, 0x80000000U) == 2);
    CHECK(ie_shift_round(-3, 1, 0x80000000U) == -1);
    CHECK(ie_shift_round(5, -3, 0) == 40);
}

static void test_f32_boundary(void) {
    float vals[] = {0.0f, 1.0f, -1.5f, 3.14159f, 1e-30f, -7.0e20f, 1.17549435e-38f, 1.0e-45f, 65504.0f};
    for (unsigned i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        uint32_t b = f2b(vals[i]);
        int32_t e;
        CHECK(ie_f32_common_exponent(&b, 1, 29, &e) == IE_OK);
        int32_t m = ie_f32_to_fixed(b, e, 29, 0x80000000U);
        /* 29 bits hold a 24-bit mantissa exactly, so the round trip is the identity */
        CHECK(ie_fixed_to_f32_bits(m, e) == (vals[i] == 0.0f ? 0 : b));
    }
    uint32_t nan = 0x7FC00000U, inf = 0x7F800000U;
    int32_t e;
    CHECK(ie_f32_common_exponent(&nan, 1, 7, &e) == IE_ERR_VALUE);
    CHECK(ie_f32_common_exponent(&inf, 1, 7, &e) == IE_ERR_VALUE);
    CHECK(ie_fixed_to_f32_bits(1, 200) == 0x7F800000U);
    CHECK(ie_fixed_to_f32_bits(-3, -1) == f2b(-1.5f));
    CHECK(ie_fixed_to_f32_bits(((int64_t)1 << 40) + 1, 0) == f2b(1099511627776.0f)); /* ties to even */
    CHECK(b2f(ie_fixed_to_f32_bits(1, -149)) == 1.0e-45f);
    ie_dyadic d;
    CHECK(ie_dyadic_from_f32_bits(f2b(0.1f), &d) == IE_OK);
    CHECK(d.m == 1717986944 && d.e == -34); /* 0.1f = 13421773 * 2^-27, widened to 31 bits */
    CHECK(ie_dyadic_from_f32_bits(f2b(-2.0f), &d) == IE_OK && d.m == -(1 << 30) && d.e == -29);
    CHECK(ie_dyadic_from_f32_bits(nan, &d) == IE_ERR_VALUE);
}

static void test_axpby(void) {
    int32_t x[3] = {1 << 20, -(1 << 20), 0}, y[3] = {3, 0, -3};
    ie_dyadic one = {1, 0}, half = {1, -1};
    int32_t out[3];
    ie_rounder r = {0, 1};
    int32_t e = ie_axpby_s32(out, 3, one, x, 0, half, y, 0, r);
    /* 2^20 + 1.5 at the chosen exponent: the x term takes 29 bits, so the sum is exact */
    CHECK(e == 21 - 29);
    CHECK(out[0] == ((1 << 20) << 8) + (3 << 7));
    CHECK(out[2] == -(3 << 7));
    int32_t z[2] = {0, 0};
    CHECK(ie_axpby_s32(out, 2, one, z, 5, one, z, 7, r) == 5 && out[0] == 0);
}

/* The branch-free shift equals ie_shift_round for every shift it takes. */
static void test_srshift_equals_shift_round(void) {
    uint32_t v = 99;
    for (int s = 0; s <= 62; s++) {
        ie_srshift p = ie_srshift_make(s);
        for (int i = 0; i < 2000; i++) {
            v = v * 1103515245u + 12345u;
            int64_t x = ((int64_t)v << 30) ^ (int64_t)(v * 2654435761u);
            x = (i & 1) ? -(x & (((int64_t)1 << 61) - 1)) : (x & (((int64_t)1 << 61) - 1));
            uint32_t r = ie_hash32(v);
            CHECK(ie_srshift_apply(x, p, r) == ie_shift_round(x, s, r));
        }
    }
}

/* The next value of a linear congruential sequence (the tests' fixed pseudo-random inputs). */
static uint32_t lcg_next(uint32_t *v) { return *v = *v * 1103515245u + 12345u; }

/* The next value of the sequence, centred: (v >> shift) - 2^(31 - shift). */
static int32_t lcg_centred(uint32_t *v, int shift) { return (int32_t)(lcg_next(v) >> shift) - (int32_t)(1u << (31 - shift)); }

/* The vectorizable fast paths equal the general per-element rounding, element by element. */
static void test_fast_paths_match_general(void) {
    enum { N = 1000 };
    static int32_t x[N], y[N], out[N];
    static int64_t x64[N];
    static int8_t q[N];
    uint32_t v = 1;
    for (int i = 0; i < N; i++) {
        x[i] = lcg_centred(&v, 1);
        y[i] = lcg_centred(&v, 2);
        x64[i] = (int64_t)x[i] * 12345;
    }
    ie_rounder r = {ie_stream_key(5, 6, 7), 0};
    ie_dyadic a = {1, 0}, b = {-1288490189, -33}; /* a lr-like negative dyadic */
    int32_t e = ie_axpby_s32(out, N, a, x, -20, b, y, -25, r);
    int32_t ta = -20 + ie_bitlen64(ie_absmax_s32(x, N)), tb = -33 - 25 + ie_bitlen64(ie_abs64(b.m) * ie_absmax_s32(y, N));
    int32_t eo = (ta > tb ? ta : tb) - 29;
    CHECK(e == eo);
    for (int i = 0; i < N; i++) {
        uint32_t d = ie_draw(r, (uint32_t)i);
        int64_t want = ie_shift_round(x[i], eo + 20, d) + ie_shift_round((int64_t)b.m * y[i], eo + 58, ie_hash32(d ^ 0x5bd1e995U));
        CHECK(out[i] == want);
    }
    /* a term below 29 bits: exact left shift, through the fast path too */
    int32_t small[N];
    for (int i = 0; i < N; i++) small[i] = x[i] >> 6;
    e = ie_axpby_s32(out, N, a, small, 0, a, y, -40, r);
    for (int i = 0; i < N; i++) {
        uint32_t d = ie_draw(r, (uint32_t)i);
        int32_t t1 = ie_bitlen64(ie_absmax_s32(small, N)), t2 = -40 + ie_bitlen64(ie_absmax_s32(y, N));
        int32_t eo2 = (t1 > t2 ? t1 : t2) - 29;
        CHECK(e == eo2);
        CHECK(out[i] == ie_shift_round(small[i], eo2, d) + ie_shift_round(y[i], eo2 + 40, ie_hash32(d ^ 0x5bd1e995U)));
    }
    for (int s = 1; s <= 32; s += 5) {
        ie_shift_s64_s32(x64, N, s, 29, r, out);
        ie_shift_s32_s8(x, N, s + 20 > 32 ? 32 : s + 20, r, q);
        for (int i = 0; i < N; i++) {
            CHECK(out[i] == (int32_t)ie_clamp64(ie_shift_round(x64[i], s, ie_draw(r, (uint32_t)i)), (1 << 29) - 1));
            int s8 = s + 20 > 32 ? 32 : s + 20;
            CHECK(q[i] == (int8_t)ie_clamp64(ie_shift_round(x[i], s8, ie_draw(r, (uint32_t)i)), 127));
        }
    }
}

/* The two-way int8 sum (32-bit lanes for multipliers up to 2^22, int64 beyond) equals the
 * definition: max |x0 m0 + x1 m1| in int64, then ie_shift_round per element. */
static void test_sum2_matches_definition(void) {
    enum { N = 777 };
    static int8_t x0[N], x1[N], y[N];
    uint32_t v = 7;
    for (int i = 0; i < N; i++) {
        uint32_t r = lcg_next(&v);
        x0[i] = (int8_t)(r >> 24);
        x1[i] = (int8_t)(r >> 16);
    }
    x0[0] = x1[0] = -128; /* the extremes: -128 (-2^22 - 2^22) = 2^30, -128 (2^23 + 2^23) = -2^31 */
    x0[1] = x1[1] = 127;
    x0[2] = 1;
    x1[2] = 0;
    const int ks[] = {0, 1, 5, 21, 22, 23, 40};
    for (int nearest = 0; nearest < 2; nearest++)
        for (int a = 0; a < 7; a++)
            for (int b = 0; b < 7; b++)
                for (int sg = 0; sg < 4; sg++) {
                    int64_t m0 = ((int64_t)1 << ks[a]) * (sg & 1 ? -1 : 1), m1 = ((int64_t)1 << ks[b]) * (sg & 2 ? -1 : 1);
                    ie_rounder r = {ie_stream_key(3, (uint32_t)(a * 7 + b), (uint64_t)sg), (uint32_t)nearest};
                    const size_t off[3] = {0, 2, 0}, len[3] = {1, 1, N - 2}; /* the extremes, a tiny value (shift < 0), all */
                    for (int t = 0; t < 3; t++) {
                        const int8_t *a0 = x0 + off[t], *a1 = x1 + off[t];
                        size_t n = len[t];
                        uint64_t max = 0;
                        for (size_t i = 0; i < n; i++) {
                            uint64_t m = ie_abs64(a0[i] * m0 + a1[i] * m1);
                            max = m > max ? m : max;
                        }
                        int sh = ie_requant_shift(max, 7);
                        CHECK(ie_sum2_s8(a0, m0, a1, m1, n, r, y) == sh);
                        for (size_t i = 0; i < n; i++)
                            CHECK(y[i] == (int8_t)ie_clamp64(ie_shift_round(a0[i] * m0 + a1[i] * m1, sh, ie_draw(r, (uint32_t)i)), 127));
                    }
                }
}

/* IE_REQUANT_EACH and IE_REQUANT_EACH32 round nothing when every value is a multiple of 2^shift
 * (ReLU6's int8 values): that path must give the definition's bytes. Values q 2^k (|q| <= top),
 * plain, with one value off the multiples (odd), or with one large value that puts the shift
 * above k (big), so the shift lands below, at and above k; both rounding modes, both lane widths. */
static int64_t exact_case(const int8_t *q, int i, int k, int top, int var) {
    if (var == 2 && i == 0) return (int64_t)1 << (k + 9);
    return (int64_t)(q[i] % (top + 1)) * ((int64_t)1 << k) + (var == 1 && i == 150);
}

static void test_exact_shifts_match_definition(void) {
    enum { N = 301 };
    static int8_t q[N], y[N], y32[N];
    uint32_t v = 11;
    for (int i = 0; i < N; i++) {
        int8_t r = (int8_t)(lcg_next(&v) >> 24);
        q[i] = r == -128 ? -127 : r;
    }
    for (int nearest = 0; nearest < 2; nearest++)
        for (int k = 0; k <= 20; k += 5)
            for (int top = 1; top <= 127; top = top * 3 + 1) /* the largest |q|: 1, 4, 13, 40, 121 */
                for (int var = 0; var < 3; var++) {
                    ie_rounder r = {ie_stream_key(5, (uint32_t)k, (uint64_t)(top * 3 + var)), (uint32_t)nearest};
                    int sh, sh32;
                    IE_REQUANT_EACH(N, i, exact_case(q, (int)i, k, top, var), r, y, sh);
                    IE_REQUANT_EACH32(N, i, (int32_t)exact_case(q, (int)i, k, top, var), r, y32, sh32);
                    CHECK(sh == sh32);
                    for (int i = 0; i < N; i++) {
                        int64_t want = ie_clamp64(ie_shift_round(exact_case(q, i, k, top, var), sh, ie_draw(r, (uint32_t)i)), 127);
                        CHECK(y[i] == want && y32[i] == want);
                    }
                }
}

/* The BatchNorm backward's affine map (u and x) picks its shift from a 32-bit approximation of
 * max |v|, and the exact pass where that max lies near a power of two. With a = b = 1 and
 * k = m 2^kx at these exponents, v = 2^53 (u + x) + m 2^kx exactly, so the definition is written
 * out here and maxima are placed on both sides of 2^59 and 2^60, at distances around the
 * approximation's 257 * 2^32 margin, both signs, and at random. */
static void test_affine_max_near_powers_of_two(void) {
    enum { N = 40 };
    static const int32_t offsets[][2] = {{0, 0}, {1, 0}, {-1, 0}, {1, 33}, {-1, 33}, {-1, 40}, {-1, 41}, {1, 41}, {-1, 45}};
    int8_t u[N], x[N], y[N];
    int64_t coef[3], xm = 0;
    ie_dyadic one = {1, 0};
    uint32_t seed = 12345;
    for (int trial = 0; trial < 400; trial++) {
        int32_t m = offsets[trial % 9][0], kx = offsets[trial % 9][1];
        if (trial >= 36) {
            m = (int32_t)(ie_hash32(seed++) % 4096) * (trial % 2 ? -1 : 1);
            kx = (int32_t)(ie_hash32(seed++) % 46);
        }
        for (int i = 0; i < N; i++) { /* small values, then the max at one element */
            u[i] = (int8_t)((int)(ie_hash32(seed++) % 61) - 30);
            x[i] = (int8_t)((int)(ie_hash32(seed++) % 61) - 30);
        }
        int top = trial < 36 ? 64 << (trial / 9 % 2) : (int)(ie_hash32(seed++) % 200) - 100; /* u + x */
        int sign = trial / 18 % 2 ? -1 : 1;
        u[7] = (int8_t)(sign * (top >= 64 ? top / 2 : top));
        x[7] = (int8_t)(sign * (top >= 64 ? top / 2 : 0));
        ie_dyadic k = {m, kx - 53};
        ie_rounder r = {ie_stream_key(7, 1, (uint64_t)trial), 0};
        int32_t e = ie_channel_affine_s8(NULL, 1, 1, N, u, 0, NULL, x, NULL, 0, &xm, &one, &one, &k, coef, r, y);
        uint64_t max = 0;
        int64_t v[N];
        for (int i = 0; i < N; i++) {
            v[i] = ((int64_t)u[i] + x[i]) * ((int64_t)1 << 53) + (int64_t)m * ((int64_t)1 << kx);
            max = ie_abs64(v[i]) > max ? ie_abs64(v[i]) : max;
        }
        int sh = ie_requant_shift(max, 7);
        CHECK(coef[0] == (int64_t)1 << 53 && coef[1] == (int64_t)1 << 37); /* the exponents assumed above */
        CHECK(e == -53 + sh);
        for (int i = 0; i < N; i++) CHECK(y[i] == (int8_t)ie_clamp64(ie_shift_round(v[i], sh, ie_draw(r, (uint32_t)i)), 127));
    }
}

/* The optimizer's split passes: the same bytes as the element-by-element definition for every
 * split (a pool of two parts when there are threads) and every way axpby computes a term, and
 * the max each returns is that of what it wrote. */
static void test_split_passes(void) {
    enum { N = (1 << 15) + 999 }; /* above the size that splits */
    static int32_t x[N], y[N], out[N], want[N];
    static int64_t g[N], gi[N];
    static int8_t q[N];
    uint32_t v = 7;
    for (int i = 0; i < N; i++) {
        x[i] = lcg_centred(&v, 3);
        y[i] = lcg_centred(&v, 3);
        g[i] = (int64_t)x[i] * 3000 + (i & 1);
    }
    ie_pool *pool = ie_pool_create(2);
    ie_rounder r = {ie_stream_key(9, 8, 7), 0}, near = {0, 1};
    CHECK(ie_absmax_s64_split(pool, g, N) == ie_absmax_s64(g, N));
    for (int s = -3; s <= 40; s++) { /* exact, 32-bit lanes, 64-bit lanes; odd s to nearest */
        ie_rounder rs = s & 1 ? near : r;
        uint64_t m = ie_shift_s64_s32_split(pool, g, N, s, 29, rs, out);
        for (int i = 0; i < N; i++)
            want[i] = (int32_t)ie_clamp64(ie_shift_round(g[i], s, ie_draw(rs, (uint32_t)i)), (1 << 29) - 1);
        CHECK(memcmp(out, want, sizeof out) == 0 && m == ie_absmax_s32(want, N));
        /* in place over the int64 input, as the optimizer runs it: the same bytes, every size
         * around the local head and the chunk boundaries, with and without the pool */
        static const size_t sizes[] = {1, 63, 64, 65, 128, 129, 4097, N};
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t n = sizes[k];
            memcpy(gi, g, sizeof(int64_t) * n);
            m = ie_shift_s64_s32_inplace_split(k & 1 ? NULL : pool, gi, n, s, 29, rs);
            CHECK(memcmp(gi, want, sizeof(int32_t) * n) == 0 && m == ie_absmax_s32(want, n));
        }
        m = ie_shift_s32_s8_bits_split(pool, x, N, s, 7, rs, q);
        int ok = 1;
        uint64_t qmax = 0;
        for (int i = 0; i < N; i++) {
            int8_t q0 = (int8_t)ie_clamp64(ie_shift_round(x[i], s, ie_draw(rs, (uint32_t)i)), 127);
            ok &= q[i] == q0;
            qmax = ie_abs64(q0) > qmax ? ie_abs64(q0) : qmax;
        }
        CHECK(ok && m == qmax);
    }
    /* a, ex, b, ey: the update (exact master term), momentum with the gradient ahead (exact) or
     * behind (m = 1, 32-bit lanes), two wide terms, m = 1 beyond 31 bits, and to nearest */
    const struct { ie_dyadic a; int32_t ex; ie_dyadic b; int32_t ey; int nearest; } cases[] = {
        {{1, 0}, -30, {-1374389535, -37}, -30, 0}, {{1932735283, -31}, -30, {1, 0}, -30, 0},
        {{1932735283, -31}, -30, {1, 0}, -33, 0},  {{1932735283, -31}, -30, {-1374389535, -20}, -30, 0},
        {{1932735283, -31}, -30, {1, 0}, -70, 0},  {{1932735283, -31}, -30, {1, 0}, -33, 1},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ie_rounder rc = cases[c].nearest ? near : r;
        memcpy(out, x, sizeof out); /* in place, as the optimizer runs it */
        uint64_t m = 0;
        int32_t e = ie_axpby_s32_split(pool, out, N, cases[c].a, out, cases[c].ex, ie_absmax_s32(x, N), cases[c].b, y,
                                       cases[c].ey, ie_absmax_s32(y, N), IE_TERM_BITS, rc, &m);
        CHECK(e == ie_axpby_s32(want, N, cases[c].a, x, cases[c].ex, cases[c].b, y, cases[c].ey, rc));
        int ok = 1;
        for (int i = 0; i < N; i++) {
            uint32_t d = ie_draw(rc, (uint32_t)i);
            int64_t t = ie_shift_round((int64_t)cases[c].a.m * x[i], e - (cases[c].a.e + cases[c].ex), d) +
                        ie_shift_round((int64_t)cases[c].b.m * y[i], e - (cases[c].b.e + cases[c].ey),
                                       ie_hash32(d ^ 0x5bd1e995U));
            ok &= out[i] == t && want[i] == t;
        }
        CHECK(ok && m == ie_absmax_s32(out, N));
    }
    ie_pool_free(pool);
}

/* The vectorized input conversion against the per-element definition: normal values over a wide
 * range, zeros, both signs, and arrays whose largest value is a denormal (shifts below 0, the
 * general loop). */
static void test_f32_to_s8_matches_definition(void) {
    enum { N = 300 };
    uint32_t v[N], seed = 99;
    int8_t fast[N];
    for (int trial = 0; trial < 60; trial++) {
        for (int i = 0; i < N; i++) {
            uint32_t h = ie_hash32(seed++);
            uint32_t biased = trial % 3 == 2 ? 0 : 100 + h % 60; /* every third array denormal only */
            v[i] = (h & 0x80000000U) | (biased << 23) | (ie_hash32(h) & 0x7FFFFF >> (trial % 23));
            if (h % 17 == 0) v[i] = h & 0x80000000U; /* +-0 */
        }
        int32_t e;
        CHECK(ie_f32_common_exponent(v, N, 7, &e) == IE_OK);
        ie_rounder r = {ie_stream_key(3, 4, (uint64_t)trial), 0};
        ie_f32_to_s8(v, N, e, r, fast);
        for (int i = 0; i < N; i++) CHECK(fast[i] == (int8_t)ie_f32_to_fixed(v[i], e, 7, ie_draw(r, (uint32_t)i)));
    }
}

/* ---- AdamW's arithmetic ------------------------------------------------------------------------ */

static uint64_t rand64(uint32_t *seed) {
    uint32_t a = ie_hash32((*seed)++), b = ie_hash32((*seed)++);
    return (uint64_t)a << 32 | b;
}

/* ie_mulshift is SR of the exact product: equal to ie_shift_round where the product fits int64,
 * and (where the compiler has 128-bit integers) to floor((c x + d 2^(s-32)) / 2^s) for any
 * product. */
static void test_mulshift_is_sr(void) {
    uint32_t seed = 7;
    for (int i = 0; i < 20000; i++) {
        uint64_t x = rand64(&seed) >> (33 + i % 31);
        uint32_t c = (uint32_t)(rand64(&seed) >> 33), d = ie_hash32(seed++);
        int s = i % 63;
        CHECK(ie_mulshift_apply(x, c, ie_mulshift_make(s), d) == (uint64_t)ie_shift_round((int64_t)(x * c), s, d));
    }
#if defined(__SIZEOF_INT128__)
    for (int i = 0; i < 20000; i++) {
        uint64_t x = rand64(&seed) >> (2 + i % 40);
        uint32_t c = (uint32_t)(rand64(&seed) >> 33) | 1, d = ie_hash32(seed++);
        unsigned __int128 prod = (unsigned __int128)x * c;
        int bits = 0;
        while (bits < 128 && prod >> bits) bits++;
        int lo = bits > 61 ? bits - 61 : 0, s = lo + i % (95 - lo); /* results below 2^61, shifts to 94 */
        unsigned __int128 draw = s >= 32 ? (unsigned __int128)d << (s - 32) : (uint64_t)d >> (32 - s);
        uint64_t want = (uint64_t)((prod + draw) >> s);
        CHECK(ie_mulshift_apply(x, c, ie_mulshift_make(s), d) == want);
    }
#endif
}

static double dsqrt(double a) { /* Newton, so the test needs no libm */
    if (a <= 0) return 0;
    double y = a > 1 ? a : 1;
    for (int i = 0; i < 200; i++) y = 0.5 * (y + a / y);
    return y;
}

static double pow2(int e) {
    double p = 1;
    for (; e > 0; e--) p *= 2;
    for (; e < 0; e++) p /= 2;
    return p;
}

/* Newton's rsqrt and reciprocal over their whole input ranges: relative errors as documented. */
static void test_rsqrt_and_recip(void) {
    double worst_rs = 0, worst_rc = 0;
    for (uint64_t nq = (uint64_t)1 << 30; nq < (uint64_t)1 << 32; nq += 4099) {
        double n = (double)nq / 2147483648.0, y = (double)ie_rsqrt_q30(nq) / 1073741824.0;
        double e = y * y * n - 1; /* twice the relative error of y */
        e = e < 0 ? -e / 2 : e / 2;
        worst_rs = e > worst_rs ? e : worst_rs;
        if (nq >> 31) {
            double r = (double)ie_recip_q31(nq) / 2147483648.0 * n - 1;
            r = r < 0 ? -r : r;
            worst_rc = r > worst_rc ? r : worst_rc;
        }
    }
    printf("rsqrt relative error %.3g, reciprocal %.3g\n", worst_rs, worst_rc);
    CHECK(worst_rs < pow2(-26) && worst_rc < pow2(-28));
}

/* The step direction m / (sqrt(v) + eps) against double over wide ranges of v, m and eps: within
 * 2^-24 relative plus the one SR ulp; and its edges (v or eps or both 0, the clamp). */
static void test_adam_direction(void) {
    uint32_t seed = 11;
    double worst = 0;
    int compared = 0;
    for (int i = 0; i < 300000; i++) {
        int ve = (int)(ie_hash32(seed++) % 200) - 150, me = -50 + (int)(ie_hash32(seed++) % 30), eu = -27;
        uint64_t v = rand64(&seed) >> (2 + ie_hash32(seed++) % 62);
        int32_t m = (int32_t)(rand64(&seed) >> 34) - (1 << 29);
        int eps_e = -40 - (int)(ie_hash32(seed++) % 90);
        uint64_t eps_m = i % 5 == 0 ? 0 : (rand64(&seed) >> 33) | (1u << 30); /* eps 0 or of 31 bits */
        int odd = ve & 1, h = (ve - odd) / 2;
        ie_adam_dir c = {eps_m, eps_e, eps_e - h, h, odd, eu - me + 93, 1u << 30};
        int32_t u = ie_adam_dir_apply(&c, v, m, ie_hash32(seed++));
        double den = dsqrt((double)v * pow2(ve)) + (double)eps_m * pow2(eps_e);
        if (den == 0) {
            CHECK(u == (m > 0 ? 1 << 30 : m < 0 ? -(1 << 30) : 0));
            continue;
        }
        double ref = (double)m * pow2(me - eu) / den;
        if (ref >= 1 << 30 || ref <= -(1 << 30)) {
            CHECK(u == (ref > 0 ? 1 << 30 : -(1 << 30)));
            continue;
        }
        double err = (double)u - ref;
        err = err < 0 ? -err : err;
        CHECK(err <= 1 + pow2(-24) * (ref < 0 ? -ref : ref));
        if (ref > 1 << 26 || ref < -(1 << 26)) {
            double rel = (err - 1 > 0 ? err - 1 : 0) / (ref < 0 ? -ref : ref);
            worst = rel > worst ? rel : worst;
            compared++;
        }
    }
    printf("direction: relative error beyond the SR ulp %.3g over %d large values\n", worst, compared);
    CHECK(compared > 10000);
}

/* 1 + b + ... + b^(t-1) against double, for b from 0 to 1 - 2^-24 and t to 2^40: relative error
 * below (192 + 1/(1-b)) 2^-31 (the rounding of b^k grows with k, and matters while b^k is not
 * small, that is for k up to about 1/(1-b)). */
static void test_powsum(void) {
    const float betas[] = {0.0f, 0.5f, 0.9f, 0.999f, 0.99999f, 1.0f - 1.0f / 16777216.0f};
    const uint64_t ts[] = {1, 2, 3, 7, 10, 100, 1000, 4097, 100000, (uint64_t)1 << 40};
    for (size_t i = 0; i < sizeof betas / sizeof betas[0]; i++)
        for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) {
            ie_dyadic b;
            ie_dyadic_from_f32_bits(f2b(betas[i]), &b);
            double bd = betas[i], p = 1, base = bd;
            for (uint64_t t = ts[j]; t; t >>= 1, base *= base)
                if (t & 1) p *= base;
            double want = bd == 0 ? 1 : (1 - p) / (1 - bd), got = (double)ie_dy_powsum(b, ts[j]).m * pow2(ie_dy_powsum(b, ts[j]).e);
            double rel = (got - want) / want, bound = (192 + 1 / (1 - bd)) * pow2(-31);
            CHECK(rel < bound && rel > -bound);
        }
}

int main(void) {
    test_mulshift_is_sr();
    test_rsqrt_and_recip();
    test_adam_direction();
    test_powsum();
    test_affine_max_near_powers_of_two();
    test_f32_to_s8_matches_definition();
    test_sum2_matches_definition();
    test_exact_shifts_match_definition();
    test_srshift_equals_shift_round();
    test_fast_paths_match_general();
    test_split_passes();
    test_requant_zero_and_powers();
    test_never_minus_128();
    test_shift_round_unbiased();
    test_f32_boundary();
    test_axpby();
    return CHECK_DONE();
}
