/* LayerNormalization over the per-sample axes from `axis` on: every row of D elements is
 * normalized by its own statistics. Inputs: X, scale gamma (D values), optional bias beta (D
 * values). attrs: 0 axis (per sample: ONNX's axis - 1), 1-2 epsilon (dyadic m, e).
 *
 * Forward, per row (x int8 at exponent ex; c = x 2^16 - mean, exact at ex - 16):
 *   s1 = sum x and s2 = sum x^2 exactly; mean = s1 / D with 16 fraction bits;
 *   var = (D s2 - s1^2) / D^2, the biased variance (ONNX, PyTorch), its numerator exact in int64;
 *   r = 1 / sqrt(var + eps) by Newton's integer square root;
 *   xhat = r c as int32 at one exponent for the tensor (its largest magnitude with 30 bits,
 *   rounded to nearest: 2^-30 of max|xhat|, far below an output ulp);
 *   y = gamma xhat + beta with gamma and beta (masters) at one exponent, in int64, one SR.
 * Backward, with g = dy gamma (gamma rounded to nearest at 31 - bitlen(D) bits, at most 24):
 *   dx = r (g - mean(g) - xhat mean(g xhat)) = P g + Q + R c per row, P = r,
 *   Q = -r sum(g) / D, R = -r^3 sum(g c) / D, both sums exact in int64; one SR
 *   (ie_channel_affine_s8 with rows as channels and gamma as per-position weights);
 *   dgamma = sum over rows of dy xhat, dbeta = sum over rows of dy, exact in int64.
 * A row with zero variance and eps = 0 gives xhat = 0 (y = beta) and no gradient (PyTorch: NaN);
 * so does D = 1, exactly.
 * Evaluation mode: the same arithmetic (LayerNorm has no running statistics).
 * Saved for backward: X, and per row the mean, r and xhat's shift. */
#include "../planner.h"
#include "ops.h"

enum { S_MEAN, S_RSTD, S_SHIFT, S_XHAT_E, S_ROW, S_A, S_K, S_GAMMA, S_P, S_Q, S_R, S_COEF };
enum { R_OUT = 1, R_DX };
#define MAX_D (1u << 20)       /* D s2 and s1^2 stay below 2^55 */
#define MAX_ROWS (1u << 24)    /* dgamma: |dy xhat| < 2^37 per row, summed in int64 */
#define XHAT_BITS 30

typedef struct ln_shape {
    uint32_t x, gamma, beta, y;
    size_t d, rows; /* normalized elements per row, rows per sample */
} ln_shape;

static ln_shape shape_of(const ie_model *m, const ie_node_desc *nd) {
    ln_shape l = {nd->in[0], nd->in[1], nd->n_in > 2 ? nd->in[2] : IE_NONE, nd->out[0], 1, 1};
    const ie_tensor_desc *x = &m->tensors[l.x];
    for (uint32_t a = 0; a < x->rank; a++) {
        if (a < (uint32_t)nd->attrs[0]) l.rows *= x->dims[a];
        else l.d *= x->dims[a];
    }
    return l;
}

