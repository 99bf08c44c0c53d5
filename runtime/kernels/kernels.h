/* The kernel dispatch table. Scalar kernels are the ground truth; every SIMD tier must give
 * identical bytes. Operands are "packed": both GEMM inputs are row-major with the reduction
 * dimension contiguous, so every kernel is a set of int8 dot products. */
#ifndef IE_KERNELS_H
#define IE_KERNELS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ie_kernels {
    const char *name;
    int (*supported)(void); /* does this CPU run the tier */
    /* c[i*n + j] = sum_k a[i*k + k'] * b[j*k + k'];  k <= 2^17 so int32 is exact. */
    void (*gemm_s8s8_s32)(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k);
    /* The same for any k, exactly in int64 (int32 blocks of at most 2^17 terms), ADDED to c:
     * a sum over samples (a convolution's dW) needs no temporary. */
    void (*gemm_s8s8_s64)(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k);
    /* c[i*n + j] = sum_k a[i*k + k'] * bt[k'*n + j]: B reduction-major ([k, n], like im2col's
     * [K, HoWo] or dY's [Cout, HoWo]), so convolutions need no transposes. k <= 2^17. */
    void (*gemm_s8s8_s32_bt)(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k);
    /* Element i of acc belongs to channel (i / inner) % channels and gets bias[channel]
     * (bias may be NULL): inner = 1 for Gemm's [N, M], H*W for a convolution's [N, C, H, W].
     * Both take the elements [begin, end), so a tensor split into ranges gives the same bytes. */
    /* max |acc[i] + bias[channel(i)]| */
    uint64_t (*absmax_s32_bias)(const int32_t *acc, size_t begin, size_t end, const int64_t *bias, size_t inner,
                                size_t channels);
    /* out = clamp(round((acc + bias) * 2^-s), +-127), draws from key per element index
     * (nearest != 0: round half up). s may be negative (exact left shift). */
    void (*requant_s32_bias_s8)(const int32_t *acc, size_t begin, size_t end, const int64_t *bias, size_t inner,
                                size_t channels, int s, uint32_t key, uint32_t nearest, int8_t *out);
} ie_kernels;

/* The best tier this CPU runs (name NULL), or the named tier if it runs here (else NULL). */
const ie_kernels *ie_kernels_select(const char *name);
/* The index-th tier this CPU runs, best last; NULL past the end. */
const ie_kernels *ie_kernels_at(uint32_t index);
extern const ie_kernels ie_kernels_scalar;

/* Packing helpers shared by all tiers (transpose.c): src [rows][cols] into dst [cols][rows]. */
void ie_transpose_s8(const int8_t *src, size_t rows, size_t cols, int8_t *dst);
void ie_transpose_s32(const int32_t *src, size_t rows, size_t cols, int32_t *dst);

#endif
