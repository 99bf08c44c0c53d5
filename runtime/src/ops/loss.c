/* Losses: softmax cross-entropy (per sample or per pixel), mean squared error, binary
 * cross-entropy and CenterNet's detection loss, each computing the loss value (fixed point, for display) and the gradient of
 * the logits (int8, stochastically rounded). */
#include "ops.h"

#define Q30 (1LL << 30)

static int64_t round_shift_nearest(int64_t x, int s) { return ie_shift_round(x, s, 0x80000000U); }

/* e^-(gap 2^ez) in Q30 for a gap between int8 logits and their max (ie_gap_log2e_q16, then
 * ie_exp2_neg_q16). A per-pixel loss reads c of them a pixel, twice: its call tabulates the 256
 * gaps first (exp_gap_table), and ce_block reads tab[gap] when given one. */
static int64_t exp_gap_q30(int32_t gap, int32_t ez) { return ie_exp2_neg_q16(ie_gap_log2e_q16(gap, ez)); }

static void exp_gap_table(int32_t ez, int32_t tab[256]) {
    for (int32_t g = 0; g < 256; g++) tab[g] = (int32_t)exp_gap_q30(g, ez);
}

/* round(e 2^30 / sum), halves up, for 0 <= e <= 2^30 <= sum < 2^62, given inv = floor(2^62 / sum):
 * the estimate from inv is within one of the quotient (e (2^62 / sum - inv) / 2^32 < 1/4) and one
 * remainder test per side makes it exact, the division's value without a division per logit. */
static int64_t softmax_q30(int64_t e, int64_t sum, uint64_t inv) {
    int64_t num = (e << 30) + sum / 2;
    int64_t q = (int64_t)(((uint64_t)e * inv + ((uint64_t)1 << 31)) >> 32), r = num - q * sum;
    for (; r < 0; r += sum) q--;
    for (; r >= sum; r -= sum) q++;
    return q;
}

#define CE_BLOCK 16 /* columns (pixels or rows) one pass over the channels takes */

/* Softmax cross-entropy of nb <= CE_BLOCK columns of c logits: logit j of column k at z[j * cstep
 * + k * kstep], and so in grad; column k's label is labels[k], and with `ignore` IE_IGNORE_LABEL
 * columns do not count. Adds the counted columns' losses (Q16 nats) and argmax hits to st; with
 * grad != NULL writes (softmax - onehot) * recip, 0 in the others. tab: exp_gap_table's, or NULL.
 * It runs channel by channel over the block: a pixel at a time would walk c planes H * W apart,
 * which share cache sets (at 64 x 64, 4 KB apart) and missed on every load. */
static void ce_block(const int8_t *z, size_t cstep, size_t kstep, uint32_t nb, uint32_t c, int32_t ez, const int32_t *tab,
                     const int32_t *labels, int ignore, int64_t recip, int64_t *grad, ie_step_stats *st) {
    int32_t top[CE_BLOCK];
    uint32_t arg[CE_BLOCK];
    int64_t sum[CE_BLOCK]; /* each >= 2^30, its max's own term */
    uint64_t inv[CE_BLOCK];
#define Z(j, k) z[(size_t)(j) * cstep + (size_t)(k) * kstep]
#define EXP_GAP(j, k) (tab ? tab[top[k] - Z(j, k)] : exp_gap_q30(top[k] - Z(j, k), ez))
#define COUNTED(k) (!ignore || labels[k] != IE_IGNORE_LABEL)
    for (uint32_t k = 0; k < nb; k++) top[k] = Z(0, k), arg[k] = 0, sum[k] = 0;
    for (uint32_t j = 1; j < c; j++)
        for (uint32_t k = 0; k < nb; k++)
            if (Z(j, k) > top[k]) top[k] = Z(j, k), arg[k] = j;
    for (uint32_t j = 0; j < c; j++)
        for (uint32_t k = 0; k < nb; k++) sum[k] += EXP_GAP(j, k);
    for (uint32_t k = 0; k < nb; k++) {
        if (!COUNTED(k)) continue;
        /* loss = ln2 * (log2(sum / 2^30) + t_y) */
        int64_t l2 = ie_log2_q16((uint64_t)sum[k]) - ((int64_t)30 << 16) + ie_gap_log2e_q16(top[k] - Z(labels[k], k), ez);
        st->loss_sum_q16 += round_shift_nearest(l2 * IE_LN2_Q30, 30);
        st->n_correct += arg[k] == (uint32_t)labels[k];
        inv[k] = ((uint64_t)1 << 62) / (uint64_t)sum[k];
    }
    for (uint32_t j = 0; j < c && grad; j++) /* softmax in Q30, minus the one-hot */
        for (uint32_t k = 0; k < nb; k++)
            grad[(size_t)j * cstep + (size_t)k * kstep] =
                COUNTED(k) ? (softmax_q30(EXP_GAP(j, k), sum[k], inv[k]) - ((uint32_t)labels[k] == j ? Q30 : 0)) * recip : 0;
#undef COUNTED
#undef EXP_GAP
#undef Z
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
    for (uint32_t i = 0; i < n; i += CE_BLOCK) /* a few rows: the exp of each logit computed, no table */
        ce_block(z + (size_t)i * c, 1, c, n - i < CE_BLOCK ? n - i : CE_BLOCK, c, ez, NULL, labels + i, 0, recip,
                 grad ? grad + (size_t)i * c : NULL, st);
    return IE_OK;
}