static ie_status ln_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    ie_status st = ie_check_along_axis(m, nd, err);
    if (st != IE_OK) return st;
    ln_shape l = shape_of(m, nd);
    for (uint32_t k = 1; k < nd->n_in; k++)
        if (m->tensors[nd->in[k]].kind != IE_KIND_PARAM || m->tensors[nd->in[k]].numel != l.d) {
            ie_set_err(err, "scale and bias must be parameters of %lu values", (unsigned long)l.d);
            return IE_ERR_FORMAT;
        }
    if (l.d > MAX_D) { ie_set_err(err, "more than 2^20 elements normalized together"); return IE_ERR_UNSUPPORTED; }
    if (nd->attrs[1] < 0 || nd->attrs[2] < -200 || nd->attrs[2] > 200) {
        ie_set_err(err, "epsilon must not be negative");
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

static void ln_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    ln_shape l = shape_of(m, &m->nodes[node]);
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int bwd = ie_plan_requires_grad(p, l.y), need_dx = bwd && ie_plan_requires_grad(p, l.x);
    uint64_t rows = IE_SIZE(ie_plan_batch(p), l.rows);
    if (rows > MAX_ROWS) ie_plan_refuse(p, node, "batch x rows above 2^24: the scale's gradient would overflow int64; "
                                                 "use a smaller batch");
    uint32_t last = bwd ? B : F;
    ie_plan_node_scratch(p, node, S_MEAN, IE_SIZE(rows, sizeof(int64_t)), F, last);
    ie_plan_node_scratch(p, node, S_RSTD, IE_SIZE(rows, sizeof(ie_dyadic)), F, last);
    ie_plan_node_scratch(p, node, S_SHIFT, IE_SIZE(rows, sizeof(int32_t)), F, last);
    ie_plan_node_scratch(p, node, S_XHAT_E, sizeof(int32_t), F, last);
    ie_plan_node_scratch(p, node, S_ROW, IE_SIZE(l.d, sizeof(int32_t)), F, last);
    ie_plan_node_scratch(p, node, S_A, IE_SIZE(l.d, sizeof(int32_t)), F, F);
    ie_plan_node_scratch(p, node, S_K, IE_SIZE(l.d, sizeof(int64_t)), F, F);
    if (!bwd) return;
    ie_plan_keep(p, l.x, B);
    if (need_dx) {
        ie_plan_node_scratch(p, node, S_GAMMA, IE_SIZE(l.d, sizeof(int32_t)), B, B);
        ie_plan_node_scratch(p, node, S_P, IE_SIZE(rows, sizeof(ie_dyadic)), B, B);
        ie_plan_node_scratch(p, node, S_Q, IE_SIZE(rows, sizeof(ie_dyadic)), B, B);
        ie_plan_node_scratch(p, node, S_R, IE_SIZE(rows, sizeof(ie_dyadic)), B, B);
        ie_plan_node_scratch(p, node, S_COEF, 3 * IE_SIZE(rows, sizeof(int64_t)), B, B);
    }
    for (uint32_t k = 1; k < m->nodes[node].n_in; k++) {
        uint32_t t = m->nodes[node].in[k];
        if (!ie_plan_param_trainable(p, t)) continue;
        ie_plan_param_buffer(p, t, IE_BUF_PARAM_GRAD, IE_SIZE(l.d, sizeof(int64_t)), B, B);
    }
}

static ie_param *param_of(ie_session *s, uint32_t tensor) {
    return tensor == IE_NONE ? NULL : &s->params[s->model->tensors[tensor].param];
}

/* One row's xhat = r (x 2^16 - mean) as int32 at the tensor's xhat exponent (the row's shift),
 * rounded to nearest: ie_shift_round's values, branch-free (|mean| < 2^23, |c| < 2^24). */
IE_HOT static void xhat_row(const int8_t *x, size_t d, int64_t mean, int32_t rm, int shift, int32_t *h) {
    int32_t m = (int32_t)mean;
    if (shift < 0) { /* an exact left shift (|xhat| < 2^30) */
        for (size_t i = 0; i < d; i++) h[i] = (int32_t)(((int64_t)(x[i] * 65536 - m) * rm) * ((int64_t)1 << -shift));
        return;
    }
    ie_srshift p = ie_srshift_make(shift > 62 ? 62 : shift);
    for (size_t i = 0; i < d; i++) h[i] = (int32_t)ie_srshift_apply((int64_t)(x[i] * 65536 - m) * rm, p, 0x80000000U);
}

/* max |A xhat + K| over one row (A within 31 bits, so the products are 32 x 32 bits). */
IE_HOT static uint64_t row_max(const int32_t *A, const int32_t *h, const int64_t *K, size_t d) {
    uint64_t max = 0;
    for (size_t i = 0; i < d; i++) {
        uint64_t a = ie_abs64((int64_t)A[i] * h[i] + K[i]);
        max = a > max ? a : max;
    }
    return max;
}

IE_HOT static void row_round(const int32_t *A, const int32_t *h, const int64_t *K, size_t d, int sh, ie_rounder r,
                             size_t base, int8_t *y) {
    IE_ROUND_EACH(d, i, (int64_t)A[i] * h[i] + K[i], r, y, sh, base);
}

/* Per row: mean (exponent ex - 16), r, and xhat's exponent for the tensor (returned) with each
 * row's shift to it. */
