/* Cortex-M kernel table. The DSP extension is fixed per core and known at compile time
 * (__ARM_FEATURE_DSP: M4, M7, M33, M55), so there is nothing to probe: a build for a core
 * without it has no "cortex-m-dsp" tier at all. Requantization stays scalar (same results). */
#include "../tier.h"

#if defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
IE_GEMM_TIER_BT(cortexm_dsp, "cortex-m-dsp", NULL)
#else
typedef int ie_no_dsp_table; /* ISO C wants a translation unit to declare something */
#endif