/* Per-pixel cross-entropy over the channel axis of [n, c, p] logits (p pixels a sample), labels
 * [n, p] with IE_IGNORE_LABEL for pixels that do not count. Adds the counted pixels' losses and
 * argmax hits to st and sets st->count to their number; with grad != NULL writes (softmax -
 * onehot) / count (0 at ignored pixels) as int64 with exponent *grad_e. */
ie_status ie_softmax_ce_pixels(const int8_t *z, int32_t ez, uint32_t n, uint32_t c, uint32_t p, const int32_t *labels,
                               int64_t *grad, int32_t *grad_e, ie_step_stats *st, char *err) {
    size_t pixels = (size_t)n * p;
    uint32_t count = 0;
    for (size_t i = 0; i < pixels; i++) {
        if (labels[i] == IE_IGNORE_LABEL) continue;
        if (labels[i] < 0 || (uint32_t)labels[i] >= c) {
            ie_set_err(err, "label %" PRId32 " at pixel %lu of sample %lu is outside [0, %" PRIu32 ") and is not %d (ignore)",
                       labels[i], (unsigned long)(i % p), (unsigned long)(i / p), c, IE_IGNORE_LABEL);
            return IE_ERR_VALUE;
        }
        count++;
    }
    /* round(2^(31+k) / count) with 2^k <= count < 2^(k+1): 32 significant bits at any count */
    int k = count ? ie_bitlen64(count) - 1 : 0;
    int64_t recip = count ? ((((int64_t)1 << (32 + k)) / count + 1) >> 1) : 0;
    int32_t tab[256];
    exp_gap_table(ez, tab);
    for (uint32_t i = 0; i < n; i++)
        for (uint32_t b = 0; b < p; b += CE_BLOCK) {
            size_t at = (size_t)i * c * p + b; /* channel 0 of pixel b of sample i */
            ce_block(z + at, p, 1, p - b < CE_BLOCK ? p - b : CE_BLOCK, c, ez, tab, labels + (size_t)i * p + b, 1, recip,
                     grad ? grad + at : NULL, st);
        }
    st->count = count;
    *grad_e = IE_CE_GRAD_EXP - k;
    return IE_OK;
}

/* A logit q 2^e in Q16, saturated at +-256 (the focal terms are flat long before). */
static int64_t logit_q16(int8_t q, int32_t e) {
    const int64_t cap = (int64_t)1 << 24;
    int s = e + 16;
    int64_t v = s < 0 ? round_shift_nearest(q, -s) : (s > 24 ? (int64_t)q * cap : (int64_t)q * ((int64_t)1 << s));
    return v > cap ? cap : (v < -cap ? -cap : v);
}

/* sign(q 2^e - t 2^-16), exactly, for 0 <= t <= 2^24. */
static int sign_vs_q16(int8_t q, int32_t e, int32_t t) {
    int s = e + 16;
    int64_t d;
    if (s >= 0) d = s > 24 ? (q ? q : -t) : (int64_t)q * ((int64_t)1 << s) - t; /* |q| 2^25 > t */
    else d = -s >= 8 ? (t ? -t : q) : q - ((int64_t)t << -s); /* t 2^8 > |q| */
    return (d > 0) - (d < 0);
}

static const int64_t centernet_weight_q30[4] = {107374182, 107374182, Q30, Q30}; /* 0.1 w, h; 1 offsets */

