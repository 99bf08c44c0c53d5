/* Losses: softmax cross-entropy and mean squared error, each computing the loss value (fixed
 * point, for display) and the gradient of the logits (int8, stochastically rounded). */
#include "ops.h"

#define Q30 (1LL << 30)
#define LOG2E_Q30 1549082005LL /* log2(e) * 2^30 */
#define LN2_Q30 744261118LL    /* ln(2) * 2^30 */

static int64_t round_shift_nearest(int64_t x, int s) { return ie_shift_round(x, s, 0x80000000U); }

/* 2^(-t / 2^16) for t >= 0, in Q30. Integer part as a shift, fraction by a degree-6 polynomial
 * (max relative error 5e-9 over [0, 1)). */
int64_t ie_exp2_neg_q16(int64_t t) {
    static const int64_t c[7] = {1073741824, 744260848, 257945537, 59571654, 10398739, 1330132, 234908};
    if (t >= (int64_t)31 << 16) return 0;
    int64_t k = (t + 0xFFFF) >> 16;           /* 2^-t = 2^-k * 2^(k - t), with k - t in [0, 1) */
    int64_t f = ((k << 16) - t) << 14;        /* the fraction in Q30 */
    int64_t p = c[6];
    for (int i = 5; i >= 0; i--) p = c[i] + round_shift_nearest(p * f, 30);
    return round_shift_nearest(p, (int)k);
}

int64_t ie_sigmoid_q30(int64_t q, int32_t e) {
    int64_t g = (int64_t)(q < 0 ? -q : q) * LOG2E_Q30; /* |x| log2(e) at e - 30 */
    int sh = 30 - 16 - e;
    int64_t t = sh < -20 || (sh < 0 && g > ((int64_t)40 << 16 >> -sh)) ? ((int64_t)40 << 16)
              : (sh >= 0 ? round_shift_nearest(g, sh) : g << -sh);
    int64_t u = ie_exp2_neg_q16(t); /* e^-|x|, Q30 */
    int64_t pos = (Q30 * Q30 + (Q30 + u) / 2) / (Q30 + u); /* 1 / (1 + e^-|x|) */
    return q >= 0 ? pos : Q30 - pos;
}

/* log2(x) in Q16 for x >= 1, by repeated squaring of the normalized mantissa. */
int64_t ie_log2_q16(uint64_t x) {
    int k = ie_bitlen64(x) - 1;
    uint64_t y = k > 30 ? x >> (k - 30) : x << (30 - k); /* mantissa in [1, 2), Q30 */
    int64_t r = (int64_t)k << 16;
    for (int b = 15; b >= 0; b--) {
        y = (y * y + ((uint64_t)1 << 29)) >> 30;
        if (y >= (uint64_t)2 << 30) {
            y >>= 1;
            r |= (int64_t)1 << b;
        }
    }
    return r;
}

/* Per-class -log2(p) terms need t_j = (zmax - z_j) * 2^e_z * log2(e) in Q16. */
static int64_t scaled_gap_q16(int32_t gap, int32_t e_z) {
    if (gap == 0) return 0;
    int64_t v = (int64_t)gap * LOG2E_Q30; /* exponent e_z - 30; want -16 */
    int sh = 30 - 16 - e_z;
    /* 2^-65536: the softmax terms are 0 long before (ie_exp2_neg_q16), so the cap only bounds the
     * loss (at 65536 ln 2 nats per sample), whose product with ln 2 in Q30 must fit 64 bits. Gaps
     * reach past it from e_z = 8 on (255 * log2(e) * 2^8 > 2^16). */
    int64_t lim = (int64_t)1 << 32;
    if (sh < -40) return lim; /* logits so large that every gap dwarfs 2^31 */
    if (sh < 0) return v > (lim >> -sh) ? lim : v << -sh;
    v = round_shift_nearest(v, sh);
    return v > lim ? lim : v;
}

/* Cross-entropy rows: adds each row's loss (Q16 nats) and argmax hit to st; with grad != NULL
 * writes (softmax - onehot) / n as int64 with exponent IE_CE_GRAD_EXP. */
