/* x86 kernel tables. GEMMs (row- and reduction-major) are SIMD; requantization stays scalar for
 * now (same results). */
#include "../tier.h"

static int has_avx2(void) { return __builtin_cpu_supports("avx2"); }
static int has_avx512vnni(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

IE_GEMM_TIER_BT(avx2, "avx2", has_avx2)
IE_GEMM_TIER_BT(avx512vnni, "avx512vnni", has_avx512vnni)
