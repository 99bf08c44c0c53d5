/* Scalar reference requantization of int32 accumulators (+ optional int64 column bias) to int8. */
#include "../kernels.h"
#include "../../src/numeric.h"

uint64_t ie_absmax_s32_bias_scalar(const int32_t *acc, const int64_t *bias, size_t rows, size_t cols) {
    uint64_t m = 0;
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            uint64_t a = ie_abs64((int64_t)acc[i * cols + j] + (bias ? bias[j] : 0));
            if (a > m) m = a;
        }
    return m;
}

void ie_requant_s32_bias_s8_scalar(const int32_t *acc, const int64_t *bias, size_t rows, size_t cols,
                                   int s, uint32_t key, uint32_t nearest, int8_t *out) {
    ie_rounder r = {key, nearest};
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) {
            size_t idx = i * cols + j;
            int64_t v = (int64_t)acc[idx] + (bias ? bias[j] : 0);
            out[idx] = (int8_t)ie_clamp64(ie_shift_round(v, s, ie_draw(r, (uint32_t)idx)), 127);
        }
}
