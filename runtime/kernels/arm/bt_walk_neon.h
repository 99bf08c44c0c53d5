/* The walk both aarch64 reduction-major GEMMs share: C in blocks of up to 4 rows x 16 columns,
 * each block's int32 sums held in 16 registers across the whole reduction (k <= 2^17, so they
 * are exact). The including file defines
 *   static void block(const int8_t *a, size_t lda, size_t rows, const int8_t *bt, size_t n, size_t k,
 *                     int32x4_t acc[4][4]);
 * which fills acc[r][v] with columns 4v..4v+3 of row r, reading 16 columns of bt from bt + j. Columns
 * past the last multiple of 16 are summed in scalar code, in the scalar reference's terms. */
#ifndef IE_BT_WALK_NEON_H
#define IE_BT_WALK_NEON_H

#include <arm_neon.h>

#include "../kernels.h"

#define IE_BT_GEMM(isa)                                                                                          \
    void ie_gemm_s8s8_s32_bt_##isa(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k) { \
        size_t n16 = n - n % 16;                                                                                 \
        for (size_t i = 0; i < m; i += 4) {                                                                      \
            size_t rows = m - i < 4 ? m - i : 4;                                                                 \
            for (size_t j = 0; j < n16; j += 16) {                                                               \
                int32x4_t acc[4][4];                                                                             \
                block(a + i * k, k, rows, bt + j, n, k, acc);                                                    \
                for (size_t r = 0; r < rows; r++)                                                                \
                    for (size_t v = 0; v < 4; v++) vst1q_s32(c + (i + r) * n + j + 4 * v, acc[r][v]);          \
            }                                                                                                    \
            for (size_t r = i; r < i + rows; r++)                                                                \
                for (size_t j = n16; j < n; j++) {                                                               \
                    int32_t s = 0;                                                                               \
                    for (size_t kk = 0; kk < k; kk++) s += (int32_t)a[r * k + kk] * bt[kk * n + j];              \
                    c[r * n + j] = s;                                                                            \
                }                                                                                                \
        }                                                                                                        \
    }

#endif
