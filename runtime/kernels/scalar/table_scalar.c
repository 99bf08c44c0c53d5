#include "../kernels.h"

void ie_gemm_s8s8_s32_scalar(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k);
void ie_gemm_s8s8_s64_scalar(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k);
uint64_t ie_absmax_s32_bias_scalar(const int32_t *acc, size_t n, const int64_t *bias, size_t inner, size_t channels);
void ie_requant_s32_bias_s8_scalar(const int32_t *acc, size_t n, const int64_t *bias, size_t inner, size_t channels,
                                   int s, uint32_t key, uint32_t nearest, int8_t *out);

const ie_kernels ie_kernels_scalar = {
    .name = "scalar",
    .gemm_s8s8_s32 = ie_gemm_s8s8_s32_scalar,
    .gemm_s8s8_s64 = ie_gemm_s8s8_s64_scalar,
    .absmax_s32_bias = ie_absmax_s32_bias_scalar,
    .requant_s32_bias_s8 = ie_requant_s32_bias_s8_scalar,
};
