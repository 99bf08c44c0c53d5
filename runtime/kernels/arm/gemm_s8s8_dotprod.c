/* ARMv8.2 dot-product int8 GEMMs (sdot), bit-identical to the scalar reference. sdot adds four
 * byte products straight into each int32 lane; no intermediate can saturate. This file alone is
 * built with -march=armv8.2-a+dotprod, so an armv8-a binary carries it and table_arm.c picks it
 * only on CPUs that report the feature. */
#include <arm_neon.h>

#if !defined(__ARM_FEATURE_DOTPROD)
#error "gemm_s8s8_dotprod.c needs -march=armv8.2-a+dotprod (see kernels.cmake)"
#endif

static inline int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b) { return vdotq_s32(acc, a, b); }

#include "tile_neon.h"

IE_TILED_GEMMS(dotprod)