static int bad_box_target(const int32_t *r, uint32_t p) {
    int none = r[0] == IE_NO_BOX;
    for (uint32_t j = 0; j < 4; j++)
        if (none ? r[(size_t)j * p] != IE_NO_BOX : (r[(size_t)j * p] < 0 || r[(size_t)j * p] > IE_BOX_TARGET_MAX)) return 1;
    return 0;
}

/* One heatmap cell's penalty-reduced focal loss (alpha 2, beta 4): adds the loss (Q16 nats) to
 * st and returns d/dz in Q30. y is the Gaussian target in Q30, IE_HEAT_ONE at a centre. */
static int64_t focal_one(int8_t q, int32_t e, int64_t y, ie_step_stats *st) {
    int64_t z = logit_q16(q, e), p = ie_sigmoid_q30(q, e), m = Q30 - p;
    if (y == IE_HEAT_ONE) { /* -(1-p)^2 log p;  d/dz = (1-p)^2 (2 p log p - (1-p)) */
        int64_t m2 = round_shift_nearest(m * m, 30), nlogp = ie_softplus_q16(-z);
        st->loss_sum_q16 += round_shift_nearest(m2 * nlogp, 30);
        st->n_correct += q > 0;
        return round_shift_nearest(m2 * (-round_shift_nearest(2 * p * nlogp, 16) - m), 30);
    }
    /* -(1-y)^4 p^2 log(1-p);  d/dz = (1-y)^4 p^2 (p - 2 (1-p) log(1-p)) */
    int64_t om = Q30 - y, om2 = round_shift_nearest(om * om, 30), om4 = round_shift_nearest(om2 * om2, 30);
    int64_t w = round_shift_nearest(om4 * round_shift_nearest(p * p, 30), 30), nlog1mp = ie_softplus_q16(z);
    st->loss_sum_q16 += round_shift_nearest(w * nlog1mp, 30);
    return round_shift_nearest(w * (p + round_shift_nearest(2 * m * nlog1mp, 16)), 30);
}

