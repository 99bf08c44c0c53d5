/* BatchNormalization over [C] or [C, H, W] per sample. Inputs: X, scale (gamma), bias (beta),
 * running mean, running var (the last two are state: updated here, never trained).
 * attrs: 0-1 epsilon (dyadic m, e), 2-3 momentum (dyadic; ONNX meaning: running = running *
 * momentum + batch * (1 - momentum)).
 *
 * Training mode (PyTorch semantics): batch statistics from exact int64 sums, the mean kept with 16
 * fraction bits, var = (S2 - S1^2/M) / M, 1/sqrt(var + eps) by Newton's integer square root;
 * running var takes the unbiased variance. Forward and backward are per-channel affine maps
 * (ie_channel_affine_s8) with dyadic coefficients:
 *   y  = (gamma s) (x - mu) + beta
 *   dx = P dy + Q + R (x - mu),  P = gamma s,  Q = -P/M sum(dy),  R = -P/M s dgamma
 *   dgamma = s sum(dy (x - mu)),  dbeta = sum(dy).
 * Evaluation mode uses the running statistics.
 *
 * X is int16 when config bn_input_bits is 16 and a Conv feeds this node alone (ie_tensor_is_q16), so the
 * statistics and the map read the Conv's sums with 8 more bits than int8. The centring unit is
 * then 2^(ex - 16) with ex = X's exponent + 8: the same 2^23 steps per full scale as for int8. */
#include "../planner.h"
#include "ops.h"

/* per-channel scratch: mean (int64, exponent ex - 16), inverse std, coefficients */
enum { S_MEAN, S_INVSTD, S_A, S_B, S_K, S_COEF, S_TMP32, S_STATS };
enum { R_OUT = 1, R_DX, R_MEAN, R_VAR };

typedef struct bn_shape {
    uint32_t x, gamma, beta, mean, var, y;
    size_t c, inner;
} bn_shape;

static bn_shape shape_of(const ie_model *m, const ie_node_desc *nd) {
    bn_shape b = {nd->in[0], nd->in[1], nd->in[2], nd->in[3], nd->in[4], nd->out[0], 0, 1};
    const ie_tensor_desc *x = &m->tensors[b.x];
    b.c = x->dims[0];
    for (uint32_t d = 1; d < x->rank; d++) b.inner *= x->dims[d];
    return b;
}

static ie_dyadic attr_dyadic(const ie_node_desc *nd, int i) {
    ie_dyadic d = {nd->attrs[i], nd->attrs[i + 1]};
    return d;
}

static ie_status bn_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    bn_shape b = shape_of(m, nd);
    const ie_tensor_desc *x = &m->tensors[b.x], *y = &m->tensors[b.y];
    if (x->kind == IE_KIND_PARAM || x->numel != y->numel) { ie_set_err(err, "input and output must match"); return IE_ERR_FORMAT; }
    uint32_t p[4] = {b.gamma, b.beta, b.mean, b.var};
    for (int i = 0; i < 4; i++)
        if (m->tensors[p[i]].kind != IE_KIND_PARAM || m->tensors[p[i]].numel != b.c) {
            ie_set_err(err, "scale, bias, mean and var must be parameters of %lu values", (unsigned long)b.c);
            return IE_ERR_FORMAT;
        }
    if (!m->tensors[b.mean].state || !m->tensors[b.var].state) {
        ie_set_err(err, "the running mean and var must be marked as state");
        return IE_ERR_FORMAT;
    }
    if (nd->attrs[0] <= 0 || nd->attrs[2] < 0 || nd->attrs[1] < -200 || nd->attrs[1] > 200 || nd->attrs[3] < -200 ||
        nd->attrs[3] > 200) {
        ie_set_err(err, "epsilon must be positive and momentum not negative");
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

static void bn_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    bn_shape b = shape_of(m, &m->nodes[node]);
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int bwd = ie_plan_requires_grad(p, b.y);
    if ((uint64_t)ie_plan_batch(p) * b.inner > (1u << 24))
        ie_plan_refuse(p, node, "batch x height x width above 2^24: the statistics would overflow int64; use a "
                                "smaller batch");
    uint32_t last = bwd ? B : F;
    ie_plan_node_scratch(p, node, S_MEAN, IE_SIZE(b.c, sizeof(int64_t)), F, last);
    ie_plan_node_scratch(p, node, S_INVSTD, IE_SIZE(b.c, sizeof(ie_dyadic)), F, last);
    ie_plan_node_scratch(p, node, S_A, IE_SIZE(b.c, sizeof(ie_dyadic)), F, last);
    ie_plan_node_scratch(p, node, S_B, IE_SIZE(b.c, sizeof(ie_dyadic)), F, last);
    ie_plan_node_scratch(p, node, S_K, IE_SIZE(b.c, sizeof(ie_dyadic)), F, last);
    ie_plan_node_scratch(p, node, S_COEF, 3 * IE_SIZE(b.c, sizeof(int64_t)), F, last);
    ie_plan_node_scratch(p, node, S_TMP32, IE_SIZE(b.c, sizeof(int32_t)), F, last);
    ie_plan_node_scratch(p, node, S_STATS, 2 * IE_SIZE(b.c, sizeof(int64_t)), F, last);
    if (!bwd) return;
    ie_plan_keep(p, b.x, B);
    if (ie_plan_param_trainable(p, b.gamma)) {
        ie_plan_param_buffer(p, b.gamma, IE_BUF_PARAM_GRAD, IE_SIZE(b.c, sizeof(int64_t)), B, B);
    }
    if (ie_plan_param_trainable(p, b.beta)) {
        ie_plan_param_buffer(p, b.beta, IE_BUF_PARAM_GRAD, IE_SIZE(b.c, sizeof(int64_t)), B, B);
    }
}

