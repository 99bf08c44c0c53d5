/* Scalar reference requantization of int32 accumulators (+ optional int64 channel bias) to int8. */
#include "../kernels.h"
#include "../../src/numeric.h"

static int64_t biased(const int32_t *acc, size_t i, const int64_t *bias, size_t inner, size_t channels) {
    return (int64_t)acc[i] + (bias ? bias[(i / inner) % channels] : 0);
}

IE_HOT uint64_t ie_absmax_s32_bias_scalar(const int32_t *acc, size_t n, const int64_t *bias, size_t inner, size_t channels) {
    uint64_t m = 0;
    /* one block of `inner` elements shares a channel: no division per element */
    for (size_t base = 0; base < n; base += inner) {
        int64_t b = bias ? bias[(base / inner) % channels] : 0;
        size_t end = base + inner < n ? base + inner : n;
        for (size_t i = base; i < end; i++) {
            uint64_t a = ie_abs64((int64_t)acc[i] + b);
            m = a > m ? a : m;
        }
    }
    return m;
}

IE_HOT void ie_requant_s32_bias_s8_scalar(const int32_t *acc, size_t n, const int64_t *bias, size_t inner,
                                          size_t channels, int s, uint32_t key, uint32_t nearest, int8_t *out) {
    ie_rounder r = {key, nearest};
    if (!nearest && s >= 0 && s <= 62) { /* branch-free common case, vectorizes per channel block */
        ie_srshift p = ie_srshift_make(s);
        for (size_t base = 0; base < n; base += inner) {
            int64_t b = bias ? bias[(base / inner) % channels] : 0;
            size_t end = base + inner < n ? base + inner : n;
            for (size_t i = base; i < end; i++) {
                int64_t v = ie_srshift_apply((int64_t)acc[i] + b, p, ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ key));
                out[i] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
            }
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (int8_t)ie_clamp64(ie_shift_round(biased(acc, i, bias, inner, channels), s, ie_draw(r, (uint32_t)i)), 127);
}
