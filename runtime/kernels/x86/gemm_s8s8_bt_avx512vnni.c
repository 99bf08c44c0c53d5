/* AVX-512 VNNI GEMM with B reduction-major (c = a . bt, bt[k][n]), bit-identical to the scalar
 * reference. Vectors run across output columns: four bt rows are interleaved per 64 columns into
 * the [k/4][64][4] bytes vpdpbusd reads (zero padded), a's four bytes are broadcast, and each
 * vpdpbusd yields 16 outputs with no horizontal sums. a enters as a + 128 (a ^ 0x80) and the
 * excess 128 * colsum(bt) is subtracted; lanes wrap modulo 2^32, which is exact because the true
 * sums fit in int32. Four rows of a share every load of the packed B. */
#include <immintrin.h>
#include <string.h>

#include "../kernels.h"
#include "a_word.h"
#include "bt_walk_x86.h"

#define KB 512 /* reduction block: its packed B (32 KB) stays in L1; later blocks add into c */
#define COLS 64

/* Rows r[0..3] (NULL: zeros) of up to 64 columns, interleaved into the vpdpbusd layout. */
static inline void pack4(const int8_t *const r[4], __mmask64 cols, __m512i out[4]) {
    __m512i v[4];
    for (int t = 0; t < 4; t++) v[t] = r[t] ? _mm512_maskz_loadu_epi8(cols, r[t]) : _mm512_setzero_si512();
    /* per 128-bit lane: bytes of rows 0/1 and 2/3 paired, then the pairs: 4 columns per unpack */
    __m512i lo01 = _mm512_unpacklo_epi8(v[0], v[1]), hi01 = _mm512_unpackhi_epi8(v[0], v[1]);
    __m512i lo23 = _mm512_unpacklo_epi8(v[2], v[3]), hi23 = _mm512_unpackhi_epi8(v[2], v[3]);
    __m512i e0 = _mm512_unpacklo_epi16(lo01, lo23), e1 = _mm512_unpackhi_epi16(lo01, lo23);
    __m512i e2 = _mm512_unpacklo_epi16(hi01, hi23), e3 = _mm512_unpackhi_epi16(hi01, hi23);
    /* lane L of e_q holds columns 16L + 4q .. 16L + 4q + 3: transpose the 4 x 4 grid of lanes */
    __m512i t0 = _mm512_shuffle_i32x4(e0, e1, 0x44), t1 = _mm512_shuffle_i32x4(e2, e3, 0x44);
    __m512i t2 = _mm512_shuffle_i32x4(e0, e1, 0xEE), t3 = _mm512_shuffle_i32x4(e2, e3, 0xEE);
    out[0] = _mm512_shuffle_i32x4(t0, t1, 0x88);
    out[1] = _mm512_shuffle_i32x4(t0, t1, 0xDD);
    out[2] = _mm512_shuffle_i32x4(t2, t3, 0x88);
    out[3] = _mm512_shuffle_i32x4(t2, t3, 0xDD);
}

/* ROWS rows of a (stride lda) against one packed column block; c gets (or adds) the results. */
static inline __attribute__((always_inline)) void rows_block(const int8_t *a, size_t lda, size_t kb, size_t groups,
                                                             const __m512i (*pack)[4], const __m512i comp[4],
                                                             __mmask64 cols, int32_t *c, size_t ldc, int add,
                                                             const size_t ROWS) {
    __m512i acc[4][4];
    _Pragma("GCC unroll 4")
    for (size_t r = 0; r < ROWS; r++)
        _Pragma("GCC unroll 4")
        for (size_t v = 0; v < 4; v++) acc[r][v] = _mm512_setzero_si512();
    /* the loops over rows and vectors are unrolled by hand (GCC otherwise kept va and the 16
     * sums in memory); a's whole words are plain loads, the last may be partial */
    for (size_t g = 0; g < groups; g++) {
        __m512i va[4];
        int whole = 4 * g + 4 <= kb;
        _Pragma("GCC unroll 4")
        for (size_t r = 0; r < ROWS; r++) {
            uint32_t w;
            if (whole) memcpy(&w, a + r * lda + 4 * g, 4);
            else w = ie_a_word(a + r * lda, g, kb);
            va[r] = _mm512_set1_epi32((int32_t)(w ^ 0x80808080u)); /* + 128 */
        }
        _Pragma("GCC unroll 4")
        for (size_t v = 0; v < 4; v++) {
            __m512i bv = _mm512_load_si512((const void *)&pack[g][v]);
            _Pragma("GCC unroll 4")
            for (size_t r = 0; r < ROWS; r++) acc[r][v] = _mm512_dpbusd_epi32(acc[r][v], va[r], bv);
        }
    }
    _Pragma("GCC unroll 4")
    for (size_t r = 0; r < ROWS; r++)
        _Pragma("GCC unroll 4")
        for (size_t v = 0; v < 4; v++) {
            __mmask16 m = (__mmask16)(cols >> (16 * v));
            if (!m) break;
            __m512i res = _mm512_sub_epi32(acc[r][v], comp[v]); /* wraps like the lanes: exact */
            int32_t *dst = c + r * ldc + 16 * v;
            if (add) res = _mm512_add_epi32(res, _mm512_maskz_loadu_epi32(m, dst));
            _mm512_mask_storeu_epi32(dst, m, res);
        }
}

void ie_gemm_s8s8_s32_bt_avx512vnni(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k) {
    __m512i pack[KB / 4][4];
    IE_BT_WALK(c, m, n, k, KB, COLS, {
        __mmask64 cols = ncols == COLS ? ~(__mmask64)0 : (((__mmask64)1 << ncols) - 1);
        __m512i comp[4];
        for (size_t v = 0; v < 4; v++) comp[v] = _mm512_setzero_si512();
        for (size_t g = 0; g < groups; g++) {
            const int8_t *r[4];
            ie_bt_rows(bt, n, k0, kb, g, j0, r);
            pack4(r, cols, pack[g]);
            for (size_t v = 0; v < 4; v++) comp[v] = _mm512_dpbusd_epi32(comp[v], _mm512_set1_epi8(1), pack[g][v]);
        }
        for (size_t v = 0; v < 4; v++) comp[v] = _mm512_slli_epi32(comp[v], 7); /* 128 * column sums */
        const int8_t *ak = a + k0;
        int32_t *cj = c + j0;
        size_t i = 0;
        for (; i + 4 <= m; i += 4) rows_block(ak + i * k, k, kb, groups, pack, comp, cols, cj + i * n, n, k0 > 0, 4);
        switch (m - i) {
        case 3: rows_block(ak + i * k, k, kb, groups, pack, comp, cols, cj + i * n, n, k0 > 0, 3); break;
        case 2: rows_block(ak + i * k, k, kb, groups, pack, comp, cols, cj + i * n, n, k0 > 0, 2); break;
        case 1: rows_block(ak + i * k, k, kb, groups, pack, comp, cols, cj + i * n, n, k0 > 0, 1); break;
        default: break;
        }
    });
}
