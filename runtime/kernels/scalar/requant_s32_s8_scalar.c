/* Scalar reference requantization of int32 accumulators (+ optional int64 channel bias) to int8. */
#include "../kernels.h"
#include "../../src/numeric.h"

static int64_t biased(const int32_t *acc, size_t i, const int64_t *bias, size_t inner, size_t channels) {
    return (int64_t)acc[i] + (bias ? bias[(i / inner) % channels] : 0);
}

/* Walks [begin, end) in runs [base, stop): a block of one channel with its bias b, or with
 * inner = 1 (a Gemm's [N, M]) a piece of one row, whose element i gets brow[i - base] (else brow
 * is NULL). Without a bias, or with one channel, the whole range is one run (one-element blocks
 * would make loops that never vectorize). */
#define FOR_BIAS_RUNS(begin, end, bias, inner, channels, ...)                                \
    for (size_t base = (begin), stop; base < (end); base = stop) {                           \
        size_t blk_ = base / (inner);                                                        \
        const int64_t *brow = NULL;                                                          \
        stop = (blk_ + 1) * (inner) < (end) ? (blk_ + 1) * (inner) : (end);                  \
        if (!(bias) || (channels) == 1) stop = (end);                                        \
        else if ((inner) == 1) {                                                             \
            brow = (bias) + base % (channels);                                               \
            stop = base - base % (channels) + (channels);                                    \
            stop = stop < (end) ? stop : (end);                                              \
        }                                                                                    \
        int64_t b = (bias) ? (bias)[blk_ % (channels)] : 0;                                  \
        __VA_ARGS__                                                                          \
    }

IE_HOT uint64_t ie_absmax_s32_bias_scalar(const int32_t *acc, size_t begin, size_t end, const int64_t *bias,
                                          size_t inner, size_t channels) {
    uint64_t m = 0;
    /* max |acc + b| over a block is at its smallest or largest acc: int32 min and max vectorize
     * twice as wide as int64 abs */
    FOR_BIAS_RUNS(begin, end, bias, inner, channels, {
        if (brow) {
            for (size_t i = base; i < stop; i++) {
                uint64_t a = ie_abs64((int64_t)acc[i] + brow[i - base]);
                m = a > m ? a : m;
            }
            continue;
        }
        int32_t lo = INT32_MAX, hi = INT32_MIN;
        for (size_t i = base; i < stop; i++) {
            lo = acc[i] < lo ? acc[i] : lo;
            hi = acc[i] > hi ? acc[i] : hi;
        }
        uint64_t a = ie_abs64((int64_t)lo + b), c = ie_abs64((int64_t)hi + b);
        a = a > c ? a : c;
        m = a > m ? a : m;
    })
    return m;
}

/* One block in 32-bit lanes (16 per AVX-512 vector, not 8) for shifts of 1..31 and an int32
 * bias: acc + b wraps, and a wrap (both operands' signs differ from the sum's) sends the block
 * back to the int64 loop. Returns 0 then. */
static inline int requant32_block(const int32_t *acc, size_t base, size_t stop, int32_t b, int s, uint32_t key,
                                  int8_t *out) {
    uint32_t wrapped = 0;
    for (size_t i = base; i < stop; i++) {
        int32_t v = (int32_t)((uint32_t)acc[i] + (uint32_t)b); /* GCC/Clang: modulo */
        wrapped |= (uint32_t)((acc[i] ^ v) & (b ^ v));
        v = ie_srshift32(v, s, ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ key));
        out[i] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
    }
    return !(wrapped >> 31);
}

IE_HOT void ie_requant_s32_bias_s8_scalar(const int32_t *acc, size_t begin, size_t end, const int64_t *bias,
                                          size_t inner, size_t channels, int s, uint32_t key, uint32_t nearest,
                                          int8_t *out) {
    ie_rounder r = {key, nearest};
    if (!nearest && s >= 0 && s <= 62) { /* branch-free common case, vectorizes per channel block */
        ie_srshift p = ie_srshift_make(s);
        FOR_BIAS_RUNS(begin, end, bias, inner, channels, {
            if (IE_FAST_PATHS && !brow && s >= 1 && s <= 31 && b >= -INT32_MAX && b <= INT32_MAX &&
                requant32_block(acc, base, stop, (int32_t)b, s, key, out))
                continue;
            for (size_t i = base; i < stop; i++) {
                int64_t v = ie_srshift_apply((int64_t)acc[i] + (brow ? brow[i - base] : b), p,
                                             ie_hash32(((uint32_t)i * 0x9E3779B9U) ^ key));
                out[i] = (int8_t)(v > 127 ? 127 : (v < -127 ? -127 : v));
            }
        })
        return;
    }
    for (size_t i = begin; i < end; i++)
        out[i] = (int8_t)ie_clamp64(ie_shift_round(biased(acc, i, bias, inner, channels), s, ie_draw(r, (uint32_t)i)), 127);
}
