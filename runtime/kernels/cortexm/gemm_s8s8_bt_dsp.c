/* Cortex-M DSP reduction-major int8 GEMM (B as bt[k][n], the convolutions' layout), bit-identical
 * to the scalar reference. For two reduction steps and four columns, sxtb16 widens one word of
 * each bt row into int16 halves, and the halves are re-paired per column (pkhbt/pkhtb) so that
 * one smlad adds both steps' products for that column; a's two entries are one int16x2 word.
 * Blocks are 2 rows x 4 columns: eight accumulators fit the register file. Leftover columns
 * and a last odd step are summed in scalar code. M0 and M3 have no DSP: this file is empty. */
#include "../kernels.h"

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#include <string.h>

static inline uint32_t load4(const int8_t *p) {
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

static inline uint32_t widen_even(uint32_t w) { return (uint32_t)__sxtb16((int8x4_t)w); }
static inline uint32_t widen_odd(uint32_t w) {
    uint32_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

/* (low half of x, low half of y) and (high half of x, high half of y) */
static inline int16x2_t pair_low(uint32_t x, uint32_t y) { return (int16x2_t)((x & 0xFFFFu) | (y << 16)); }
static inline int16x2_t pair_high(uint32_t x, uint32_t y) { return (int16x2_t)((x >> 16) | (y & 0xFFFF0000u)); }

static inline int16x2_t a_pair(const int8_t *a) {
    return (int16x2_t)((uint32_t)(uint16_t)(int16_t)a[0] | (uint32_t)(uint16_t)(int16_t)a[1] << 16);
}

static void block(const int8_t *a, size_t lda, size_t rows, const int8_t *bt, size_t n, size_t k, int32_t *c) {
    int32_t acc[2][4] = {{0, 0, 0, 0}, {0, 0, 0, 0}};
    size_t kk = 0;
    for (; kk + 2 <= k; kk += 2) {
        uint32_t w0 = load4(bt + kk * n), w1 = load4(bt + (kk + 1) * n);
        uint32_t e0 = widen_even(w0), e1 = widen_even(w1), o0 = widen_odd(w0), o1 = widen_odd(w1);
        int16x2_t col[4] = {pair_low(e0, e1), pair_low(o0, o1), pair_high(e0, e1), pair_high(o0, o1)};
        for (size_t r = 0; r < rows; r++) {
            int16x2_t x = a_pair(a + r * lda + kk);
            for (size_t v = 0; v < 4; v++) acc[r][v] = __smlad(x, col[v], acc[r][v]);
        }
    }
    for (; kk < k; kk++)
        for (size_t r = 0; r < rows; r++)
            for (size_t v = 0; v < 4; v++) acc[r][v] += (int32_t)a[r * lda + kk] * bt[kk * n + v];
    for (size_t r = 0; r < rows; r++) memcpy(c + r * n, acc[r], sizeof acc[r]);
}

void ie_gemm_s8s8_s32_bt_cortexm_dsp(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k) {
    size_t n4 = n - n % 4;
    for (size_t i = 0; i < m; i += 2) {
        size_t rows = m - i < 2 ? m - i : 2;
        for (size_t j = 0; j < n4; j += 4) block(a + i * k, k, rows, bt + j, n, k, c + i * n + j);
        for (size_t r = i; r < i + rows; r++)
            for (size_t j = n4; j < n; j++) {
                int32_t s = 0;
                for (size_t kk = 0; kk < k; kk++) s += (int32_t)a[r * k + kk] * bt[kk * n + j];
                c[r * n + j] = s;
            }
    }
}

#else
typedef int ie_no_dsp_bt_kernel; /* ISO C wants a translation unit to declare something */
#endif
