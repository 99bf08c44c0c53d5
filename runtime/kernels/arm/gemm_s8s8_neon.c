/* aarch64 ARMv8.0 NEON int8 GEMMs, bit-identical to the scalar reference. smull multiplies 8
 * byte pairs into int16 and smlal2 adds the other 8: each int16 lane then holds two products,
 * at most 2 * 127 * 127 = 32258 in magnitude (three would not fit, hence the pairing). sadalp
 * widens adjacent lanes into the int32 accumulator. Integer sums do not depend on order. */
#include <arm_neon.h>

static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) {
    int16x8_t pairs = vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b);
    return vpadalq_s16(acc, pairs);
}

#include "tile_neon.h"

IE_TILED_GEMMS(neon)
