/* Integer number format helpers: bit lengths, shifts with rounding, the counter-based RNG,
 * requantization, IEEE-754 bit conversions and dyadic arithmetic. No floating point. */
#ifndef IE_NUMERIC_H
#define IE_NUMERIC_H

#include <stddef.h>
#include <stdint.h>

#include "intedge.h"

typedef struct ie_pool ie_pool;

/* Hot elementwise loops are compiled for several x86 ISAs and picked at load time (GCC
 * target_clones). It is the same C, so every clone gives the same integers. */
#if defined(__x86_64__) && defined(__GNUC__) && __GNUC__ >= 11 && !defined(__clang__) && defined(__linux__) && \
    !defined(IE_NO_CLONES)
#define IE_HOT __attribute__((target_clones("default", "avx2", "arch=x86-64-v4")))
#else
#define IE_HOT
#endif

/* For helpers of hot loops too large for the compiler to inline by itself: a call in the loop
 * would stop it from vectorizing. */
#if defined(__GNUC__) || defined(__clang__)
#define IE_INLINE static inline __attribute__((always_inline))
#else
#define IE_INLINE static inline
#endif

/* Speed-only specializations (same bytes as the general path they bypass) are left out of
 * size-optimized builds (-Os, the microcontroller builds), where flash counts more than cycles;
 * the host and MCU demos comparing bytes then cover both paths. */
#if defined(__OPTIMIZE_SIZE__)
#define IE_FAST_PATHS 0
#else
#define IE_FAST_PATHS 1
#endif

/* Number of significant bits of x (0 for 0). */
static inline int ie_bitlen64(uint64_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return x ? 64 - __builtin_clzll(x) : 0;
#else
    int n = 0;
    while (x) { n++; x >>= 1; }
    return n;
#endif
}

static inline uint64_t ie_abs64(int64_t x) { return x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x; }

/* floor(x / 2^s) for 0 <= s <= 63, without relying on implementation-defined >> of negatives. */
static inline int64_t ie_asr64(int64_t x, int s) {
    return x >= 0 ? (int64_t)((uint64_t)x >> s) : -(int64_t)(((uint64_t)(-(x + 1)) >> s)) - 1;
}

/* ---- counter-based random numbers ----------------------------------------------------------
 * A stream key is derived from (seed, stream, step); element i of the stream draws
 * hash32(i * golden ^ key). hash32 is a bijection, so within a stream no two elements collide. */
static inline uint32_t ie_hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

uint32_t ie_stream_key(uint64_t seed, uint32_t stream, uint64_t step);

/* How a shift rounds: stochastically (uniform bits from the stream) or to nearest (half up).
 * Rounding to nearest is SR with the constant draw 2^31, so both share one code path. */
typedef struct ie_rounder {
    uint32_t key;
    uint32_t nearest;
} ie_rounder;

static inline uint32_t ie_draw(ie_rounder r, uint32_t index) {
    return r.nearest ? 0x80000000U : ie_hash32((index * 0x9E3779B9U) ^ r.key);
}

/* x * 2^-s rounded by the draw r (uniform in [0, 2^32)). s <= 0 is an exact left shift, which
 * the caller keeps in range. |x| < 2^62. Shifts beyond 62 act as 62 (a value below 2^-62 ulp). */
static inline int64_t ie_shift_round(int64_t x, int s, uint32_t r) {
    if (s <= 0) {
        if (s < -62) return x == 0 ? 0 : (x > 0 ? INT64_MAX : -INT64_MAX); /* callers keep this out of reach */
        return x * ((int64_t)1 << -s);
    }
    if (s > 62) s = 62;
    if (s <= 32) return ie_asr64(x + (int64_t)(r >> (32 - s)), s);
    int64_t q = ie_asr64(x, s);
    uint64_t frac = ((uint64_t)x & (((uint64_t)1 << s) - 1)) >> (s - 32);
    return q + (((uint64_t)r + frac) >> 32 ? 1 : 0);
}

