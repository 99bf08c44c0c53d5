/* Cortex-M DSP-extension int8 GEMMs (M4, M7, M33, M55), bit-identical to the scalar reference.
 * sxtb16 sign-extends bytes 0 and 2 of a word into two int16 halves (and, on the word rotated by
 * 8, bytes 1 and 3), as CMSIS-NN's read_and_pad does; smlad then adds both halfword products to
 * an int32. The pairing does not matter: a[t] meets b[t] in the same half of the same lane.
 * smlad sets the Q flag on overflow but wraps, which cannot happen here (k <= 2^17 per tile).
 * M0 and M3 have no DSP: this file is then empty and the table omits the tier. */
#include "../kernels.h"

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#include <string.h>

/* Four bytes from any address (Cortex-M0-style strict alignment is not assumed). */
static inline uint32_t load4(const int8_t *p) {
    uint32_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

static inline int16x2_t even_bytes(uint32_t w) { return __sxtb16((int8x4_t)w); }
static inline int16x2_t odd_bytes(uint32_t w) {
#if defined(__GNUC__) /* sxtb16 can rotate its operand; GCC does not fold a rotate into it */
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
#else
    return __sxtb16((int8x4_t)((w >> 8) | (w << 24)));
#endif
}

/* Dot products of row x with rows y0, y1: one widened x word serves both, and the dozen live
 * values fit the register file without spilling. */
static void dot_1x2(const int8_t *x, const int8_t *y0, const int8_t *y1, size_t k, int32_t *s0, int32_t *s1) {
    int32_t acc0 = 0, acc1 = 0;
    size_t kk = 0;
    for (; kk + 4 <= k; kk += 4) {
        uint32_t wx = load4(x + kk), w0 = load4(y0 + kk), w1 = load4(y1 + kk);
        int16x2_t xe = even_bytes(wx), xo = odd_bytes(wx);
        acc0 = __smlad(xo, odd_bytes(w0), __smlad(xe, even_bytes(w0), acc0));
        acc1 = __smlad(xo, odd_bytes(w1), __smlad(xe, even_bytes(w1), acc1));
    }
    for (; kk < k; kk++) {
        acc0 += (int32_t)x[kk] * y0[kk];
        acc1 += (int32_t)x[kk] * y1[kk];
    }
    *s0 = acc0;
    *s1 = acc1;
}

/* The tile for ../tiled.h: rows past rb repeat the last row, so pairs of columns are always
 * readable (an odd rb computes one column that is not stored). */
static void tile(const int8_t *const *a, size_t ra, const int8_t *const *b, size_t rb, size_t k, int32_t out[2][4]) {
    for (size_t i = 0; i < ra; i++)
        for (size_t j = 0; j < rb; j += 2) dot_1x2(a[i], b[j], b[j + 1], k, &out[i][j], &out[i][j + 1]);
}

#include "../tiled.h"

IE_TILED_GEMMS(cortexm_dsp)

#else
typedef int ie_no_dsp_kernels; /* ISO C wants a translation unit to declare something */
#endif
