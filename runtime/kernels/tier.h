/* The table of a tier whose GEMMs are ie_gemm_s8s8_{s32,s64}_<isa> and whose absmax and
 * requantization are scalar's (bit-exact by definition, and cheap next to the GEMMs).
 * IE_GEMM_TIER(isa, "name", probe) defines ie_kernels_<isa> with scalar's reduction-major GEMM;
 * IE_GEMM_TIER_BT also takes ie_gemm_s8s8_s32_bt_<isa>. probe may be NULL (always runs). */
#ifndef IE_TIER_H
#define IE_TIER_H

#include "kernels.h"

uint64_t ie_absmax_s32_bias_scalar(const int32_t *acc, size_t begin, size_t end, const int64_t *bias, size_t inner,
                                   size_t channels);
void ie_requant_s32_bias_s8_scalar(const int32_t *acc, size_t begin, size_t end, const int64_t *bias, size_t inner,
                                   size_t channels, int s, uint32_t key, uint32_t nearest, int8_t *out);
void ie_gemm_s8s8_s32_bt_scalar(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k);

#define IE_TIER_WITH(isa, tier_name, probe, gemm_bt)                                                         \
    void ie_gemm_s8s8_s32_##isa(const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k); \
    void ie_gemm_s8s8_s64_##isa(const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k); \
    const ie_kernels ie_kernels_##isa = {                                                                    \
        .name = tier_name,                                                                                   \
        .supported = probe,                                                                                  \
        .gemm_s8s8_s32 = ie_gemm_s8s8_s32_##isa,                                                             \
        .gemm_s8s8_s64 = ie_gemm_s8s8_s64_##isa,                                                             \
        .gemm_s8s8_s32_bt = gemm_bt,                                                                         \
        .absmax_s32_bias = ie_absmax_s32_bias_scalar,                                                        \
        .requant_s32_bias_s8 = ie_requant_s32_bias_s8_scalar,                                                \
    };

#define IE_GEMM_TIER(isa, tier_name, probe) IE_TIER_WITH(isa, tier_name, probe, ie_gemm_s8s8_s32_bt_scalar)

#define IE_GEMM_TIER_BT(isa, tier_name, probe)                                                                  \
    void ie_gemm_s8s8_s32_bt_##isa(const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k); \
    IE_TIER_WITH(isa, tier_name, probe, ie_gemm_s8s8_s32_bt_##isa)

#endif
