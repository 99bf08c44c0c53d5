/* Transposes of int8 and int32 matrices: packing shared by every tier (depthwise convolutions
 * move each sample to channels-last and their sums back, Gemm and MatMul transpose operands).
 * A transpose only moves values, so every form gives the same bytes; tests/c/test_kernels.c
 * compares them with the element-by-element definition on odd shapes.
 *
 * Where 128-bit vectors are available (SSE2 is baseline x86-64, NEON baseline aarch64; neither in
 * the -mgeneral-regs-only builds) a square tile of V rows is transposed in registers by log2(V)
 * rounds of the same interleave: vector k with vector k + V/2 (unpack/zip low and high halves)
 * into vectors 2k and 2k + 1. Each round rotates an element's (row, lane) index bits by one, so
 * after log2(V) rounds rows and lanes have swapped. Bytes: 16 x 16 tiles; int32: 4 x 4. Edges and
 * other builds take the element loop. Blocks of 64 bytes a side keep both sides' lines in cache
 * and write each destination line whole. Size-optimized builds (no IE_FAST_PATHS) keep the plain
 * element loop. */
#include "kernels.h"
#include "../src/numeric.h"

#if IE_FAST_PATHS && defined(IE_HAVE_X86_KERNELS)
#include <emmintrin.h>
#define IE_VEC_TRANSPOSE 1
typedef __m128i vec;
#define VLOAD(p) _mm_loadu_si128((const __m128i *)(const void *)(p))
#define VSTORE(p, v) _mm_storeu_si128((__m128i *)(void *)(p), (v))
#define ZIP8_LO(a, b) _mm_unpacklo_epi8(a, b)
#define ZIP8_HI(a, b) _mm_unpackhi_epi8(a, b)
#define ZIP32_LO(a, b) _mm_unpacklo_epi32(a, b)
#define ZIP32_HI(a, b) _mm_unpackhi_epi32(a, b)
#elif IE_FAST_PATHS && defined(IE_HAVE_ARM64_KERNELS)
#include <arm_neon.h>
#define IE_VEC_TRANSPOSE 1
typedef uint8x16_t vec;
#define VLOAD(p) vld1q_u8((const uint8_t *)(const void *)(p))
#define VSTORE(p, v) vst1q_u8((uint8_t *)(void *)(p), (v))
#define ZIP8_LO(a, b) vzip1q_u8(a, b)
#define ZIP8_HI(a, b) vzip2q_u8(a, b)
#define ZIP32_LO(a, b) vreinterpretq_u8_u32(vzip1q_u32(vreinterpretq_u32_u8(a), vreinterpretq_u32_u8(b)))
#define ZIP32_HI(a, b) vreinterpretq_u8_u32(vzip2q_u32(vreinterpretq_u32_u8(a), vreinterpretq_u32_u8(b)))
#else
#define IE_VEC_TRANSPOSE 0
#endif

#define BLOCK 64 /* bytes a side */

#if IE_VEC_TRANSPOSE
/* The 16 x 16 byte tile at src (row stride ss) to dst (row stride ds), transposed. */
static void tile_s8(const int8_t *src, size_t ss, int8_t *dst, size_t ds) {
    vec x[16], t[16];
    for (int k = 0; k < 16; k++) x[k] = VLOAD(src + k * ss);
    for (int round = 0; round < 4; round++) {
        for (int k = 0; k < 8; k++) {
            t[2 * k] = ZIP8_LO(x[k], x[k + 8]);
            t[2 * k + 1] = ZIP8_HI(x[k], x[k + 8]);
        }
        for (int k = 0; k < 16; k++) x[k] = t[k];
    }
    for (int k = 0; k < 16; k++) VSTORE(dst + k * ds, x[k]);
}

/* The 4 x 4 int32 tile, likewise. */
static void tile_s32(const int32_t *src, size_t ss, int32_t *dst, size_t ds) {
    vec x0 = VLOAD(src), x1 = VLOAD(src + ss), x2 = VLOAD(src + 2 * ss), x3 = VLOAD(src + 3 * ss);
    vec t0 = ZIP32_LO(x0, x2), t1 = ZIP32_HI(x0, x2), t2 = ZIP32_LO(x1, x3), t3 = ZIP32_HI(x1, x3);
    VSTORE(dst, ZIP32_LO(t0, t2));
    VSTORE(dst + ds, ZIP32_HI(t0, t2));
    VSTORE(dst + 2 * ds, ZIP32_LO(t1, t3));
    VSTORE(dst + 3 * ds, ZIP32_HI(t1, t3));
}
#endif

/* One body for both element types: blocks of B x B elements, tiles of V x V inside them where
 * whole, single elements elsewhere. */
#define TRANSPOSE_BODY(B, V, TILE)                                                                      \
    for (size_t i0 = 0; i0 < rows; i0 += (B))                                                          \
        for (size_t j0 = 0; j0 < cols; j0 += (B)) {                                                    \
            size_t i1 = rows - i0 < (B) ? rows : i0 + (B), j1 = cols - j0 < (B) ? cols : j0 + (B);     \
            size_t iv = IE_VEC_TRANSPOSE ? i0 + (i1 - i0) / (V) * (V) : i0;                            \
            size_t jv = IE_VEC_TRANSPOSE ? j0 + (j1 - j0) / (V) * (V) : j0;                            \
            for (size_t i = i0; i < iv; i += (V))                                                      \
                for (size_t j = j0; j < jv; j += (V)) TILE(src + i * cols + j, cols, dst + j * rows + i, rows); \
            for (size_t j = j0; j < j1; j++) /* the block's edges: right strip, then bottom */         \
                for (size_t i = j < jv ? iv : i0; i < i1; i++) dst[j * rows + i] = src[i * cols + j];  \
        }

#if !IE_VEC_TRANSPOSE
#define tile_s8(s, ss, d, ds) ((void)0)
#define tile_s32(s, ss, d, ds) ((void)0)
#endif

#if IE_FAST_PATHS
void ie_transpose_s8(const int8_t *src, size_t rows, size_t cols, int8_t *dst) { TRANSPOSE_BODY(BLOCK, 16, tile_s8) }

void ie_transpose_s32(const int32_t *src, size_t rows, size_t cols, int32_t *dst) {
    TRANSPOSE_BODY(BLOCK / 4, 4, tile_s32)
}
#else
#define PLAIN_BODY                                                                                      \
    for (size_t j = 0; j < cols; j++)                                                                  \
        for (size_t i = 0; i < rows; i++) dst[j * rows + i] = src[i * cols + j];
void ie_transpose_s8(const int8_t *src, size_t rows, size_t cols, int8_t *dst) { PLAIN_BODY }
void ie_transpose_s32(const int32_t *src, size_t rows, size_t cols, int32_t *dst) { PLAIN_BODY }
#endif