static ie_param *param_of(ie_session *s, uint32_t tensor) { return &s->params[s->model->tensors[tensor].param]; }

static void update_running(ie_session *s, uint32_t node, const bn_shape *b, const int64_t *mean, int32_t e_mean,
                           const ie_dyadic *var_unbiased) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_dyadic mom = attr_dyadic(nd, 2), one = {1, 0}, rest = ie_dy_add(one, ie_dy_neg(mom));
    int32_t *tmp = s->nodes[node].scratch[S_TMP32];
    ie_param *pm = param_of(s, b->mean), *pv = param_of(s, b->var);
    for (size_t c = 0; c < b->c; c++) tmp[c] = (int32_t)mean[c]; /* |mean| < 2^23 at ex - 16 */
    pm->we = ie_axpby_s32(pm->w, b->c, mom, pm->w, pm->we, rest, tmp, e_mean,
                          ie_session_rounder(s, ie_node_stream(node, R_MEAN)));
    int64_t *wide = s->nodes[node].scratch[S_COEF]; /* free until the affine map */
    int32_t e_var = ie_dy_common(var_unbiased, b->c, 30, wide);
    for (size_t c = 0; c < b->c; c++) tmp[c] = (int32_t)wide[c];
    pv->we = ie_axpby_s32(pv->w, b->c, mom, pv->w, pv->we, rest, tmp, e_var,
                          ie_session_rounder(s, ie_node_stream(node, R_VAR)));
    ie_param_written(pm);
    ie_param_written(pv);
}

/* X's exponent as the centring unit counts it (2^(ex - 16)): int16 values count 2^8 units each */
static int32_t centring_e(const ie_session *s, const bn_shape *b) {
    return s->values[b->x].e + (ie_tensor_is_q16(s->model, &s->cfg, b->x) ? 8 : 0);
}

/* Whether a running mean w (its master's mantissa) shifted by sh into the centring unit stays
 * within 2^40 units, which the affine map's exact centring takes. A mean further out (2^33 times
 * the batch's largest |x| and more) joins the constant term instead. */
static int mean_fits(int32_t w, int32_t sh) { return sh >= 0 || ie_bitlen64(ie_abs64(w)) - sh <= 40; }

