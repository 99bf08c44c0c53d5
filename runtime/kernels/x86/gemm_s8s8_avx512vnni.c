/* AVX-512 VNNI int8 GEMMs, bit-identical to the scalar reference. vpdpbusd multiplies unsigned by
 * signed bytes and adds groups of four into int32: a enters as a + 128 (a ^ 0x80) and the
 * excess 128 * sum(b) is subtracted at the end. The lanes wrap modulo 2^32, which is exact because
 * the true dot product fits in int32 (k <= 2^17). Tails use masked loads (zeros add nothing). */
#include <immintrin.h>

#include "../kernels.h"
#include "a_word.h"


/* Lane total modulo 2^32. GCC's _mm512_reduce_add_epi32 adds as signed int, undefined (and
 * flagged by UBSan) when the biased lanes wrap; the vector adds here are unsigned. */
static inline uint32_t hsum_wrap(__m512i v) {
    __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(t);
}

/* Lane 4i + j of the result is the lane total of v[4i + j] (modulo 2^32): pairs of vectors
 * interleave and add (dwords, then qwords) until each 128-bit lane holds four partial totals,
 * then the lanes of four vectors transpose and add. 30 shuffles and 15 adds for 16 totals. */
static inline __m512i reduce16(const __m512i v[16]) {
    __m512i s[8], t[4];
    _Pragma("GCC unroll 16")
    for (int p = 0; p < 8; p++)
        s[p] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * p], v[2 * p + 1]),
                                _mm512_unpackhi_epi32(v[2 * p], v[2 * p + 1]));
    _Pragma("GCC unroll 16")
    for (int r = 0; r < 4; r++)
        t[r] = _mm512_add_epi32(_mm512_unpacklo_epi64(s[2 * r], s[2 * r + 1]),
                                _mm512_unpackhi_epi64(s[2 * r], s[2 * r + 1]));
    __m512i w0 = _mm512_add_epi32(_mm512_shuffle_i32x4(t[0], t[1], 0x44), _mm512_shuffle_i32x4(t[0], t[1], 0xEE));
    __m512i w1 = _mm512_add_epi32(_mm512_shuffle_i32x4(t[2], t[3], 0x44), _mm512_shuffle_i32x4(t[2], t[3], 0xEE));
    return _mm512_add_epi32(_mm512_shuffle_i32x4(w0, w1, 0x88), _mm512_shuffle_i32x4(w0, w1, 0xDD));
}

/* Biased dot products of a 4 x 4 tile over kb bytes, lane 4i + j for a[i] . b[j] (a + 128).
 * Each 64-byte step feeds 16 vpdpbusd from 8 loads; the tail is masked (b's zeros cancel a). */
static inline __m512i tile4(const int8_t *const a[4], const int8_t *const b[4], size_t kb) {
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    __m512i acc[16], vb[4];
    _Pragma("GCC unroll 16")
    for (int q = 0; q < 16; q++) acc[q] = _mm512_setzero_si512();
    size_t kk = 0;
    for (; kk + 64 <= kb; kk += 64) {
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 4; j++) vb[j] = _mm512_loadu_si512((const void *)(b[j] + kk));
        _Pragma("GCC unroll 16")
        for (int i = 0; i < 4; i++) {
            __m512i va = _mm512_xor_si512(_mm512_loadu_si512((const void *)(a[i] + kk)), flip);
            _Pragma("GCC unroll 16")
            for (int j = 0; j < 4; j++) acc[4 * i + j] = _mm512_dpbusd_epi32(acc[4 * i + j], va, vb[j]);
        }
    }
    if (kk < kb) {
        __mmask64 mask = ((__mmask64)1 << (kb - kk)) - 1;
        _Pragma("GCC unroll 16")
        for (int j = 0; j < 4; j++) vb[j] = _mm512_maskz_loadu_epi8(mask, b[j] + kk);
        _Pragma("GCC unroll 16")
        for (int i = 0; i < 4; i++) {
            __m512i va = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, a[i] + kk), flip);
            _Pragma("GCC unroll 16")
            for (int j = 0; j < 4; j++) acc[4 * i + j] = _mm512_dpbusd_epi32(acc[4 * i + j], va, vb[j]);
        }
    }
    return reduce16(acc);
}

