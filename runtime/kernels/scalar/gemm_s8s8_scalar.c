/* Scalar reference GEMMs: the ground truth for every SIMD tier. */
#include "../kernels.h"

static int32_t dot_s8(const int8_t *a, const int8_t *b, size_t k) {
    int32_t acc = 0;
    for (size_t i = 0; i < k; i++) acc += (int32_t)a[i] * (int32_t)b[i];
    return acc;
}

void ie_gemm_s8s8_s32_scalar(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) {
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) c[i * n + j] = dot_s8(a + i * k, b + j * k, k);
}

void ie_gemm_s8s8_s64_scalar(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k) {
    const size_t block = (size_t)1 << 17;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            int64_t acc = 0;
            for (size_t k0 = 0; k0 < k; k0 += block)
                acc += dot_s8(a + i * k + k0, b + j * k + k0, k - k0 < block ? k - k0 : block);
            c[i * n + j] += acc;
        }
}