static void bn_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    bn_shape b = shape_of(s->model, nd);
    void **sc = s->nodes[node].scratch;
    ie_value *x = &s->values[b.x], *y = &s->values[b.y];
    int64_t *mean = sc[S_MEAN], *sums = sc[S_STATS];
    ie_dyadic *invstd = sc[S_INVSTD], *a = sc[S_A], *bb = sc[S_B], *k = sc[S_K];
    ie_dyadic eps = attr_dyadic(nd, 0);
    const ie_param *g = param_of(s, b.gamma), *be = param_of(s, b.beta);
    const ie_param *rm = param_of(s, b.mean), *rv = param_of(s, b.var);
    size_t n = s->n, count = n * b.inner;
    int q16 = ie_tensor_is_q16(s->model, &s->cfg, b.x);
    int32_t ex = centring_e(s, &b);
    if (s->mode == IE_MODE_TRAIN) {
        /* exact sums, then mean (16 fraction bits of int8, 8 of int16) and the biased / unbiased
         * variances */
        for (size_t c = 0; c < b.c; c++) sums[c] = sums[b.c + c] = 0;
        for (size_t o = 0; o < n; o++)
            for (size_t c = 0; c < b.c; c++) {
                size_t base = (o * b.c + c) * b.inner;
                if (q16) ie_sums_s16(ie_q16(x) + base, NULL, b.inner, &sums[c], &sums[b.c + c]);
                else ie_sums_s8(x->q + base, NULL, b.inner, &sums[c], &sums[b.c + c]);
            }
        ie_dyadic recip = ie_dy_recip(count), recip1 = ie_dy_recip(count > 1 ? count - 1 : 1);
        ie_dyadic *var_unb = a; /* a holds the unbiased variances until the running update */
        for (size_t c = 0; c < b.c; c++) {
            int64_t s1 = sums[c], s2 = sums[b.c + c];
            mean[c] = q16 ? ie_mean_q16(s1, count * 256) : ie_mean_q16(s1, count); /* s1 2^8 / count */
            int64_t vsum = s2 - ie_square_over(s1, count); /* M * var in x units^2 */
            if (vsum < 0) vsum = 0;
            ie_dyadic v = ie_dy_mul(ie_dy_norm(vsum, 2 * x->e), recip);
            invstd[c] = ie_dy_rsqrt(ie_dy_add(v, eps));
            var_unb[c] = ie_dy_mul(ie_dy_norm(vsum, 2 * x->e), recip1);
        }
        update_running(s, node, &b, mean, ex - 16, var_unb);
    } else {
        int32_t sh = (ex - 16) - rm->we; /* the running mean in the centring unit 2^(ex - 16) */
        for (size_t c = 0; c < b.c; c++) {
            mean[c] = mean_fits(rm->w[c], sh) ? ie_shift_round(rm->w[c], sh, 0x80000000U) : 0;
            ie_dyadic v = {rv->w[c] > 0 ? rv->w[c] : 0, rv->we};
            invstd[c] = ie_dy_rsqrt(ie_dy_add(v, eps));
        }
    }
    for (size_t c = 0; c < b.c; c++) {
        ie_dyadic gamma = {g->w[c], g->we}, beta = {be->w[c], be->we}, zero = {0, 0};
        a[c] = zero;
        bb[c] = ie_dy_mul(gamma, invstd[c]);
        k[c] = beta;
        if (s->mode != IE_MODE_TRAIN && !mean_fits(rm->w[c], (ex - 16) - rm->we)) {
            ie_dyadic m = {rm->w[c], rm->we}; /* far beyond x: y = b x + (beta - b m) */
            k[c] = ie_dy_add(beta, ie_dy_neg(ie_dy_mul(bb[c], m)));
        }
    }
    uint64_t t0 = ie_prof_start(s->ex.prof);
    y->e = ie_channel_affine_s8(s->ex.pool, n, b.c, b.inner, NULL, 0, NULL, q16 ? NULL : x->q, q16 ? ie_q16(x) : NULL,
                                ex, mean, a, bb, k, sc[S_COEF], ie_session_rounder(s, ie_node_stream(node, R_OUT)), y->q);
    ie_prof_add(s->ex.prof, IE_PROF_ROUND, t0);
}