/* ie_shift_round for a loop-invariant shift s in [0, 62], branch-free so loops vectorize:
 * floor((floor(x / 2^rsh) + floor(r / 2^lsh)) / 2^s32). For s <= 32 that is ie_shift_round's
 * floor((x + r / 2^(32 - s)) / 2^s); beyond, x first drops its low s - 32 bits, which leaves the
 * top 32 bits of the fraction below the quotient's, and the whole draw rounds those. Equal to
 * ie_shift_round. */
typedef struct ie_srshift {
    int rsh, lsh, s32; /* s - 32 beyond 32 (else 0), 32 - s below 32 (else 0), min(s, 32) */
} ie_srshift;

static inline ie_srshift ie_srshift_make(int s) {
    ie_srshift p = {s > 32 ? s - 32 : 0, s < 32 ? 32 - s : 0, s > 32 ? 32 : s};
    return p;
}

static inline int64_t ie_srshift_apply(int64_t x, ie_srshift p, uint32_t r) {
    return ((x >> p.rsh) + (int64_t)((uint64_t)r >> p.lsh)) >> p.s32; /* GCC/Clang: >> is arithmetic */
}

/* ie_srshift_apply for an int32 x and 1 <= s <= 31 in 32-bit arithmetic (16 lanes per AVX-512
 * vector, not 8): the fraction is x's low s bits at the top of a word, and the carry of
 * draw + fraction out of 32 bits is the round-up. */
static inline int32_t ie_srshift32(int32_t x, int s, uint32_t draw) {
    uint32_t frac = (uint32_t)x << (32 - s);
    return (x >> s) + (draw + frac < draw);
}

static inline int64_t ie_clamp64(int64_t x, int64_t lim) { return x > lim ? lim : (x < -lim ? -lim : x); }

/* Shift that brings a maximum magnitude `max_abs` to at most `bits` significant bits:
 * s = bitlen(max_abs) - bits (negative means an exact left shift). */
static inline int ie_requant_shift(uint64_t max_abs, int bits) { return ie_bitlen64(max_abs) - bits; }

/* ---- requantization of wide arrays -------------------------------------------------------- */

uint64_t ie_absmax_s64(const int64_t *x, size_t n);
uint64_t ie_absmax_s32(const int32_t *x, size_t n);

/* y = clamp(round(x * 2^-s), +-(2^bits - 1)); the exponent grows by s. */
void ie_shift_s64_s8(const int64_t *x, size_t n, int s, ie_rounder r, int8_t *y);
void ie_shift_s64_s8_bits(const int64_t *x, size_t n, int s, int bits, ie_rounder r, int8_t *y);
void ie_shift_s64_s32(const int64_t *x, size_t n, int s, int bits, ie_rounder r, int32_t *y);
void ie_shift_s32_s32(const int32_t *x, size_t n, int s, int bits, ie_rounder r, int32_t *y);
void ie_shift_s32_s8(const int32_t *x, size_t n, int s, ie_rounder r, int8_t *y); /* clamp +-127 */

/* Rounds n values given by an expression in the index i to int8 at a known shift (stored in
 * y[i]); element i draws from index base + i of the stream. The usual stochastic right shift takes
 * the branch-free ie_srshift path (equal to ie_shift_round, and it vectorizes; a speed-only path). */
#define IE_ROUND_EACH(n, i, VALUE, r, y, shift, base)                                                        \
    do {                                                                                                    \
        if (IE_FAST_PATHS && !(r).nearest && (shift) >= 0 && (shift) <= 62) {                               \
            ie_srshift p_ = ie_srshift_make(shift);                                                         \
            for (size_t i = 0; i < (n); i++) {                                                              \
                int64_t v_ = ie_srshift_apply((VALUE), p_, ie_hash32(((uint32_t)((base) + i) * 0x9E3779B9U) ^ (r).key)); \
                (y)[i] = (int8_t)(v_ > 127 ? 127 : (v_ < -127 ? -127 : v_));                                 \
            }                                                                                               \
        } else                                                                                              \
            for (size_t i = 0; i < (n); i++)                                                                \
                (y)[i] = (int8_t)ie_clamp64(ie_shift_round((VALUE), (shift), ie_draw((r), (uint32_t)((base) + i))), 127); \
    } while (0)

