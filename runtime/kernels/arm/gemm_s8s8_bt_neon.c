/* ARMv8.0 NEON reduction-major int8 GEMM (B as bt[k][n], the convolutions' layout), bit-identical
 * to the scalar reference. Per pair of reduction steps, each of 16 columns gets two byte
 * products in an int16 lane (smull + smlal: at most 2 * 127^2 = 32258, no overflow), which is
 * then widened into int32 (saddw); a broadcast of a's entry is the other operand. */
#include "bt_walk_neon.h"

/* acc[r] += a[r][kk] * row0 + a[r][kk + 1] * row1 (pass a1 = 0 and row1 = row0 for a lone step) */
static inline void step2(int32x4_t acc[4], int8x16_t row0, int8x16_t row1, int8_t a0, int8_t a1) {
    int8x16_t x0 = vdupq_n_s8(a0), x1 = vdupq_n_s8(a1);
    int16x8_t lo = vmlal_s8(vmull_s8(vget_low_s8(row0), vget_low_s8(x0)), vget_low_s8(row1), vget_low_s8(x1));
    int16x8_t hi = vmlal_high_s8(vmull_high_s8(row0, x0), row1, x1);
    acc[0] = vaddw_s16(acc[0], vget_low_s16(lo));
    acc[1] = vaddw_high_s16(acc[1], lo);
    acc[2] = vaddw_s16(acc[2], vget_low_s16(hi));
    acc[3] = vaddw_high_s16(acc[3], hi);
}

static void block(const int8_t *a, size_t lda, size_t rows, const int8_t *bt, size_t n, size_t k,
                  int32x4_t acc[4][4]) {
    for (size_t r = 0; r < 4; r++)
        for (size_t v = 0; v < 4; v++) acc[r][v] = vdupq_n_s32(0);
    size_t kk = 0;
    for (; kk + 2 <= k; kk += 2) {
        int8x16_t row0 = vld1q_s8(bt + kk * n), row1 = vld1q_s8(bt + (kk + 1) * n);
        for (size_t r = 0; r < rows; r++) step2(acc[r], row0, row1, a[r * lda + kk], a[r * lda + kk + 1]);
    }
    if (kk < k) {
        int8x16_t row0 = vld1q_s8(bt + kk * n);
        for (size_t r = 0; r < rows; r++) step2(acc[r], row0, row0, a[r * lda + kk], 0);
    }
}

IE_BT_GEMM(neon)