static int32_t statistics(const int8_t *x, int32_t ex, size_t rows, size_t d, ie_dyadic eps, int64_t *mean,
                          ie_dyadic *rstd, int32_t *shift) {
    ie_dyadic recip = ie_dy_recip(d);
    int32_t top = INT32_MIN;
    for (size_t row = 0; row < rows; row++) {
        const int8_t *xr = x + row * d;
        int64_t s1 = 0, s2 = 0;
        int8_t lo = INT8_MAX, hi = INT8_MIN;
        ie_sums_s8(xr, NULL, d, &s1, &s2);
        for (size_t i = 0; i < d; i++) {
            lo = xr[i] < lo ? xr[i] : lo;
            hi = xr[i] > hi ? xr[i] : hi;
        }
        mean[row] = ie_mean_q16(s1, d);
        ie_dyadic var = ie_dy_mul(ie_dy_mul(ie_dy_norm((int64_t)d * s2 - s1 * s1, 2 * ex), recip), recip);
        ie_dyadic v = ie_dy_add(var, eps), zero = {0, 0};
        rstd[row] = v.m > 0 ? ie_dy_rsqrt(v) : zero;
        uint64_t a = ie_abs64((int64_t)lo * 65536 - mean[row]), b = ie_abs64((int64_t)hi * 65536 - mean[row]);
        uint64_t most = (a > b ? a : b) * ie_abs64(rstd[row].m); /* max |c r.m| < 2^55 */
        if (most && rstd[row].e + ex - 16 + ie_bitlen64(most) > top) top = rstd[row].e + ex - 16 + ie_bitlen64(most);
        shift[row] = most != 0;
    }
    /* a row's shift is at least bitlen(its max |c r.m|) - 30 >= -29; a row whose xhat is all 0
     * (equal values, or r = 0) takes 0, whatever its r */
    int32_t eh = top == INT32_MIN ? -XHAT_BITS : top - XHAT_BITS;
    for (size_t row = 0; row < rows; row++) shift[row] = shift[row] ? eh - (rstd[row].e + ex - 16) : 0;
    return eh;
}

static void ln_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ln_shape l = shape_of(s->model, nd);
    void **sc = s->nodes[node].scratch;
    ie_value *x = &s->values[l.x], *y = &s->values[l.y];
    const ie_param *g = param_of(s, l.gamma), *be = param_of(s, l.beta);
    size_t rows = s->n * l.rows, d = l.d;
    int64_t *mean = sc[S_MEAN], *K = sc[S_K];
    int32_t *A = sc[S_A];
    ie_dyadic *rstd = sc[S_RSTD], eps = {nd->attrs[1], nd->attrs[2]};
    int32_t *shift = sc[S_SHIFT], *h = sc[S_ROW], *eh = sc[S_XHAT_E];
    *eh = statistics(x->q, x->e, rows, d, eps, mean, rstd, shift);
    /* gamma xhat and beta at one exponent E: |A| <= 2^30, each term below 2^60 (|xhat| <= 2^30) */
    uint64_t gmax = ie_absmax_s32(g->w, d), bmax = be ? ie_absmax_s32(be->w, d) : 0;
    int32_t t_prod = gmax ? g->we + ie_bitlen64(gmax) + *eh + XHAT_BITS : INT32_MIN;
    int32_t t_bias = bmax ? be->we + ie_bitlen64(bmax) : INT32_MIN;
    int32_t top = t_prod > t_bias ? t_prod : t_bias;
    if (top == INT32_MIN) { /* gamma and beta are 0 */
        for (size_t i = 0; i < rows * d; i++) y->q[i] = 0;
        y->e = *eh;
        return;
    }
    int32_t E = top - 60;
    for (size_t i = 0; i < d; i++) {
        A[i] = gmax ? (int32_t)ie_shift_round(g->w[i], E - *eh - g->we, 0x80000000U) : 0;
        K[i] = bmax ? ie_shift_round(be->w[i], E - be->we, 0x80000000U) : 0;
    }
    /* one pass for the max, one to round: xhat is recomputed per row rather than stored */
    uint64_t max = 0;
    for (size_t row = 0; row < rows; row++) {
        xhat_row(x->q + row * d, d, mean[row], rstd[row].m, shift[row], h);
        uint64_t m = row_max(A, h, K, d);
        max = m > max ? m : max;
    }
    int sh = ie_requant_shift(max, 7);
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, R_OUT));
    for (size_t row = 0; row < rows; row++) {
        xhat_row(x->q + row * d, d, mean[row], rstd[row].m, shift[row], h);
        row_round(A, h, K, d, sh, r, row * d, y->q + row * d);
    }
    y->e = E + sh;
}

/* acc[i] += dy[i] h[i] (h NULL: 1) over a row: the parameter gradients' sums. */
IE_HOT static void accumulate(int64_t *restrict acc, const int8_t *restrict dy, const int32_t *restrict h, size_t d) {
    if (h)
        for (size_t i = 0; i < d; i++) acc[i] += (int64_t)dy[i] * h[i];
    else
        for (size_t i = 0; i < d; i++) acc[i] += dy[i];
}

