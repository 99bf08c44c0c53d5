/* AVX-512 VNNI int8 GEMMs, bit-identical to the scalar reference. vpdpbusd multiplies unsigned by
 * signed bytes and adds groups of four into int32: a enters as a + 128 (a ^ 0x80) and the
 * excess 128 * sum(b) is subtracted at the end. The lanes wrap modulo 2^32, which is exact because
 * the true dot product fits in int32 (k <= 2^17). Tails use masked loads (zeros add nothing). */
#include <immintrin.h>

#include "../kernels.h"


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
        uint32_t comp = 128u * (uint32_t)_mm512_reduce_add_epi32(bsum[j]);
        for (size_t i = 0; i < ra; i++) out[i][j] = (int32_t)((uint32_t)_mm512_reduce_add_epi32(acc[i][j]) - comp);
    }
}

#include "../tiled.h"

void ie_gemm_s8s8_s32_avx512vnni(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) {
    TILED(m, n, k, a, b, c[(i + ii) * n + j + jj] = out[ii][jj])
}

void ie_gemm_s8s8_s64_avx512vnni(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k) {
    for (size_t i = 0; i < m * n; i++) c[i] = 0;
    TILED(m, n, k, a, b, c[(i + ii) * n + j + jj] += out[ii][jj])
}
