/* Elementary functions in integers; see fixmath.h. */
#include "fixmath.h"

#define Q30 (1LL << 30)

static int64_t round_shift_nearest(int64_t x, int s) { return ie_shift_round(x, s, 0x80000000U); }

int64_t ie_exp2_frac_q30(int64_t f) {
    static const int64_t c[7] = {1073741824, 744260848, 257945537, 59571654, 10398739, 1330132, 234908};
    int64_t p = c[6];
    for (int i = 5; i >= 0; i--) p = c[i] + round_shift_nearest(p * f, 30);
    return p;
}

int64_t ie_exp2_neg_q16(int64_t t) {
    if (t >= (int64_t)31 << 16) return 0;
    int64_t k = (t + 0xFFFF) >> 16;                         /* 2^-t = 2^-k * 2^(k - t), with k - t in [0, 1) */
    return round_shift_nearest(ie_exp2_frac_q30(((k << 16) - t) << 14), (int)k);
}

int64_t ie_sigmoid_q30(int64_t q, int32_t e) {
    int64_t g = (int64_t)(q < 0 ? -q : q) * IE_LOG2E_Q30; /* |x| log2(e) at e - 30 */
    int sh = 30 - 16 - e;
    int64_t t = sh < -20 || (sh < 0 && g > ((int64_t)40 << 16 >> -sh)) ? ((int64_t)40 << 16)
              : (sh >= 0 ? round_shift_nearest(g, sh) : g << -sh);
    int64_t u = ie_exp2_neg_q16(t); /* e^-|x|, Q30 */
    int64_t pos = (Q30 * Q30 + (Q30 + u) / 2) / (Q30 + u); /* 1 / (1 + e^-|x|) */
    return q >= 0 ? pos : Q30 - pos;
}

int64_t ie_log2_q16(uint64_t x) {
    int k = ie_bitlen64(x) - 1;
    uint64_t y = k > 30 ? x >> (k - 30) : x << (30 - k); /* mantissa in [1, 2), Q30 */
    int64_t r = (int64_t)k << 16;
    for (int b = 15; b >= 0; b--) { /* branch-free: the bit is a coin flip that mispredicts half the time */
        y = (y * y + ((uint64_t)1 << 29)) >> 30; /* in [1, 4): the bit is y >= 2 */
        uint64_t bit = y >> 31;
        y >>= bit;
        r |= (int64_t)bit << b;
    }
    return r;
}

int64_t ie_softplus_q16(int64_t x) {
    int64_t ax = x < 0 ? -x : x;
    int64_t u = ie_exp2_neg_q16(round_shift_nearest(ax * IE_LOG2E_Q30, 30)); /* e^-|x|, Q30 */
    int64_t tail = round_shift_nearest((ie_log2_q16((uint64_t)(Q30 + u)) - ((int64_t)30 << 16)) * IE_LN2_Q30, 30);
    return (x > 0 ? x : 0) + tail;
}

int64_t ie_gap_log2e_q16(int32_t gap, int32_t e) {
    if (gap == 0) return 0;
    int64_t v = (int64_t)gap * IE_LOG2E_Q30; /* exponent e - 30; want -16 */
    int sh = 30 - 16 - e;
    /* 2^-65536: the softmax terms are 0 long before (ie_exp2_neg_q16), so the cap only bounds the
     * loss (at 65536 ln 2 nats per sample), whose product with ln 2 in Q30 must fit 64 bits. Gaps
     * reach past it from e = 8 on (255 * log2(e) * 2^8 > 2^16). */
    int64_t lim = (int64_t)1 << 32;
    if (sh < -40) return lim; /* logits so large that every gap dwarfs 2^31 */
    if (sh < 0) return v > (lim >> -sh) ? lim : v << -sh;
    v = round_shift_nearest(v, sh);
    return v > lim ? lim : v;
}
