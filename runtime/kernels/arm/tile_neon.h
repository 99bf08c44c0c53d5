/* The 2 x 4 tile both aarch64 GEMMs share, for the output walk in ../tiled.h. The including
 * file defines
 *   static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b);
 * which adds the 16 products a[t] * b[t] into the four int32 lanes of acc (any grouping: only
 * the lane total counts). The k % 16 tail is copied into zeroed vectors, so short reductions
 * (3x3 convolutions: k = 9 * C) stay vectorized; zero bytes add nothing. */
#ifndef IE_TILE_NEON_H
#define IE_TILE_NEON_H

#include <arm_neon.h>
#include <string.h>

#include "../kernels.h"

static inline int8x16_t load_tail(const int8_t *p, size_t len) {
    int8_t buf[16] = {0};
    memcpy(buf, p, len);
    return vld1q_s8(buf);
}

/* Dot products of rows a[0..ra) with rows b[0..rb) (ra <= 2, rb <= 4) over k <= 2^17 terms. The
 * int32 lanes cannot overflow: each holds part of a sum whose every term has the same bound. */
static inline __attribute__((always_inline)) void tile_rows(const int8_t *const *a, size_t ra, const int8_t *const *b,
                                                            size_t rb, size_t k, int32_t out[2][4]) {
    int32x4_t acc[2][4];
    for (size_t i = 0; i < 2; i++)
        for (size_t j = 0; j < 4; j++) acc[i][j] = vdupq_n_s32(0);
    for (size_t kk = 0; kk < k; kk += 16) {
        size_t len = k - kk < 16 ? k - kk : 16;
        int8x16_t vb[4];
        for (size_t j = 0; j < rb; j++) vb[j] = len == 16 ? vld1q_s8(b[j] + kk) : load_tail(b[j] + kk, len);
        for (size_t i = 0; i < ra; i++) {
            int8x16_t va = len == 16 ? vld1q_s8(a[i] + kk) : load_tail(a[i] + kk, len);
            for (size_t j = 0; j < rb; j++) acc[i][j] = dot16(acc[i][j], va, vb[j]);
        }
    }
    for (size_t i = 0; i < ra; i++)
        for (size_t j = 0; j < rb; j++) out[i][j] = vaddvq_s32(acc[i][j]);
}

/* Whole tiles (and single rows, m = 1) get constant bounds, so the accumulators live in
 * registers; the other edges do not. */
static inline void tile(const int8_t *const *a, size_t ra, const int8_t *const *b, size_t rb, size_t k, int32_t out[2][4]) {
    if (ra == 2 && rb == 4)
        tile_rows(a, 2, b, 4, k, out);
    else if (ra == 1 && rb == 4)
        tile_rows(a, 1, b, 4, k, out);
    else
        tile_rows(a, ra, b, rb, k, out);
}

#include "../tiled.h"

#endif
