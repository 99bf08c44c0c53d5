/* AVX2 int8 GEMMs, bit-identical to the scalar reference. vpmaddubsw multiplies unsigned by
 * signed bytes, so a goes in as |a| and b as b * sign(a): with values in [-127, 127] (never
 * -128) each pair sum is at most 2 * 127 * 127 = 32258, so the int16 step never saturates, and
 * vpmaddwd widens to int32. Integer sums do not depend on order: the result equals scalar's. */
#include <immintrin.h>

#include "../kernels.h"


static inline __m256i dot32(__m256i acc, __m256i a, __m256i b, __m256i ones) {
    __m256i p16 = _mm256_maddubs_epi16(_mm256_sign_epi8(a, a), _mm256_sign_epi8(b, a));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(p16, ones));
}

static inline int32_t hsum(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

static inline int32_t tail(const int8_t *a, const int8_t *b, size_t from, size_t k) {
    int32_t s = 0;
    for (size_t i = from; i < k; i++) s += (int32_t)a[i] * b[i];
    return s;
}

/* Dot products of rows a[0..ra) with rows b[0..rb) (ra <= 2, rb <= 4) over k <= 2^17 terms. */
static inline void tile(const int8_t *const *a, size_t ra, const int8_t *const *b, size_t rb, size_t k, int32_t out[2][4]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[2][4];
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 4; j++) acc[i][j] = _mm256_setzero_si256();
    size_t kk = 0;
    for (; kk + 32 <= k; kk += 32) {
        __m256i vb[4];
        for (size_t j = 0; j < rb; j++) vb[j] = _mm256_loadu_si256((const __m256i *)(b[j] + kk));
        for (size_t i = 0; i < ra; i++) {
            __m256i va = _mm256_loadu_si256((const __m256i *)(a[i] + kk));
            for (size_t j = 0; j < rb; j++) acc[i][j] = dot32(acc[i][j], va, vb[j], ones);
        }
    }
    for (size_t i = 0; i < ra; i++)
        for (size_t j = 0; j < rb; j++) out[i][j] = hsum(acc[i][j]) + tail(a[i], b[j], kk, k);
}

#include "../tiled.h"

IE_TILED_GEMMS(avx2)