/* True when a shift by s rounds none of the values whose bits OR to `bits`: s <= 0 (an exact left
 * shift), or all of them multiples of 2^s (0 <= s < 64). Every rounding mode then gives v 2^-s. */
static inline int ie_shift_is_exact(uint64_t bits, int s) { return s <= 0 || !(bits & (((uint64_t)1 << s) - 1)); }

/* y[i] = VALUE 2^-shift for values ie_shift_is_exact found exact: the bytes of any rounding, with
 * no draws (ReLU6's forward and backward of int8 values never round). */
#define IE_EXACT_EACH(n, i, VALUE, y, shift, T)                                                              \
    do {                                                                                                    \
        if ((shift) <= 0)                                                                                   \
            for (size_t i = 0; i < (n); i++) {                                                              \
                T v_ = (VALUE) * ((T)1 << -(shift));                                                        \
                (y)[i] = (int8_t)(v_ > 127 ? 127 : (v_ < -127 ? -127 : v_));                                 \
            }                                                                                               \
        else                                                                                                \
            for (size_t i = 0; i < (n); i++) {                                                              \
                T v_ = (T)(VALUE) >> (shift); /* GCC/Clang: >> is arithmetic */                             \
                (y)[i] = (int8_t)(v_ > 127 ? 127 : (v_ < -127 ? -127 : v_));                                 \
            }                                                                                               \
    } while (0)

/* Requantizes n values given by an expression in the index i: one pass for max |VALUE|, one to
 * round it to int8 at the shift that brings that max to 7 bits (stored in `shift`). VALUE is
 * evaluated twice per element, so it must not change state (counter-based draws do not). */
#define IE_REQUANT_EACH(n, i, VALUE, r, y, shift)                                                           \
    do {                                                                                                    \
        uint64_t max_ = 0, bits_ = 0;                                                                       \
        for (size_t i = 0; i < (n); i++) {                                                                  \
            int64_t v_ = (VALUE);                                                                           \
            uint64_t a_ = ie_abs64(v_);                                                                     \
            max_ = a_ > max_ ? a_ : max_;                                                                   \
            bits_ |= (uint64_t)v_;                                                                          \
        }                                                                                                   \
        (shift) = ie_requant_shift(max_, 7);                                                                \
        if (IE_FAST_PATHS && ie_shift_is_exact(bits_, shift)) IE_EXACT_EACH(n, i, (int64_t)(VALUE), y, shift, int64_t); \
        else IE_ROUND_EACH(n, i, VALUE, r, y, shift, 0);                                                    \
    } while (0)

/* IE_REQUANT_EACH for a VALUE that fits int32 (|VALUE| <= INT32_MAX): both passes run in 32-bit
 * lanes (16 per AVX-512 vector, not 8), with ie_srshift32 for the usual shifts of 1..31 bits;
 * the same bytes. */
#define IE_REQUANT_EACH32(n, i, VALUE, r, y, shift)                                                         \
    do {                                                                                                    \
        uint32_t max_ = 0, bits_ = 0;                                                                       \
        for (size_t i = 0; i < (n); i++) {                                                                  \
            int32_t v_ = (VALUE);                                                                           \
            uint32_t a_ = v_ < 0 ? 0u - (uint32_t)v_ : (uint32_t)v_;                                        \
            max_ = a_ > max_ ? a_ : max_;                                                                   \
            bits_ |= (uint32_t)v_;                                                                          \
        }                                                                                                   \
        (shift) = ie_requant_shift(max_, 7);                                                                \
        if (IE_FAST_PATHS && ie_shift_is_exact(bits_, shift)) IE_EXACT_EACH(n, i, (int32_t)(VALUE), y, shift, int32_t); \
        else if (!(r).nearest && (shift) >= 1 && (shift) <= 31)                                             \
            for (size_t i = 0; i < (n); i++) {                                                              \
                int32_t v_ = ie_srshift32((VALUE), (shift), ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ (r).key)); \
                (y)[i] = (int8_t)(v_ > 127 ? 127 : (v_ < -127 ? -127 : v_));                                 \
            }                                                                                               \
        else /* s <= 0: exact; or round to nearest */                                                       \
            for (size_t i = 0; i < (n); i++)                                                                \
                (y)[i] = (int8_t)ie_clamp64(ie_shift_round((VALUE), (shift), ie_draw((r), (uint32_t)i)), 127); \
    } while (0)

