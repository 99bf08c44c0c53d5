/* Requantization steps every op with an int32 accumulator shares. */
#include "ops.h"

int32_t ie_requant_bias(const ie_exec *rt, int32_t *acc, size_t total, int32_t e_acc, size_t inner,
                        size_t channels, const int32_t *bias, int32_t eb, int64_t *bias_al, const ie_rounder r[3],
                        int8_t *y) {
    int32_t e = e_acc;
    if (bias) {
        int32_t e_work = eb - 31 > e ? eb - 31 : e;
        if (e_work > e) ie_shift_s32_s32(acc, total, e_work - e, 31, r[0], acc);
        for (size_t j = 0; j < channels; j++)
            bias_al[j] = ie_shift_round(bias[j], e_work - eb, ie_draw(r[1], (uint32_t)j));
        e = e_work;
    }
    int sh = ie_requant_shift(rt->k->absmax_s32_bias(acc, total, bias ? bias_al : NULL, inner, channels), 7);
    rt->k->requant_s32_bias_s8(acc, total, bias ? bias_al : NULL, inner, channels, sh, r[2].key, r[2].nearest, y);
    return e + sh;
}

int ie_requant_acc(const ie_exec *rt, const int32_t *acc, size_t total, ie_rounder r, int8_t *y) {
    int sh = ie_requant_shift(rt->k->absmax_s32_bias(acc, total, NULL, 1, 1), 7);
    rt->k->requant_s32_bias_s8(acc, total, NULL, 1, 1, sh, r.key, r.nearest, y);
    return sh;
}
