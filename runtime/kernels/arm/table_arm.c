/* aarch64 kernel tables. GEMMs are SIMD; requantization stays scalar for now (same results).
 * NEON is part of ARMv8-A, so that tier always runs; dot product is optional before ARMv9. */
#include "../tier.h"

#if defined(__linux__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1UL << 20) /* older libc headers */
#endif
#endif

static int has_dotprod(void) {
#if defined(__ARM_FEATURE_DOTPROD)
    return 1; /* the whole build already assumes it */
#elif defined(__linux__)
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
    return 0; /* no portable probe: stay on NEON */
#endif
}

IE_GEMM_TIER_BT(neon, "neon", NULL)
IE_GEMM_TIER_BT(dotprod, "neon-dot", has_dotprod)