/* y = requant(x0 m0 + x1 m1) over n int8 pairs (|m0|, |m1| <= 2^40, each a signed power of two or
 * 0); returns the shift. The two-way sums of residual blocks (forward adds, gradient fan-outs). */
int ie_sum2_s8(const int8_t *x0, int64_t m0, const int8_t *x1, int64_t m1, size_t n, ie_rounder r, int8_t *y);

/* Requantize to int8 with the shift picked from max|x|; returns the shift s (exponent += s). */
int ie_requant_s64_s8(const int64_t *x, size_t n, ie_rounder r, int8_t *y);

/* y = requant(sum_j sign_j x_j 2^e_j) (sign NULL: all +1) for k int8 tensors of n elements: the terms meet at a common
 * exponent (at most 40 bits apart; a term further below is rounded there), sum exactly in int64,
 * and go back to int8 in one SR. Returns y's exponent. */
int32_t ie_sum_s8(const int8_t *const *x, const int32_t *e, const int8_t *sign, uint32_t k, size_t n, ie_rounder r,
                  int8_t *y);

/* *s1 += sum(u), *s2 += sum(u v) (v NULL: v = u) over n int8 values, exactly. */
void ie_sums_s8(const int8_t *u, const int8_t *v, size_t n, int64_t *s1, int64_t *s2);
/* The same for int16 x (ie_tensor_is_q16): u NULL, s1 += sum(x), s2 += sum(x^2); else s1 += sum(u),
 * s2 += sum(u x). */
void ie_sums_s16(const int16_t *x, const int8_t *u, size_t n, int64_t *s1, int64_t *s2);
/* s1^2 / count rounded half up, without forming s1^2 (|s1| < 2^40 and s1^2 / count < 2^62, as
 * for sums of count int16 values, count < 2^24). */
int64_t ie_square_over(int64_t s1, uint64_t count);
/* The mean s1 / count with 16 fraction bits, rounded half away from zero (count >= 1). */
static inline int64_t ie_mean_q16(int64_t s1, uint64_t count) {
    return (s1 * 65536 + (s1 >= 0 ? (int64_t)count / 2 : -(int64_t)count / 2)) / (int64_t)count;
}

/* ---- dyadic arithmetic -------------------------------------------------------------------- */

/* out = a*x + b*y elementwise (x, y int32 with exponents ex, ey; out may alias x or y). The
 * output exponent is chosen so each term stays within IE_TERM_BITS bits and the sum fits in int32.
 * A term with a zero constant or zero data is skipped. Returns the output exponent. */
#define IE_TERM_BITS 29
int32_t ie_axpby_s32(int32_t *out, size_t n, ie_dyadic a, const int32_t *x, int32_t ex,
                     ie_dyadic b, const int32_t *y, int32_t ey, ie_rounder r);

/* The optimizer's passes over large arrays, split over pool (NULL: this thread) by index ranges:
 * the same bytes as above for any split. Each returns the max |value| it read or wrote (what
 * ie_absmax_s32 of the output would give), which spares the next pass that needs it. */
uint64_t ie_absmax_s64_split(ie_pool *pool, const int64_t *x, size_t n);
uint64_t ie_shift_s64_s32_split(ie_pool *pool, const int64_t *x, size_t n, int s, int bits, ie_rounder r, int32_t *y);
/* The same bytes written over x's own first half (element i at bytes 4i..4i+3), read through
 * (int32_t *)x afterwards: the optimizer's normalized gradient needs no buffer of its own. */