ie_status ie_centernet_loss(const int8_t *z, int32_t ez, uint32_t n, uint32_t ch, uint32_t p, const int32_t *labels,
                            int64_t *grad, int32_t *grad_e, ie_step_stats *st, char *err) {
    uint32_t c = ch - 4; /* heatmap classes; the session refused an output of fewer than 5 channels */
    size_t per = (size_t)ch * p;
    uint32_t objects = 0;
    for (uint32_t i = 0; i < n; i++) {
        const int32_t *lab = labels + i * per;
        for (size_t k = 0; k < (size_t)c * p; k++) {
            if (lab[k] < 0 || lab[k] > IE_HEAT_ONE) {
                ie_set_err(err, "heatmap target %" PRId32 " of sample %" PRIu32 " is outside [0, 2^30]", lab[k], i);
                return IE_ERR_VALUE;
            }
            objects += lab[k] == IE_HEAT_ONE;
        }
        for (uint32_t k = 0; k < p; k++)
            if (bad_box_target(lab + (size_t)c * p + k, p)) {
                ie_set_err(err, "box target at cell %" PRIu32 " of sample %" PRIu32 " is neither four IE_NO_BOX nor four "
                                "values in [0, 2^24]", k, i);
                return IE_ERR_VALUE;
            }
    }
    /* the CenterNet mean: over the objects (heat cells at 1), or 1 in a batch without any */
    uint32_t norm = objects ? objects : 1;
    int k = ie_bitlen64(norm) - 1;
    int64_t recip = (((int64_t)1 << (31 + k)) / norm + 1) >> 1; /* round(2^(30+k) / norm) */
    for (uint32_t i = 0; i < n; i++) {
        const int8_t *zi = z + i * per;
        const int32_t *lab = labels + i * per;
        int64_t *g = grad ? grad + i * per : NULL;
        for (size_t j = 0; j < (size_t)c * p; j++) {
            int64_t d = focal_one(zi[j], ez, lab[j], st);
            if (g) g[j] = d * recip;
        }
        for (uint32_t cell = 0; cell < p; cell++)
            for (uint32_t r = 0; r < 4; r++) {
                size_t at = (size_t)(c + r) * p + cell;
                int32_t t = lab[at];
                int64_t d = 0;
                if (t != IE_NO_BOX) { /* weight * |z - t| */
                    int64_t diff = logit_q16(zi[at], ez) - t;
                    st->loss_sum_q16 += round_shift_nearest((diff < 0 ? -diff : diff) * centernet_weight_q30[r], 30);
                    d = sign_vs_q16(zi[at], ez, t) * centernet_weight_q30[r];
                }
                if (g) g[at] = d * recip;
            }
    }
    st->count = objects;
    *grad_e = -30 - 30 - k;
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

/* A dense loss (per-pixel cross-entropy, CenterNet): the output's channels are its first
 * per-sample axis, the rest are pixels or cells. */
static ie_status dense(ie_session *s, ie_dense_loss loss, const int32_t *labels, int with_grad, ie_step_stats *st) {
    const ie_model *m = s->model;
    ie_value *z = &s->values[m->output];
    uint32_t c = m->tensors[m->output].dims[0], p = m->tensors[m->output].numel / c;
    int32_t grad_e = 0;
    ie_status status = loss(z->q, z->e, s->n, c, p, labels, with_grad ? s->loss_acc : NULL, &grad_e, st, s->errmsg);
    if (status == IE_OK && with_grad)
        z->ge = grad_e + ie_requant_s64_s8(s->loss_acc, (size_t)s->n * c * p, ie_session_rounder(s, IE_STREAM_LOSS), z->g);
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
    for (size_t i = 0; i < total; i++) {
        /* t in Q30 (targets are within [0, 1]) */
        int64_t t = ie_shift_round(s->targets[i], -30 - e_t, 0x80000000U);
        int64_t zq16 = logit_q16(z->q[i], z->e); /* +-256 at most: a term past 256 nats is capped (it overflowed) */
        int64_t loss = ie_softplus_q16(zq16) - round_shift_nearest(zq16 * t, 30);
        st->loss_sum_q16 += loss / (int64_t)d;
        st->n_correct += (z->q[i] > 0) == (t >= Q30 / 2);
        if (with_grad) s->loss_acc[i] = (ie_sigmoid_q30(z->q[i], z->e) - t) * recip;
    }
    if (with_grad)
        z->ge = -30 - 31 + ie_requant_s64_s8(s->loss_acc, total, ie_session_rounder(s, IE_STREAM_LOSS), z->g);
    return IE_OK;
}

static uint32_t argmax_s32(const int32_t *z, size_t stride, uint32_t c) {
    uint32_t arg = 0;
    for (uint32_t j = 1; j < c; j++)
        if (z[j * stride] > z[arg * stride]) arg = j;
    return arg;
}

int ie_loss_count_wide(const ie_session *s, const ie_wide_capture *w, const int32_t *labels, uint32_t *hits) {
    const ie_tensor_desc *o = &s->model->tensors[s->model->output];
    ie_loss loss = s->cfg.loss;
    if (!w->hit || !ie_loss_reads_labels(loss)) return 0;
    uint32_t c = loss == IE_LOSS_SOFTMAX_CE ? o->numel : o->dims[0], p = o->numel / c;
    *hits = 0;
    for (uint32_t i = 0; i < s->n && loss == IE_LOSS_CENTERNET; i++) /* the heat planes' centre cells */
        for (size_t k = 0; k < (size_t)(c - 4) * p; k++)
            *hits += labels[(size_t)i * o->numel + k] == IE_HEAT_ONE && w->q[(size_t)i * o->numel + k] > 0;
    for (size_t i = 0; i < (size_t)s->n * p && loss != IE_LOSS_CENTERNET; i++) /* cross-entropy: rows or pixels */
        if (loss == IE_LOSS_SOFTMAX_CE || labels[i] != IE_IGNORE_LABEL)
            *hits += argmax_s32(w->q + (i / p) * c * p + i % p, p, c) == (uint32_t)labels[i];
    return 1;
}

ie_status ie_loss_forward_backward(ie_session *s, const int32_t *labels, const uint32_t *targets, int with_grad,
                                   ie_step_stats *stats) {
    stats->loss_sum_q16 = 0;
    stats->n_correct = 0;
    stats->count = s->n;
    if (s->cfg.loss == IE_LOSS_SOFTMAX_CE) return softmax_ce(s, labels, with_grad, stats);
    if (s->cfg.loss == IE_LOSS_SOFTMAX_CE_PIXELS) return dense(s, ie_softmax_ce_pixels, labels, with_grad, stats);
    if (s->cfg.loss == IE_LOSS_CENTERNET) return dense(s, ie_centernet_loss, labels, with_grad, stats);
    if (s->cfg.loss == IE_LOSS_BCE_LOGITS) return bce_logits(s, targets, with_grad, stats);
    return mse(s, targets, with_grad, stats);
}
