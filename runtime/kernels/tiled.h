/* The output walk every SIMD GEMM shares: 2 x 4 tiles of C, each reduced over K in blocks of at
 * most 2^17 terms (exact in int32). The including file defines
 *   static void tile(const int8_t *const *a, size_t ra, const int8_t *const *b, size_t rb,
 *                    size_t k, int32_t out[2][4]);
 * which fills out[i][j] = dot(a[i], b[j]) for i < ra, j < rb. STORE sees i, j, ii, jj, out.
 * IE_TILED_GEMMS(isa) then defines ie_gemm_s8s8_s32_<isa> and ie_gemm_s8s8_s64_<isa> on it. */
#ifndef IE_TILED_H
#define IE_TILED_H

#define IE_TILE_BLOCK ((size_t)1 << 17)

#define TILED(m, n, k, a, b, STORE)                                                                 \
    for (size_t i = 0; i < (m); i += 2) {                                                           \
        size_t ra = (m) - i < 2 ? (m) - i : 2;                                                      \
        for (size_t j = 0; j < (n); j += 4) {                                                       \
            size_t rb = (n) - j < 4 ? (n) - j : 4;                                                  \
            for (size_t k0 = 0; k0 == 0 || k0 < (k); k0 += IE_TILE_BLOCK) {                        \
                size_t kb = (k) - k0 < IE_TILE_BLOCK ? (k) - k0 : IE_TILE_BLOCK;                    \
                const int8_t *ap[2] = {(a) + i * (k) + k0, (a) + (i + ra - 1) * (k) + k0};           \
                const int8_t *bp[4];                                                                \
                for (size_t t = 0; t < 4; t++) bp[t] = (b) + (j + (t < rb ? t : rb - 1)) * (k) + k0; \
                int32_t out[2][4];                                                                  \
                tile(ap, ra, bp, rb, kb, out);                                                      \
                for (size_t ii = 0; ii < ra; ii++)                                                  \
                    for (size_t jj = 0; jj < rb; jj++) STORE;                                       \
            }                                                                                       \
        }                                                                                           \
    }

#define IE_TILED_GEMMS(isa)                                                                             \
    void ie_gemm_s8s8_s32_##isa(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) { \
        TILED(m, n, k, a, b, c[(i + ii) * n + j + jj] = out[ii][jj])                                    \
    }                                                                                                   \
    void ie_gemm_s8s8_s64_##isa(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k) { \
        TILED(m, n, k, a, b, c[(i + ii) * n + j + jj] += out[ii][jj])                                   \
    }

#endif