/* 128 * sum(b[j]) over kb bytes in lane 4i + j: the excess the +128 bias of a adds. */
static inline __m512i compensation(const int8_t *const b[4], size_t kb) {
    const __m512i ones = _mm512_set1_epi8(1);
    uint32_t sum[4];
    for (int j = 0; j < 4; j++) {
        __m512i acc = _mm512_setzero_si512();
        for (size_t kk = 0; kk < kb; kk += 64) {
            __mmask64 mask = kb - kk >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (kb - kk)) - 1);
            acc = _mm512_dpbusd_epi32(acc, ones, _mm512_maskz_loadu_epi8(mask, b[j] + kk));
        }
        sum[j] = 128u * hsum_wrap(acc);
    }
    return _mm512_broadcast_i32x4(_mm_setr_epi32((int32_t)sum[0], (int32_t)sum[1], (int32_t)sum[2], (int32_t)sum[3]));
}

/* Long reductions (dW's k = HoWo): 4 x 4 tiles of C, k in blocks of at most 2^17 terms (exact
 * in int32; the int64 output adds the blocks to what it holds). Columns outer: four rows of b stay in L1 while
 * every row block of a passes, and their sums are made once. Rows past the edge repeat the last. */
static void gemm_tiles(const int8_t *a, const int8_t *b, int32_t *c32, int64_t *c64, size_t m, size_t n, size_t k) {
    const size_t block = (size_t)1 << 17;
    for (size_t j0 = 0; j0 < n; j0 += 4) {
        size_t rb = n - j0 < 4 ? n - j0 : 4;
        for (size_t k0 = 0; k0 == 0 || k0 < k; k0 += block) {
            size_t kb = k - k0 < block ? k - k0 : block;
            const int8_t *bp[4], *ap[4];
            for (size_t t = 0; t < 4; t++) bp[t] = b + (j0 + (t < rb ? t : rb - 1)) * k + k0;
            __m512i comp = compensation(bp, kb);
            for (size_t i0 = 0; i0 < m; i0 += 4) {
                size_t ra = m - i0 < 4 ? m - i0 : 4;
                for (size_t t = 0; t < 4; t++) ap[t] = a + (i0 + (t < ra ? t : ra - 1)) * k + k0;
                int32_t out[16];
                _mm512_storeu_si512((void *)out, _mm512_sub_epi32(tile4(ap, bp, kb), comp)); /* wraps: exact */
                for (size_t i = 0; i < ra; i++)
                    for (size_t j = 0; j < rb; j++) {
                        size_t at = (i0 + i) * n + j0 + j;
                        if (c32) c32[at] = out[4 * i + j];
                        else c64[at] += out[4 * i + j];
                    }
            }
        }
    }
}

/* Short reductions (k <= 256, e.g. convolutions' 5x5 windows or dX over few channels): vectors
 * run across 16 output columns instead of along k. B is packed per 64 columns into
 * [k/4][64][4] bytes (zero padded), a's four bytes are broadcast, and each vpdpbusd yields 16
 * outputs with no horizontal sums. The same +128 compensation uses per-column sums of B. */
#define SMALL_K 1024
#define COLS 64

/* Words g0..g0+15 (bytes 4 g0 ...) of rows 0..15 of b (rows past `rows` and bytes past k read as
 * zeros) into pack[g][j..j+15]: a 16 x 16 transpose of 32-bit words. Pairs of rows interleave
 * (dwords, then qwords), after which lane L of row group i' holds word 4L + q of rows 4i'..4i'+3;
 * a 4 x 4 transpose of lanes finishes it. */
static inline void pack_words16(const int8_t *b, size_t k, size_t rows, size_t g0, size_t groups,
                                int8_t (*pack)[COLS][4], size_t j) {
    size_t left = k - 4 * g0;
    __mmask64 bytes = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
    __m512i r[16], t[16];
    for (size_t q = 0; q < 16; q++) r[q] = q < rows ? _mm512_maskz_loadu_epi8(bytes, b + q * k + 4 * g0) : _mm512_setzero_si512();
    for (size_t q = 0; q < 16; q += 2) {
        t[q] = _mm512_unpacklo_epi32(r[q], r[q + 1]);
        t[q + 1] = _mm512_unpackhi_epi32(r[q], r[q + 1]);
    }
    for (size_t q = 0; q < 16; q += 4) {
        r[q] = _mm512_unpacklo_epi64(t[q], t[q + 2]);
        r[q + 1] = _mm512_unpackhi_epi64(t[q], t[q + 2]);
        r[q + 2] = _mm512_unpacklo_epi64(t[q + 1], t[q + 3]);
        r[q + 3] = _mm512_unpackhi_epi64(t[q + 1], t[q + 3]);
    }
    for (size_t q = 0; q < 4; q++) {
        __m512i u0 = _mm512_shuffle_i32x4(r[q], r[4 + q], 0x44), u1 = _mm512_shuffle_i32x4(r[q], r[4 + q], 0xEE);
        __m512i u2 = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0x44), u3 = _mm512_shuffle_i32x4(r[8 + q], r[12 + q], 0xEE);
        __m512i out[4] = {_mm512_shuffle_i32x4(u0, u2, 0x88), _mm512_shuffle_i32x4(u0, u2, 0xDD),
                          _mm512_shuffle_i32x4(u1, u3, 0x88), _mm512_shuffle_i32x4(u1, u3, 0xDD)};
        for (size_t l = 0; l < 4; l++) /* word 4l + q */
            if (g0 + 4 * l + q < groups) _mm512_store_si512((void *)&pack[g0 + 4 * l + q][j][0], out[l]);
    }
}

