/* AVX2 GEMM with B reduction-major (c = a . bt, bt[k][n]), bit-identical to the scalar
 * reference. As in the VNNI kernel, four bt rows are interleaved per 32 columns into [k/4][32][4]
 * bytes and a's four bytes are broadcast, so each step yields 8 outputs per vector. vpmaddubsw
 * takes |a| against b * sign(a): with values in [-127, 127] each pair sum is at most 32258 (no
 * saturation), and vpmaddwd against ones adds the pairs into the column's int32. */
#include <immintrin.h>
#include <string.h>

#include "../kernels.h"
#include "a_word.h"
#include "bt_walk_x86.h"

#define KB 512 /* reduction block: its packed B (16 KB) stays in L1; later blocks add into c */
#define COLS 32

/* Rows r[0..3] (NULL: zeros) of `cols` <= 32 columns, interleaved into 4-byte groups. */
static inline void pack4(const int8_t *const r[4], size_t cols, __m256i out[4]) {
    __m256i v[4];
    for (int t = 0; t < 4; t++) {
        int8_t tmp[COLS] = {0};
        if (r[t] && cols < COLS) memcpy(tmp, r[t], cols);
        v[t] = _mm256_loadu_si256((const __m256i *)(r[t] && cols == COLS ? r[t] : tmp));
    }
    /* per 128-bit lane: bytes of rows 0/1 and 2/3 paired, then the pairs: 4 columns per unpack */
    __m256i lo01 = _mm256_unpacklo_epi8(v[0], v[1]), hi01 = _mm256_unpackhi_epi8(v[0], v[1]);
    __m256i lo23 = _mm256_unpacklo_epi8(v[2], v[3]), hi23 = _mm256_unpackhi_epi8(v[2], v[3]);
    __m256i e0 = _mm256_unpacklo_epi16(lo01, lo23), e1 = _mm256_unpackhi_epi16(lo01, lo23);
    __m256i e2 = _mm256_unpacklo_epi16(hi01, hi23), e3 = _mm256_unpackhi_epi16(hi01, hi23);
    /* lane L of e_q holds columns 16L + 4q .. 16L + 4q + 3 */
    out[0] = _mm256_permute2x128_si256(e0, e1, 0x20);
    out[1] = _mm256_permute2x128_si256(e2, e3, 0x20);
    out[2] = _mm256_permute2x128_si256(e0, e1, 0x31);
    out[3] = _mm256_permute2x128_si256(e2, e3, 0x31);
}

/* a's bytes 4g..4g+3, broadcast. */
static inline __m256i a_word(const int8_t *row, size_t g, size_t kb) { return _mm256_set1_epi32((int32_t)ie_a_word(row, g, kb)); }

/* ROWS rows of a (stride lda) against one packed column block; c gets (or adds) the results. */
static inline __attribute__((always_inline)) void rows_block(const int8_t *a, size_t lda, size_t kb, size_t groups,
                                                             const __m256i (*pack)[4], size_t cols, int32_t *c,
                                                             size_t ldc, int add, const size_t ROWS) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i acc[2][4]; /* loops unrolled by hand: GCC otherwise keeps the sums in memory */
    _Pragma("GCC unroll 4")
    for (size_t r = 0; r < ROWS; r++)
        _Pragma("GCC unroll 4")
        for (size_t v = 0; v < 4; v++) acc[r][v] = _mm256_setzero_si256();
    for (size_t g = 0; g < groups; g++)
        _Pragma("GCC unroll 4")
        for (size_t r = 0; r < ROWS; r++) {
            __m256i wa = a_word(a + r * lda, g, kb), ua = _mm256_sign_epi8(wa, wa);
            _Pragma("GCC unroll 4")
            for (size_t v = 0; v < 4; v++) {
                __m256i bv = _mm256_load_si256((const __m256i *)&pack[g][v]);
                __m256i p16 = _mm256_maddubs_epi16(ua, _mm256_sign_epi8(bv, wa));
                acc[r][v] = _mm256_add_epi32(acc[r][v], _mm256_madd_epi16(p16, ones));
            }
        }
    _Pragma("GCC unroll 4")
    for (size_t r = 0; r < ROWS; r++)
        for (size_t v = 0; v < 4 && 8 * v < cols; v++) {
            int32_t *dst = c + r * ldc + 8 * v;
            size_t left = cols - 8 * v < 8 ? cols - 8 * v : 8;
            __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32((int32_t)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
            __m256i res = acc[r][v];
            if (add) res = _mm256_add_epi32(res, _mm256_maskload_epi32(dst, mask)); /* wraps: exact */
            _mm256_maskstore_epi32(dst, mask, res);
        }
}

void ie_gemm_s8s8_s32_bt_avx2(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k) {
    __m256i pack[KB / 4][4];
    IE_BT_WALK(c, m, n, k, KB, COLS, {
        for (size_t g = 0; g < groups; g++) {
            const int8_t *r[4];
            ie_bt_rows(bt, n, k0, kb, g, j0, r);
            pack4(r, ncols, pack[g]);
        }
        const int8_t *ak = a + k0;
        int32_t *cj = c + j0;
        size_t i = 0;
        for (; i + 2 <= m; i += 2) rows_block(ak + i * k, k, kb, groups, pack, ncols, cj + i * n, n, k0 > 0, 2);
        if (i < m) rows_block(ak + i * k, k, kb, groups, pack, ncols, cj + i * n, n, k0 > 0, 1);
    });
}