uint64_t ie_shift_s64_s32_inplace_split(ie_pool *pool, int64_t *x, size_t n, int s, int bits, ie_rounder r);
#if IE_FAST_PATHS /* int32 gradients (Gemm's): half the bytes to read */
uint64_t ie_absmax_s32_split(ie_pool *pool, const int32_t *x, size_t n);
uint64_t ie_shift_s32_s32_split(ie_pool *pool, const int32_t *x, size_t n, int s, int bits, ie_rounder r, int32_t *y);
#endif
uint64_t ie_shift_s32_s8_bits_split(ie_pool *pool, const int32_t *x, size_t n, int s, int bits, ie_rounder r, int8_t *y);
/* ie_axpby_s32 given xmax = max|x| and ymax = max|y|, with each term within term_bits (2..29)
 * bits instead of IE_TERM_BITS (narrower optimizer integers); *out_max (if not NULL) receives
 * max|out|. */
int32_t ie_axpby_s32_split(ie_pool *pool, int32_t *out, size_t n, ie_dyadic a, const int32_t *x, int32_t ex,
                           uint64_t xmax, ie_dyadic b, const int32_t *y, int32_t ey, uint64_t ymax, int term_bits,
                           ie_rounder r, uint64_t *out_max);

/* ie_axpby_s32_split at an output exponent of at least eo_floor (the exponent a row-sparse
 * update shares with the rows it leaves alone). */
int32_t ie_axpby_s32_floor(ie_pool *pool, int32_t *out, size_t n, ie_dyadic a, const int32_t *x, int32_t ex,
                           uint64_t xmax, ie_dyadic b, const int32_t *y, int32_t ey, uint64_t ymax, int term_bits,
                           int32_t eo_floor, ie_rounder r, uint64_t *out_max);

/* Runs fn over [0, n) in index ranges, one per part of pool (NULL: this thread), and returns in
 * max[0], max[1] the largest of the two maxima the parts report. */
typedef void (*ie_range2_fn)(const void *ctx, size_t begin, size_t end, uint64_t max[2]);
void ie_split_max2(ie_pool *pool, size_t n, ie_range2_fn fn, const void *ctx, uint64_t max[2]);

/* bits (float32) as an int32 when it holds an integer exactly; 0 otherwise. */
int ie_f32_bits_to_int32(uint32_t bits, int32_t *out);

/* Scalar dyadic arithmetic for per-channel constants: results are rounded to nearest with a
 * 31-bit mantissa (a relative error below 2^-30). */
ie_dyadic ie_dy_norm(int64_t m, int32_t e);
ie_dyadic ie_dy_mul(ie_dyadic a, ie_dyadic b);
ie_dyadic ie_dy_add(ie_dyadic a, ie_dyadic b);
ie_dyadic ie_dy_recip(uint64_t n);  /* 1 / n, n >= 1 */
ie_dyadic ie_dy_div(ie_dyadic a, ie_dyadic b); /* a / b; 0 when b = 0 (callers define x / 0) */
ie_dyadic ie_dy_rsqrt(ie_dyadic v); /* 1 / sqrt(v) by Newton's integer square root; v > 0 */
ie_dyadic ie_dy_sqrt(ie_dyadic v);  /* the same root; 0 for v <= 0 */
static inline ie_dyadic ie_dy_neg(ie_dyadic a) { a.m = -a.m; return a; }
/* Bit position above |a| (|a| < 2^top), INT32_MIN for 0: compares magnitudes. */
static inline int32_t ie_dy_top(ie_dyadic a) { return a.m ? a.e + ie_bitlen64(ie_abs64(a.m)) : INT32_MIN; }
/* n dyadics as integers at one exponent, rounded to nearest, the largest with `bits` bits (at
 * most 61); returns the exponent (0 for all zeros). */
int32_t ie_dy_common(const ie_dyadic *v, size_t n, int bits, int64_t *out);
ie_dyadic ie_dy_inv(ie_dyadic v);   /* 1 / v; v > 0 */
/* 1 + b + b^2 + ... + b^(t-1) for 0 <= b < 1 (so 1 - b^t = (1 - b) times it, with no
 * cancellation): by doubling the count (S_2k = S_k (1 + b^k)) and adding one term (S_k+1 = 1 + b
 * S_k) along t's bits, every operation on positive numbers. Relative error below
 * (192 + 1/(1-b)) 2^-31: three roundings per bit of t, and the error of b^k, which grows with k
 * while b^k still counts (test_numeric.c). */