ie_status ie_softmax_ce_rows(const int8_t *z, int32_t ez, uint32_t n, uint32_t c, const int32_t *labels,
                             int64_t *grad, ie_step_stats *st, char *err) {
    for (uint32_t i = 0; i < n; i++) {
        if (labels[i] < 0 || (uint32_t)labels[i] >= c) {
            ie_set_err(err, "label %" PRId32 " of sample %" PRIu32 " is outside [0, %" PRIu32 ")", labels[i], i, c);
            return IE_ERR_VALUE;
        }
    }
    int64_t recip = (((int64_t)1 << 32) / n + 1) >> 1; /* round(2^31 / n): the batch mean */
    for (uint32_t i = 0; i < n; i++) {
        const int8_t *row = z + (size_t)i * c;
        uint32_t arg = 0;
        for (uint32_t j = 1; j < c; j++)
            if (row[j] > row[arg]) arg = j;
        int64_t sum = 0;
        for (uint32_t j = 0; j < c; j++) sum += ie_exp2_neg_q16(scaled_gap_q16(row[arg] - row[j], ez));
        uint32_t y = (uint32_t)labels[i];
        /* loss = ln2 * (log2(sum / 2^30) + t_y) */
        int64_t l2 = ie_log2_q16((uint64_t)sum) - ((int64_t)30 << 16) + scaled_gap_q16(row[arg] - row[y], ez);
        st->loss_sum_q16 += round_shift_nearest(l2 * LN2_Q30, 30);
        st->n_correct += arg == y;
        if (!grad) continue;
        for (uint32_t j = 0; j < c; j++) {
            int64_t e_j = ie_exp2_neg_q16(scaled_gap_q16(row[arg] - row[j], ez));
            int64_t p = ((e_j << 30) + sum / 2) / sum; /* softmax in Q30 */
            grad[(size_t)i * c + j] = (p - (j == y ? Q30 : 0)) * recip;
        }
    }
    return IE_OK;
}

static ie_status softmax_ce(ie_session *s, const int32_t *labels, int with_grad, ie_step_stats *st) {
    const ie_model *m = s->model;
    ie_value *z = &s->values[m->output];
    uint32_t c = m->tensors[m->output].numel;
    ie_status status = ie_softmax_ce_rows(z->q, z->e, s->n, c, labels, with_grad ? s->loss_acc : NULL, st, s->errmsg);
    if (status == IE_OK && with_grad)
        z->ge = IE_CE_GRAD_EXP + ie_requant_s64_s8(s->loss_acc, (size_t)s->n * c, ie_session_rounder(s, IE_STREAM_LOSS), z->g);
    return status;
}

/* Targets (float32 bits) as 24-bit integers at one exponent, into s->targets. */
static ie_status load_targets(ie_session *s, const uint32_t *targets, size_t total, int32_t *e_t) {
    if (ie_f32_common_exponent(targets, total, 24, e_t) != IE_OK) {
        ie_set_err(s->errmsg, "targets contain NaN or Inf");
        return IE_ERR_VALUE;
    }
    ie_rounder rt = ie_session_rounder(s, IE_STREAM_TARGET);
    for (size_t i = 0; i < total; i++) s->targets[i] = ie_f32_to_fixed(targets[i], *e_t, 24, ie_draw(rt, (uint32_t)i));
    return IE_OK;
}

static ie_status mse(ie_session *s, const uint32_t *targets, int with_grad, ie_step_stats *st) {
    const ie_model *m = s->model;
    const ie_value *z = &s->values[m->output];
    uint32_t d = m->tensors[m->output].numel, n = s->n;
    size_t total = (size_t)n * d;
    int32_t e_t;
    ie_status status = load_targets(s, targets, total, &e_t);
    if (status != IE_OK) return status;
    /* difference at a common exponent; shifts are bounded by 32 so int64 holds everything */
    int32_t lo = z->e < e_t ? z->e : e_t, hi = z->e < e_t ? e_t : z->e;
    int32_t e_c = hi - 32 > lo ? hi - 32 : lo;
    ie_rounder rd = ie_session_rounder(s, IE_STREAM_LOSS);
    int64_t *diff = s->loss_acc;
    for (size_t i = 0; i < total; i++) {
        uint32_t draw = ie_draw(rd, (uint32_t)i);
        diff[i] = ie_shift_round(z->q[i], e_c - z->e, draw) - ie_shift_round(s->targets[i], e_c - e_t, draw);
    }
    /* loss: per sample mean of squares, from a copy narrow enough that d squares fit in int64 */
    int sl = ie_requant_shift(ie_absmax_s64(diff, total), (62 - ie_bitlen64(d)) / 2);
    for (uint32_t i = 0; i < n; i++) {
        int64_t sq = 0;
        for (uint32_t j = 0; j < d; j++) {
            int64_t v = round_shift_nearest(diff[(size_t)i * d + j], sl);
            sq += v * v;
        }
        int sh = -(2 * (e_c + sl) + 16); /* to Q16 */
        const int64_t cap = (int64_t)1 << 46; /* a loss of 2^30 per sample: display saturates */
        if (sh >= 0) sq = round_shift_nearest(sq, sh);
        else if (sq != 0) sq = (-sh > 46 || sq > (cap >> -sh)) ? cap : sq << -sh;
        st->loss_sum_q16 += (sq > cap ? cap : sq) / d;
    }
    if (with_grad) {
        /* d/dz of mean((z - t)^2) = 2 (z - t) / (n d): normalize to 30 bits, times round(2^32/(n d)) * 2^-31 */
        int s30 = ie_requant_shift(ie_absmax_s64(diff, total), 30);
        ie_rounder rn = ie_session_rounder(s, IE_STREAM_LOSS + 0x10);
        int64_t recip = (((int64_t)1 << 33) / (int64_t)total + 1) >> 1;
        for (size_t i = 0; i < total; i++)
            diff[i] = ie_clamp64(ie_shift_round(diff[i], s30, ie_draw(rn, (uint32_t)i)), ((int64_t)1 << 30) - 1) * recip;
        int sh = ie_requant_s64_s8(diff, total, ie_session_rounder(s, IE_STREAM_LOSS + 0x20), s->values[m->output].g);
        s->values[m->output].ge = e_c + s30 - 31 + sh;
    }
    return IE_OK;
}

