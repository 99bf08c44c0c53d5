/* AVX-512 VNNI int8 GEMMs, bit-identical to the scalar reference. vpdpbusd multiplies unsigned by
 * signed bytes and adds groups of four into int32: a enters as a + 128 (a ^ 0x80) and the
 * excess 128 * sum(b) is subtracted at the end. The lanes wrap modulo 2^32, which is exact because
 * the true dot product fits in int32 (k <= 2^17). Tails use masked loads (zeros add nothing). */
#include <immintrin.h>

#include "../kernels.h"


/* Lane total modulo 2^32. GCC's _mm512_reduce_add_epi32 adds as signed int, undefined (and
 * flagged by UBSan) when the biased lanes wrap; the vector adds here are unsigned. */
static inline uint32_t hsum_wrap(__m512i v) {
    __m256i s = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
    t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
    return (uint32_t)_mm_cvtsi128_si32(t);
}

static inline void tile(const int8_t *const *a, size_t ra, const int8_t *const *b, size_t rb, size_t k, int32_t out[2][4]) {
    const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1);
    __m512i acc[2][4], bsum[4];
    for (size_t j = 0; j < 4; j++) {
        bsum[j] = _mm512_setzero_si512();
        acc[0][j] = acc[1][j] = _mm512_setzero_si512();
    }
    for (size_t kk = 0; kk < k; kk += 64) {
        __mmask64 mask = k - kk >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (k - kk)) - 1);
        __m512i vb[4];
        for (size_t j = 0; j < rb; j++) {
            vb[j] = _mm512_maskz_loadu_epi8(mask, b[j] + kk);
            bsum[j] = _mm512_dpbusd_epi32(bsum[j], ones, vb[j]);
        }
        for (size_t i = 0; i < ra; i++) {
            __m512i va = _mm512_xor_si512(_mm512_maskz_loadu_epi8(mask, a[i] + kk), flip);
            va = _mm512_maskz_mov_epi8(mask, va); /* padding stays 0, not 128 */
            for (size_t j = 0; j < rb; j++) acc[i][j] = _mm512_dpbusd_epi32(acc[i][j], va, vb[j]);
        }
    }
    for (size_t j = 0; j < rb; j++) {
        uint32_t comp = 128u * hsum_wrap(bsum[j]);
        for (size_t i = 0; i < ra; i++) out[i][j] = (int32_t)(hsum_wrap(acc[i][j]) - comp);
    }
}

#include "../tiled.h"

/* Short reductions (k <= 256, e.g. convolutions' 5x5 windows or dX over few channels): vectors
 * run across 16 output columns instead of along k. B is packed per 64 columns into
 * [k/4][64][4] bytes (zero padded), a's four bytes are broadcast, and each vpdpbusd yields 16
 * outputs with no horizontal sums. The same +128 compensation uses per-column sums of B. */
#define SMALL_K 1024
#define COLS 64

static void gemm_small_k(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) {
    int8_t pack[SMALL_K / 4][COLS][4] __attribute__((aligned(64)));
    int32_t colsum[COLS] __attribute__((aligned(64)));
    size_t groups = (k + 3) / 4;
    const __m512i flip = _mm512_set1_epi8((char)0x80);
    for (size_t j0 = 0; j0 < n; j0 += COLS) {
        size_t cols = n - j0 < COLS ? n - j0 : COLS;
        for (size_t g = 0; g < groups; g++)
            for (size_t j = 0; j < COLS; j++)
                for (size_t t = 0; t < 4; t++) {
                    size_t kk = 4 * g + t;
                    pack[g][j][t] = (j < cols && kk < k) ? b[(j0 + j) * k + kk] : 0;
                }
        for (size_t j = 0; j < COLS; j++) {
            int32_t sum = 0;
            for (size_t kk = 0; j < cols && kk < k; kk++) sum += b[(j0 + j) * k + kk];
            colsum[j] = sum;
        }
        for (size_t i = 0; i < m; i++) {
            __m512i acc[COLS / 16];
            for (size_t v = 0; v < COLS / 16; v++) acc[v] = _mm512_setzero_si512();
            const int8_t *ai = a + i * k;
            for (size_t g = 0; g < groups; g++) {
                uint32_t word = 0;
                for (size_t t = 0; t < 4; t++) /* bytes past k meet zeros in B */
                    word |= (uint32_t)(uint8_t)(4 * g + t < k ? ai[4 * g + t] : 0) << (8 * t);
                __m512i va = _mm512_xor_si512(_mm512_set1_epi32((int32_t)word), flip);
                for (size_t v = 0; v < COLS / 16; v++)
                    acc[v] = _mm512_dpbusd_epi32(acc[v], va, _mm512_load_si512((const void *)&pack[g][16 * v][0]));
            }
            for (size_t v = 0; v < COLS / 16; v++) {
                __m512i comp = _mm512_slli_epi32(_mm512_load_si512((const void *)&colsum[16 * v]), 7);
                __m512i res = _mm512_sub_epi32(acc[v], comp); /* wraps like the lanes: exact */
                size_t left = cols > 16 * v ? cols - 16 * v : 0;
                if (left == 0) break;
                __mmask16 mask = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
                _mm512_mask_storeu_epi32(c + i * n + j0 + 16 * v, mask, res);
            }
        }
    }
}

void ie_gemm_s8s8_s32_avx512vnni(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) {
    if (k > 0 && k <= SMALL_K && n >= 16) {
        gemm_small_k(a, b, c, m, n, k);
        return;
    }
    TILED(m, n, k, a, b, c[(i + ii) * n + j + jj] = out[ii][jj])
}

void ie_gemm_s8s8_s64_avx512vnni(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k) {
    for (size_t i = 0; i < m * n; i++) c[i] = 0;
    TILED(m, n, k, a, b, c[(i + ii) * n + j + jj] += out[ii][jj])
}