ie_dyadic ie_dy_powsum(ie_dyadic b, uint64_t t);
/* The same value with its mantissa shifted up to 31 bits (exact). */
static inline ie_dyadic ie_dy_full(ie_dyadic a) {
    if (a.m == 0) return a;
    int up = 31 - ie_bitlen64(ie_abs64(a.m));
    a.m = (int32_t)(a.m * ((int64_t)1 << up));
    a.e -= up;
    return a;
}

/* ---- AdamW's per-element arithmetic (optim.c) -----------------------------------------------
 * Branch-free on purpose: the loop over elements vectorizes, and every clone of it gives the same
 * integers. */

/* SR(c x / 2^s) for x < 2^62, c < 2^31 and a loop-invariant s >= 0, with one 32-bit draw d like
 * ie_shift_round: the 93-bit product hi 2^32 + lo (two 32 x 32-bit products) is floored at 2^32
 * with the carry of lo + (d << t) (t = s - 32, below 32: the draw's low bits), then shifted the
 * remaining t bits with d's top t bits (ie_srshift); for s <= 32 the first step is the whole SR.
 * Adding d 2^t to the product before flooring at 2^s is exactly that, so it is unbiased. The
 * caller keeps the result below 2^62. */
typedef struct ie_mulshift {
    int64_t j, lj, t; /* min(s, 32), 32 - j, min(s - j, 32) */
    ie_srshift rest;  /* s - j (beyond 62: as 62) */
} ie_mulshift;

static inline ie_mulshift ie_mulshift_make(int s) {
    int j = s < 32 ? s : 32;
    ie_mulshift p = {j, 32 - j, s - j < 32 ? s - j : 32, ie_srshift_make(s - j > 62 ? 62 : s - j)};
    return p;
}

/* a b for a, b below 2^32: one 32 x 32 -> 64-bit multiply (a vector lane op), not a 64-bit one. */
IE_INLINE uint64_t ie_mul32(uint64_t a, uint64_t b) { return (uint64_t)(uint32_t)a * (uint32_t)b; }

IE_INLINE uint64_t ie_mulshift_apply(uint64_t x, uint32_t c, ie_mulshift p, uint32_t d) {
    uint64_t lo = ie_mul32(x, c), hi = ie_mul32(x >> 32, c) + (lo >> 32);
    uint64_t d1 = ((uint64_t)d << p.t) & 0xFFFFFFFFU;
    uint64_t first = (hi << p.lj) + (((lo & 0xFFFFFFFFU) + (d1 >> p.lj)) >> p.j);
    return (uint64_t)ie_srshift_apply((int64_t)first, p.rest, d);
}

/* x << 2k with k in [0, 31] the largest that keeps x below 2^63 (x < 2^63): in [2^61, 2^63), or
 * 0; *shift = 2k. Halving steps, so it vectorizes. */
IE_INLINE uint64_t ie_norm_even(uint64_t x, int64_t *shift) {
    int64_t a, s = 0;
    a = !(x >> 31); x <<= 32 * a; s += 32 * a;
    a = !(x >> 47); x <<= 16 * a; s += 16 * a;
    a = !(x >> 55); x <<= 8 * a; s += 8 * a;
    a = !(x >> 59); x <<= 4 * a; s += 4 * a;
    a = !(x >> 61); x <<= 2 * a; s += 2 * a;
    *shift = s;
    return x;
}

/* 1/sqrt(N) in Q30 for N = nq / 2^31 in [1/2, 2): the minimax line on each quarter of the two
 * octaves (relative error below 0.77%), then two Newton steps y (3 - N y^2) / 2 in 32 x 32-bit
 * products; error below 2^-26 (1.5 e^2 per step, and the truncations). */
IE_INLINE uint64_t ie_rsqrt_q30(uint64_t nq) {
    uint64_t q = nq >> 29; /* 2, 3: [1/2, 1); 4, 5: [1, 3/2); 6, 7: [3/2, 2) */
    uint64_t a = q < 3 ? 2059867228u : q < 4 ? 1731446017u : q < 6 ? 1456546086u : 1224317220u;
    uint64_t b = q < 3 ? 1106044736u : q < 4 ? 661861316u : q < 6 ? 391045866u : 234003312u;
    uint64_t y = a - (ie_mul32(b, nq) >> 31);
    for (int i = 0; i < 2; i++) {
        uint64_t t = ie_mul32(nq, ie_mul32(y, y) >> 30); /* N y^2 in Q61 */
        y = ie_mul32(y, (((uint64_t)3 << 61) - t) >> 31) >> 31;
    }
    return y;
}