/* A row's sum(g) and sum(g x) with g = dy G (|G| < 2^24: g within int32), exact. */
IE_HOT static void row_sums(const int8_t *restrict dy, const int32_t *restrict G, const int8_t *restrict x, size_t d,
                            int64_t *sg, int64_t *sgx) {
    int64_t a = 0, b = 0;
    for (size_t i = 0; i < d; i++) {
        int32_t gi = dy[i] * G[i];
        a += gi;
        b += (int64_t)gi * x[i];
    }
    *sg = a;
    *sgx = b;
}

/* dgamma = sum over rows of dy xhat at exponent edy + eh; dbeta = sum over rows of dy. */
static void param_grads(ie_session *s, uint32_t node, const ln_shape *l, ie_param *g, ie_param *be) {
    void **sc = s->nodes[node].scratch;
    const ie_value *x = &s->values[l->x], *y = &s->values[l->y];
    const int64_t *mean = sc[S_MEAN];
    const ie_dyadic *rstd = sc[S_RSTD];
    const int32_t *shift = sc[S_SHIFT];
    int32_t *h = sc[S_ROW];
    size_t rows = s->n * l->rows, d = l->d;
    if (g && g->trainable) {
        for (size_t i = 0; i < d; i++) g->grad[i] = 0;
        for (size_t row = 0; row < rows; row++) {
            const int8_t *dy = y->g + row * d;
            xhat_row(x->q + row * d, d, mean[row], rstd[row].m, shift[row], h);
            accumulate(g->grad, dy, h, d);
        }
        g->grad_e = y->ge + *(const int32_t *)sc[S_XHAT_E];
    }
    if (be && be->trainable) {
        for (size_t i = 0; i < d; i++) be->grad[i] = 0;
        for (size_t row = 0; row < rows; row++) accumulate(be->grad, y->g + row * d, NULL, d);
        be->grad_e = y->ge;
    }
}

static void ln_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ln_shape l = shape_of(s->model, nd);
    void **sc = s->nodes[node].scratch;
    ie_value *x = &s->values[l.x], *y = &s->values[l.y];
    ie_param *g = param_of(s, l.gamma), *be = param_of(s, l.beta);
    size_t rows = s->n * l.rows, d = l.d;
    param_grads(s, node, &l, g, be);
    if (x->requires_grad && d == 1) { /* y = beta whatever x: exactly no gradient (the terms below would
                                         cancel only to their coefficients' 2^-30) */
        for (size_t i = 0; i < rows; i++) x->g[i] = 0;
        x->ge = y->ge;
    } else if (x->requires_grad) {
        const int64_t *mean = sc[S_MEAN];
        const ie_dyadic *rstd = sc[S_RSTD];
        ie_dyadic *P = sc[S_P], *Q = sc[S_Q], *R = sc[S_R], recip = ie_dy_recip(d);
        int32_t *G = sc[S_GAMMA];
        /* gamma to bg bits: sum(dy G c) over D terms stays below 2^62 (|c| < 2^24) */
        int bg = 31 - ie_bitlen64(d) < 24 ? 31 - ie_bitlen64(d) : 24;
        int sg = ie_requant_shift(ie_absmax_s32(g->w, d), bg);
        ie_rounder nearest = {0, 1};
        ie_shift_s32_s32(g->w, d, sg, bg, nearest, G);
        int32_t eu = y->ge + g->we + sg;
        for (size_t row = 0; row < rows; row++) {
            int64_t s1, sx;
            row_sums(y->g + row * d, G, x->q + row * d, d, &s1, &sx);
            int64_t s2 = sx * 65536 - mean[row] * s1; /* sum(g c), below 2^62 */
            ie_dyadic r = rstd[row], r_over_d = ie_dy_mul(r, recip);
            P[row] = r;
            Q[row] = ie_dy_neg(ie_dy_mul(r_over_d, ie_dy_norm(s1, eu)));
            R[row] = ie_dy_neg(ie_dy_mul(ie_dy_mul(ie_dy_mul(r_over_d, r), r), ie_dy_norm(s2, eu + x->e - 16)));
        }
        x->ge = ie_channel_affine_s8(s->ex.pool, 1, rows, d, y->g, eu, G, x->q, NULL, x->e, mean, P, R, Q, sc[S_COEF],
                                     ie_session_rounder(s, ie_node_stream(node, R_DX)), x->g);
    }
    if (g->trainable) ie_optim_step(s, s->model->tensors[l.gamma].param);
    if (be && be->trainable) ie_optim_step(s, s->model->tensors[l.beta].param);
}

const ie_op_def ie_op_layernorm = {"LayerNormalization", 2, 3, 1, ln_check, ln_plan, ln_forward, ln_backward};