static void bn_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    bn_shape b = shape_of(s->model, nd);
    void **sc = s->nodes[node].scratch;
    ie_value *x = &s->values[b.x], *y = &s->values[b.y];
    const int64_t *mean = sc[S_MEAN];
    int64_t *sums = sc[S_STATS];
    ie_dyadic *invstd = sc[S_INVSTD], *P = sc[S_A], *R = sc[S_B], *Q = sc[S_K];
    ie_param *g = param_of(s, b.gamma), *be = param_of(s, b.beta);
    size_t n = s->n, count = n * b.inner;
    int q16 = ie_tensor_is_q16(s->model, &s->cfg, b.x);
    int32_t ex = centring_e(s, &b);
    /* sum(dy) and sum(dy (x - mu)) per channel, exact */
    for (size_t c = 0; c < b.c; c++) sums[c] = sums[b.c + c] = 0;
    for (size_t o = 0; o < n; o++)
        for (size_t c = 0; c < b.c; c++) {
            size_t base = (o * b.c + c) * b.inner;
            int64_t sdy = 0, sdyx = 0; /* sum(dy (x 2^16 - mu)) = 2^16 sum(dy x) - mu sum(dy); int16: 2^8 */
            if (q16) ie_sums_s16(ie_q16(x) + base, y->g + base, b.inner, &sdy, &sdyx);
            else ie_sums_s8(y->g + base, x->q + base, b.inner, &sdy, &sdyx);
            sums[c] += sdy;
            sums[b.c + c] += sdyx * (q16 ? 256 : 65536) - mean[c] * sdy;
        }
    ie_dyadic recip = ie_dy_recip(count);
    ie_dyadic *dgamma = R; /* reused below, after the gamma gradient is out */
    for (size_t c = 0; c < b.c; c++) dgamma[c] = ie_dy_mul(invstd[c], ie_dy_norm(sums[b.c + c], y->ge + ex - 16));
    if (be->trainable) {
        for (size_t c = 0; c < b.c; c++) be->grad[c] = sums[c];
        be->grad_e = y->ge;
    }
    if (g->trainable) g->grad_e = ie_dy_common(dgamma, b.c, 30, g->grad);
    if (x->requires_grad) {
        for (size_t c = 0; c < b.c; c++) {
            ie_dyadic gamma = {g->w[c], g->we};
            P[c] = ie_dy_mul(gamma, invstd[c]);
            ie_dyadic p_over_m = ie_dy_mul(P[c], recip);
            Q[c] = ie_dy_neg(ie_dy_mul(p_over_m, ie_dy_norm(sums[c], y->ge)));
            R[c] = ie_dy_neg(ie_dy_mul(ie_dy_mul(p_over_m, invstd[c]), dgamma[c]));
        }
        uint64_t t0 = ie_prof_start(s->ex.prof);
        x->ge = ie_channel_affine_s8(s->ex.pool, n, b.c, b.inner, y->g, y->ge, NULL, q16 ? NULL : x->q,
                                     q16 ? ie_q16(x) : NULL, ex, mean, P, R, Q, sc[S_COEF],
                                     ie_session_rounder(s, ie_node_stream(node, R_DX)), x->g);
        ie_prof_add(s->ex.prof, IE_PROF_ROUND, t0);
    }
    if (g->trainable) ie_optim_step(s, s->model->tensors[b.gamma].param);
    if (be->trainable) ie_optim_step(s, s->model->tensors[b.beta].param);
}

/* Relu's backward when this node (training mode) feeds it: dx = dy where y > 0 before rounding.
 * Relu's own mask, its rounded output > 0, drops the outputs that rounded to 0 from just above
 * (0 < y < one ulp: with probability 1 - y / ulp), a bias, not noise: it shrank the gradient of
 * channels whose bulk sits just above 0 under a few large values (a U-Net's background under its
 * digits; docs/fidelity.md). The unrounded sign is recomputed exactly from the saved input and
 * the forward's coefficients, for the outputs Relu zeroed; relu_y is Relu's output. */
void ie_bn_relu_backward(const ie_session *s, uint32_t node, const int8_t *relu_y, const int8_t *dy, int8_t *dx) {
    bn_shape b = shape_of(s->model, &s->model->nodes[node]);
    void *const *sc = s->nodes[node].scratch;
    const ie_value *x = &s->values[b.x];
    int q16 = ie_tensor_is_q16(s->model, &s->cfg, b.x);
    ie_channel_affine_relu_bwd(s->n, b.c, b.inner, q16 ? NULL : x->q, q16 ? ie_q16(x) : NULL, sc[S_MEAN], sc[S_COEF],
                               relu_y, dy, dx);
}

const ie_op_def ie_op_batchnorm = {"BatchNormalization", 5, 5, 1, bn_check, bn_plan, bn_forward, bn_backward};
