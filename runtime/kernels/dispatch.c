#include "kernels.h"

const ie_kernels *ie_kernels_select(void) { return &ie_kernels_scalar; }

void ie_transpose_s8(const int8_t *src, size_t rows, size_t cols, int8_t *dst) {
    for (size_t i = 0; i < rows; i++)
        for (size_t j = 0; j < cols; j++) dst[j * rows + i] = src[i * cols + j];
}
