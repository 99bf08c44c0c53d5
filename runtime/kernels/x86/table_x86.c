/* x86 kernel tables. GEMMs are SIMD; requantization stays scalar for now (same results). */
#include "../kernels.h"

void ie_gemm_s8s8_s32_avx2(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k);
void ie_gemm_s8s8_s64_avx2(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k);
void ie_gemm_s8s8_s32_avx512vnni(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k);
void ie_gemm_s8s8_s64_avx512vnni(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k);
uint64_t ie_absmax_s32_bias_scalar(const int32_t *acc, size_t n, const int64_t *bias, size_t inner, size_t channels);
void ie_requant_s32_bias_s8_scalar(const int32_t *acc, size_t n, const int64_t *bias, size_t inner, size_t channels,
                                   int s, uint32_t key, uint32_t nearest, int8_t *out);

static int has_avx2(void) { return __builtin_cpu_supports("avx2"); }
static int has_avx512vnni(void) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vnni");
}

const ie_kernels ie_kernels_avx2 = {
    .name = "avx2",
    .supported = has_avx2,
    .gemm_s8s8_s32 = ie_gemm_s8s8_s32_avx2,
    .gemm_s8s8_s64 = ie_gemm_s8s8_s64_avx2,
    .absmax_s32_bias = ie_absmax_s32_bias_scalar,
    .requant_s32_bias_s8 = ie_requant_s32_bias_s8_scalar,
};

const ie_kernels ie_kernels_avx512vnni = {
    .name = "avx512vnni",
    .supported = has_avx512vnni,
    .gemm_s8s8_s32 = ie_gemm_s8s8_s32_avx512vnni,
    .gemm_s8s8_s64 = ie_gemm_s8s8_s64_avx512vnni,
    .absmax_s32_bias = ie_absmax_s32_bias_scalar,
    .requant_s32_bias_s8 = ie_requant_s32_bias_s8_scalar,
};