/* 1/N in Q31 for N = nq / 2^31 in [1, 2): the minimax line on each quarter (relative error
 * below 0.63%), then two Newton steps R (2 - N R); error below 2^-28. */
IE_INLINE uint64_t ie_recip_q31(uint64_t nq) {
    uint64_t q = (nq >> 29) & 3;
    uint64_t a = q == 0 ? 3841461432u : q == 1 ? 3136573627u : q == 2 ? 2650899696u : 2295750893u;
    uint64_t b = q == 0 ? 1707316192u : q == 1 ? 1140572228u : q == 2 ? 815661445u : 612200238u;
    uint64_t r = a - (ie_mul32(b, nq) >> 31);
    for (int i = 0; i < 2; i++) {
        uint64_t t = ie_mul32(nq, r); /* N R in Q62 */
        r = ie_mul32(r, (((uint64_t)1 << 63) - t) >> 31) >> 31;
    }
    return r;
}

/* AdamW's step direction for one element, u = m / (sqrt(v) + eps), at the fixed exponent eu and
 * clamped to +-clamp. v (below 2^62, at an exponent 2h - odd) is normalized by an even shift 2k,
 * so sqrt(v) comes from Newton in Q30 as s in [2^30.5, 2^31.5) at exponent h - k. eps (eps_m, 31
 * bits) joins s at the larger of the two exponents, the smaller term's low bits dropped (below
 * 2^-30 of the sum), so the denominator d lies in [2^30, 2^32.5) and needs no normalization of
 * its own: its reciprocal is Newton's in Q31, and m times it goes to eu with one SR. Relative
 * error before the SR below 2^-25 (test_numeric.c). */
typedef struct ie_adam_dir {
    uint64_t eps_m;  /* eps (its step's value) = eps_m 2^eps_e, eps_m 0 or of 31 bits */
    int64_t eps_e;
    int64_t sigma;   /* eps_e - h */
    int64_t h;       /* v's exponent, made even, / 2 */
    int64_t odd;     /* 1: v is read as 2v (its exponent was odd) */
    int64_t base;    /* eu - me + 93: the shift of m R before the normalization's */
    uint64_t clamp;
} ie_adam_dir;

/* The denominator sqrt(v) + eps of one element, as d 2^dexp with d in [2^30, 2^32.5), or 0 when
 * v and eps are. */
IE_INLINE uint64_t ie_adam_denominator(const ie_adam_dir *c, uint64_t v, int64_t *dexp) {
    int64_t kk;
    uint64_t nq = ie_norm_even(v << c->odd, &kk) >> 31; /* N 2^31, N in [1/2, 2); or 0 */
    int64_t k = kk >> 1;
    uint64_t s = ie_mul32(nq, ie_rsqrt_q30(nq)) >> 30; /* sqrt(N) 2^31 at h - k (0 for v = 0: any y) */
    int64_t es = c->sigma + k;                          /* eps_m's exponent above h - k */
    int64_t at_eps = (s == 0) | ((es > 0) & (c->eps_m != 0));
    *dexp = at_eps ? c->eps_e : c->h - k;
    return at_eps ? c->eps_m + (s >> (es > 63 ? 63 : es < 0 ? 0 : es)) : s + (c->eps_m >> (-es > 63 ? 63 : -es < 0 ? 0 : -es));
}

