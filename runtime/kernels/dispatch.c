#include <string.h>

#include "kernels.h"

#if defined(IE_HAVE_X86_KERNELS)
extern const ie_kernels ie_kernels_avx2, ie_kernels_avx512vnni;
#endif
#if defined(IE_HAVE_ARM64_KERNELS)
extern const ie_kernels ie_kernels_neon, ie_kernels_dotprod;
#endif
/* The DSP extension is a property of the core the build targets, not something to probe. */
#if defined(IE_HAVE_CORTEXM_KERNELS) && defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32)
#define IE_HAVE_CORTEXM_DSP
extern const ie_kernels ie_kernels_cortexm_dsp;
#endif

/* Every compiled tier, worst to best. */
static const ie_kernels *const tiers[] = {
    &ie_kernels_scalar,
#if defined(IE_HAVE_X86_KERNELS)
    &ie_kernels_avx2,
    &ie_kernels_avx512vnni,
#endif
#if defined(IE_HAVE_ARM64_KERNELS)
    &ie_kernels_neon,
    &ie_kernels_dotprod,
#endif
#if defined(IE_HAVE_CORTEXM_DSP)
    &ie_kernels_cortexm_dsp,
#endif
};

const ie_kernels *ie_kernels_at(uint32_t index) {
    for (size_t t = 0; t < sizeof tiers / sizeof tiers[0]; t++)
        if (!tiers[t]->supported || tiers[t]->supported()) {
            if (index == 0) return tiers[t];
            index--;
        }
    return NULL;
}

const ie_kernels *ie_kernels_select(const char *name) {
    const ie_kernels *best = NULL, *k;
    for (uint32_t i = 0; (k = ie_kernels_at(i)) != NULL; i++) {
        if (name && strcmp(name, k->name) == 0) return k;
        best = k;
    }
    return name ? NULL : best;
}
