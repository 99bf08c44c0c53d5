/* Scalar reference of the reduction-major GEMM (B given as bt[k][n]): each output row is a sum
 * of bt rows scaled by a's entries. Partial sums stay below 127^2 * 2^17 < 2^31: exact. */
#include "../kernels.h"

void ie_gemm_s8s8_s32_bt_scalar(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k) {
    for (size_t i = 0; i < m; i++) {
        int32_t *ci = c + i * n;
        for (size_t j = 0; j < n; j++) ci[j] = 0;
        for (size_t kk = 0; kk < k; kk++) {
            int32_t av = a[i * k + kk];
            const int8_t *b = bt + kk * n;
            for (size_t j = 0; j < n; j++) ci[j] += av * b[j];
        }
    }
}