/* m / (d 2^dexp) at eu, rounded with the draw and clamped. */
IE_INLINE int32_t ie_adam_quotient(const ie_adam_dir *c, uint64_t d, int64_t dexp, int32_t m, uint32_t draw) {
    int64_t j = 32 - (d >> 31 != 0) - (d >> 32 != 0);                  /* d 2^j in [2^62, 2^63) */
    uint64_t r = ie_recip_q31((d << j) >> 31);                         /* 1/d = r 2^(j - 93 - dexp) */
    uint64_t am = (uint64_t)(m < 0 ? -(int64_t)m : m);
    int64_t sh = c->base - j + dexp;
    int64_t saturate = (sh < 0) | (d == 0);
    /* ie_srshift_apply by sh (62 at most) in 64-bit lanes */
    int64_t rsh = sh > 32 ? (sh > 62 ? 30 : sh - 32) : 0, lsh = sh < 32 ? (sh < 0 ? 32 : 32 - sh) : 0;
    int64_t s32 = sh > 32 ? 32 : (sh < 0 ? 0 : sh);
    uint64_t q = ((ie_mul32(am, r) >> rsh) + ((uint64_t)draw >> lsh)) >> s32;
    q = (saturate & (am != 0)) ? c->clamp : (q > c->clamp ? c->clamp : q);
    return m < 0 ? -(int32_t)q : (int32_t)q;
}

IE_INLINE int32_t ie_adam_dir_apply(const ie_adam_dir *c, uint64_t v, int32_t m, uint32_t draw) {
    int64_t dexp;
    uint64_t d = ie_adam_denominator(c, v, &dexp);
    return ie_adam_quotient(c, d, dexp, m, draw);
}

/* y[o][c][i] = requant(a[c] u[o][c][i] w[i] + b[c] v[o][c][i] + k[c]) over an [outer, channels,
 * inner] tensor: u is int8 at exponent eu (or NULL), w = uw (int32, |w| < 2^24, per position
 * within a block: LayerNorm's scale) or 1 when uw is NULL; v = x * 2^16 - xm[c] with x int8 at
 * exponent ex, so v is at ex - 16 (a centred input: xm holds per-channel means in that unit; or x
 * NULL). x16 instead of x: v = x16 * 2^8 - xm, x16 int16 at exponent ex - 8 (ie_tensor_is_q16).
 * All terms meet at one exponent in int64 (each below 2^60), then one SR. Returns y's exponent.
 * Large tensors split over pool (NULL: this thread) by blocks; the bytes do not change. */
int32_t ie_channel_affine_s8(ie_pool *pool, size_t outer, size_t channels, size_t inner, const int8_t *u, int32_t eu,
                             const int32_t *uw, const int8_t *x, const int16_t *x16, int32_t ex, const int64_t *xm,
                             const ie_dyadic *a, const ie_dyadic *b, const ie_dyadic *k, int64_t *coef, ie_rounder r,
                             int8_t *y);

/* A Relu's backward after the last ie_channel_affine_s8 of x alone (u NULL; coef as it left them):
 * dx = dy where that map's value before rounding is > 0 (or the Relu's output y is), so that an
 * output SR sent to 0 from just above keeps its gradient. dy and dx may alias. */
void ie_channel_affine_relu_bwd(size_t outer, size_t channels, size_t inner, const int8_t *x, const int16_t *x16,
                                const int64_t *xm, const int64_t *coef, const int8_t *y, const int8_t *dy, int8_t *dx);

/* ---- the float boundary (IEEE-754 binary32 bit patterns) ---------------------------------- */

int ie_f32_bits_is_finite(uint32_t bits);

/* Common exponent for mapping a float32 array to `bits`-bit signed integers: the largest
 * magnitude gets exactly `bits` significant bits. IE_ERR_VALUE on NaN/Inf. */
ie_status ie_f32_common_exponent(const uint32_t *v, size_t n, int bits, int32_t *e_out);

/* One element: round(v * 2^-e) clamped to +-(2^bits - 1). */
int32_t ie_f32_to_fixed(uint32_t v, int32_t e, int bits, uint32_t draw);
/* q[i] = ie_f32_to_fixed(v[i], e, 7, draw i of r) for e from ie_f32_common_exponent(v, n, 7). */
void ie_f32_to_s8(const uint32_t *v, size_t n, int32_t e, ie_rounder r, int8_t *q);

/* m * 2^e to float32 bits, rounding to nearest even; overflow gives +-Inf. */
uint32_t ie_fixed_to_f32_bits(int64_t m, int32_t e);

#endif
