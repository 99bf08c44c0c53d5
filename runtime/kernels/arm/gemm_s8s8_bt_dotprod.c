/* ARMv8.2 dot-product reduction-major int8 GEMM (B as bt[k][n]), bit-identical to the scalar
 * reference. sdot wants four consecutive reduction steps per lane, so four rows of bt are
 * interleaved with two rounds of zips into [column][4 steps] order; a's four entries are one
 * broadcast 32-bit word. Built with -march=armv8.2-a+dotprod, like gemm_s8s8_dotprod.c. */
#include <string.h>

#include "bt_walk_neon.h"

#if !defined(__ARM_FEATURE_DOTPROD)
#error "gemm_s8s8_bt_dotprod.c needs -march=armv8.2-a+dotprod (see kernels.cmake)"
#endif

/* rows r0..r3 (16 columns each) -> out[v]: columns 4v..4v+3, each as its four steps */
static inline void interleave4(int8x16_t r0, int8x16_t r1, int8x16_t r2, int8x16_t r3, int8x16_t out[4]) {
    int16x8_t p01lo = vreinterpretq_s16_s8(vzip1q_s8(r0, r1)), p01hi = vreinterpretq_s16_s8(vzip2q_s8(r0, r1));
    int16x8_t p23lo = vreinterpretq_s16_s8(vzip1q_s8(r2, r3)), p23hi = vreinterpretq_s16_s8(vzip2q_s8(r2, r3));
    out[0] = vreinterpretq_s8_s16(vzip1q_s16(p01lo, p23lo));
    out[1] = vreinterpretq_s8_s16(vzip2q_s16(p01lo, p23lo));
    out[2] = vreinterpretq_s8_s16(vzip1q_s16(p01hi, p23hi));
    out[3] = vreinterpretq_s8_s16(vzip2q_s16(p01hi, p23hi));
}

static void block(const int8_t *a, size_t lda, size_t rows, const int8_t *bt, size_t n, size_t k,
                  int32x4_t acc[4][4]) {
    for (size_t r = 0; r < 4; r++)
        for (size_t v = 0; v < 4; v++) acc[r][v] = vdupq_n_s32(0);
    const int8x16_t zero = vdupq_n_s8(0);
    for (size_t kk = 0; kk < k; kk += 4) {
        size_t steps = k - kk < 4 ? k - kk : 4;
        int8x16_t b[4];
        for (size_t t = 0; t < 4; t++) b[t] = t < steps ? vld1q_s8(bt + (kk + t) * n) : zero;
        int8x16_t cols[4];
        interleave4(b[0], b[1], b[2], b[3], cols);
        for (size_t r = 0; r < rows; r++) {
            int8_t word[4] = {0, 0, 0, 0}; /* missing steps multiply zeros */
            memcpy(word, a + r * lda + kk, steps);
            int32_t packed;
            memcpy(&packed, word, 4);
            int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(packed));
            for (size_t v = 0; v < 4; v++) acc[r][v] = vdotq_s32(acc[r][v], cols[v], x);
        }
    }
}

IE_BT_GEMM(dotprod)