/* Binary cross-entropy with logits, per element: max(z, 0) - z t + log(1 + e^-|z|); the
 * gradient (sigmoid(z) - t) / (n d). */
static ie_status bce_logits(ie_session *s, const uint32_t *targets, int with_grad, ie_step_stats *st) {
    const ie_model *m = s->model;
    ie_value *z = &s->values[m->output];
    uint32_t d = m->tensors[m->output].numel, n = s->n;
    size_t total = (size_t)n * d;
    int32_t e_t;
    ie_status status = load_targets(s, targets, total, &e_t);
    if (status != IE_OK) return status;
    /* 1.0 at the targets' exponent (mantissas stay below 2^25, so a larger "one" bounds nothing) */
    int64_t one = e_t > 0 ? 0 : ((int64_t)1 << (-e_t > 40 ? 40 : -e_t));
    for (size_t i = 0; i < total; i++)
        if (s->targets[i] < 0 || s->targets[i] > one) {
            ie_set_err(s->errmsg, "BCE target of sample %lu is outside [0, 1]", (unsigned long)(i / d));
            return IE_ERR_VALUE;
        }
    int64_t recip = (((int64_t)1 << 32) / (int64_t)total + 1) >> 1; /* round(2^31 / (n d)) */
    int32_t e_z16 = z->e + 16;
    for (size_t i = 0; i < total; i++) {
        /* t in Q30 (targets are within [0, 1]) */
        int64_t t = ie_shift_round(s->targets[i], -30 - e_t, 0x80000000U);
        int64_t zq16 = e_z16 >= 0 ? ((int64_t)z->q[i] << (e_z16 > 40 ? 40 : e_z16)) : round_shift_nearest(z->q[i], -e_z16);
        int64_t az = zq16 < 0 ? -zq16 : zq16;
        int64_t u = ie_exp2_neg_q16(round_shift_nearest(az * LOG2E_Q30, 30)); /* e^-|z|, Q30 */
        int64_t softplus = round_shift_nearest((ie_log2_q16((uint64_t)(Q30 + u)) - ((int64_t)30 << 16)) * LN2_Q30, 30);
        int64_t loss = (zq16 > 0 ? zq16 : 0) - round_shift_nearest(zq16 * t, 30) + softplus;
        st->loss_sum_q16 += loss / (int64_t)d;
        st->n_correct += (z->q[i] > 0) == (t >= Q30 / 2);
        if (with_grad) s->loss_acc[i] = (ie_sigmoid_q30(z->q[i], z->e) - t) * recip;
    }
    if (with_grad)
        z->ge = -30 - 31 + ie_requant_s64_s8(s->loss_acc, total, ie_session_rounder(s, IE_STREAM_LOSS), z->g);
    return IE_OK;
}

ie_status ie_loss_forward_backward(ie_session *s, const int32_t *labels, const uint32_t *targets, int with_grad,
                                   ie_step_stats *stats) {
    stats->loss_sum_q16 = 0;
    stats->n_correct = 0;
    stats->count = s->n;
    if (s->cfg.loss == IE_LOSS_SOFTMAX_CE) return softmax_ce(s, labels, with_grad, stats);
    if (s->cfg.loss == IE_LOSS_BCE_LOGITS) return bce_logits(s, targets, with_grad, stats);
    return mse(s, targets, with_grad, stats);
}