/* ROWS rows of a against one packed column block: four rows share every load of B. */
static inline __attribute__((always_inline)) void small_k_rows(const int8_t *a, size_t k, size_t groups,
                                                               const int8_t (*pack)[COLS][4], const int32_t *colsum,
                                                               size_t cols, int32_t *c, size_t ldc, const size_t ROWS) {
    __m512i acc[4][COLS / 16];
    _Pragma("GCC unroll 4")
    for (size_t r = 0; r < ROWS; r++)
        _Pragma("GCC unroll 4")
        for (size_t v = 0; v < COLS / 16; v++) acc[r][v] = _mm512_setzero_si512();
    for (size_t g = 0; g < groups; g++) {
        __m512i va[4];
        _Pragma("GCC unroll 4")
        for (size_t r = 0; r < ROWS; r++) /* + 128; bytes past k meet zeros in B */
            va[r] = _mm512_set1_epi32((int32_t)(ie_a_word(a + r * k, g, k) ^ 0x80808080u));
        _Pragma("GCC unroll 4")
        for (size_t v = 0; v < COLS / 16; v++) {
            __m512i bv = _mm512_load_si512((const void *)&pack[g][16 * v][0]);
            _Pragma("GCC unroll 4")
            for (size_t r = 0; r < ROWS; r++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], va[r], bv);
        }
    }
    _Pragma("GCC unroll 4")
    for (size_t v = 0; v < COLS / 16; v++) {
        size_t left = cols > 16 * v ? cols - 16 * v : 0;
        if (left == 0) break;
        __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
        __m512i comp = _mm512_slli_epi32(_mm512_load_si512((const void *)&colsum[16 * v]), 7);
        _Pragma("GCC unroll 4")
        for (size_t r = 0; r < ROWS; r++) /* wraps like the lanes: exact */
            _mm512_mask_storeu_epi32(c + r * ldc + 16 * v, mask, _mm512_sub_epi32(acc[r][v], comp));
    }
}

static void gemm_small_k(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) {
    int8_t pack[SMALL_K / 4][COLS][4] __attribute__((aligned(64)));
    int32_t colsum[COLS] __attribute__((aligned(64)));
    size_t groups = (k + 3) / 4;
    for (size_t j0 = 0; j0 < n; j0 += COLS) {
        size_t cols = n - j0 < COLS ? n - j0 : COLS;
        for (size_t j = 0; j < COLS; j += 16)
            for (size_t g0 = 0; g0 < groups; g0 += 16)
                pack_words16(b + (j0 + j) * k, k, cols > j ? cols - j : 0, g0, groups, pack, j);
        for (size_t j = 0; j < COLS; j++) {
            int32_t sum = 0;
            for (size_t kk = 0; j < cols && kk < k; kk++) sum += b[(j0 + j) * k + kk];
            colsum[j] = sum;
        }
        size_t i = 0;
        for (; i + 4 <= m; i += 4) small_k_rows(a + i * k, k, groups, pack, colsum, cols, c + i * n + j0, n, 4);
        switch (m - i) {
        case 3: small_k_rows(a + i * k, k, groups, pack, colsum, cols, c + i * n + j0, n, 3); break;
        case 2: small_k_rows(a + i * k, k, groups, pack, colsum, cols, c + i * n + j0, n, 2); break;
        case 1: small_k_rows(a + i * k, k, groups, pack, colsum, cols, c + i * n + j0, n, 1); break;
        default: break;
        }
    }
}

void ie_gemm_s8s8_s32_avx512vnni(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) {
    if (k > 0 && k <= SMALL_K && n >= 16) {
        gemm_small_k(a, b, c, m, n, k);
        return;
    }
    gemm_tiles(a, b, c, NULL, m, n, k);
}

void ie_gemm_s8s8_s64_avx512vnni(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k) {
    gemm_tiles(a, b, NULL, c, m, n, k);
}
