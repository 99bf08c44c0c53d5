/* Gemm: Y[N,M] = X[N,K] . W^T + B. Forward and backward side by side.
 * The int8 view of W is kept as [M,K] whatever the master's layout, so one packed kernel
 * (dot products along a contiguous reduction) serves all three GEMMs of training. */
#include "../planner.h"

enum { S_ACC, S_BIAS, S_WT, S_DX_ACC, S_DYT, S_XT };
enum { R_ACC = 1, R_BIAS, R_OUT, R_DX };

typedef struct gemm_shape {
    size_t k, m;
    int w_is_mk; /* 1: W is [M,K] (ONNX transB=1, PyTorch Linear); 0: [K,M] (MatMul) */
    uint32_t x, w, b, y;
} gemm_shape;

static gemm_shape shape_of(const ie_model *m, const ie_node_desc *nd) {
    gemm_shape g;
    g.x = nd->in[0];
    g.w = nd->in[1];
    g.b = nd->n_in > 2 ? nd->in[2] : IE_NONE;
    g.y = nd->out[0];
    g.k = m->tensors[g.x].numel;
    g.m = m->tensors[g.y].numel;
    g.w_is_mk = nd->attrs[0];
    return g;
}

static ie_status gemm_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *w = &m->tensors[nd->in[1]], *y = &m->tensors[nd->out[0]];
    if (nd->attrs[0] != 0 && nd->attrs[0] != 1) { ie_set_err(err, "attribute w_is_mk must be 0 or 1"); return IE_ERR_FORMAT; }
    if (x->kind == IE_KIND_PARAM) { ie_set_err(err, "the data input must not be a parameter"); return IE_ERR_FORMAT; }
    if (w->kind != IE_KIND_PARAM || w->rank != 2) { ie_set_err(err, "the weight must be a rank-2 parameter"); return IE_ERR_FORMAT; }
    uint32_t k = x->numel, mo = y->numel;
    uint32_t wm = nd->attrs[0] ? w->dims[0] : w->dims[1], wk = nd->attrs[0] ? w->dims[1] : w->dims[0];
    if (wk != k || wm != mo) {
        ie_set_err(err, "weight [%u,%u] does not map %u inputs to %u outputs", w->dims[0], w->dims[1], k, mo);
        return IE_ERR_FORMAT;
    }
    if (k > IE_MAX_REDUCTION || mo > IE_MAX_REDUCTION) { ie_set_err(err, "more than 2^17 features"); return IE_ERR_UNSUPPORTED; }
    if (nd->n_in > 2) {
        const ie_tensor_desc *b = &m->tensors[nd->in[2]];
        if (b->kind != IE_KIND_PARAM || b->numel != mo) { ie_set_err(err, "the bias must be a parameter of %u values", mo); return IE_ERR_FORMAT; }
    }
    return IE_OK;
}

static void gemm_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    gemm_shape g = shape_of(m, &m->nodes[node]);
    size_t n = ie_plan_batch(p);
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int bwd = ie_plan_requires_grad(p, g.y);
    int need_dx = bwd && ie_plan_requires_grad(p, g.x);
    int need_dw = bwd && ie_plan_param_trainable(p, g.w);
    int need_db = bwd && g.b != IE_NONE && ie_plan_param_trainable(p, g.b);
    ie_plan_param_buffer(p, g.w, IE_BUF_PARAM_W8, g.m * g.k, F, need_dx ? B : F);
    ie_plan_node_scratch(p, node, S_ACC, n * g.m * sizeof(int32_t), F, F);
    if (g.b != IE_NONE) ie_plan_node_scratch(p, node, S_BIAS, g.m * sizeof(int64_t), F, F);
    if (need_dx) {
        ie_plan_node_scratch(p, node, S_WT, g.k * g.m, B, B);
        ie_plan_node_scratch(p, node, S_DX_ACC, n * g.k * sizeof(int32_t), B, B);
    }
    if (need_dw) {
        ie_plan_keep(p, g.x, B);
        ie_plan_node_scratch(p, node, S_DYT, g.m * n, B, B);
        ie_plan_node_scratch(p, node, S_XT, g.k * n, B, B);
        ie_plan_param_buffer(p, g.w, IE_BUF_PARAM_GRAD, g.m * g.k * sizeof(int64_t), B, B);
        ie_plan_param_buffer(p, g.w, IE_BUF_PARAM_OPT, g.m * g.k * sizeof(int32_t), B, B);
    }
    if (need_db) {
        ie_plan_param_buffer(p, g.b, IE_BUF_PARAM_GRAD, g.m * sizeof(int64_t), B, B);
        ie_plan_param_buffer(p, g.b, IE_BUF_PARAM_OPT, g.m * sizeof(int32_t), B, B);
    }
}

/* The bias at the accumulator's exponent. If the bias would need more than 31 bits of left
 * shift, the accumulator moves up instead (rounded), so the sum always fits in int64. */
static int32_t align_bias(ie_session *s, uint32_t node, const ie_param *pb, int32_t *acc, size_t acc_n,
                          int32_t e_acc, int64_t *bias, size_t m) {
    int32_t e_work = pb->we - 31 > e_acc ? pb->we - 31 : e_acc;
    if (e_work > e_acc)
        ie_shift_s32_s32(acc, acc_n, e_work - e_acc, 31, ie_session_rounder(s, ie_node_stream(node, R_ACC)), acc);
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, R_BIAS));
    for (size_t j = 0; j < m; j++) bias[j] = ie_shift_round(pb->w[j], e_work - pb->we, ie_draw(r, (uint32_t)j));
    return e_work;
}

static void gemm_forward(ie_session *s, uint32_t node) {
    const ie_model *m = s->model;
    gemm_shape g = shape_of(m, &m->nodes[node]);
    ie_node_rt *rt = &s->nodes[node];
    ie_value *x = &s->values[g.x], *y = &s->values[g.y];
    ie_param *pw = &s->params[m->tensors[g.w].param];
    size_t n = s->n;
    ie_param_quantize(s, m->tensors[g.w].param, pw->w8, g.w_is_mk ? 0 : g.k);
    int32_t *acc = rt->scratch[S_ACC];
    s->k->gemm_s8s8_s32(x->q, pw->w8, acc, n, g.m, g.k);
    int32_t e = x->e + pw->e8;
    int64_t *bias = NULL;
    if (g.b != IE_NONE) {
        bias = rt->scratch[S_BIAS];
        e = align_bias(s, node, &s->params[m->tensors[g.b].param], acc, n * g.m, e, bias, g.m);
    }
    int sh = ie_requant_shift(s->k->absmax_s32_bias(acc, bias, n, g.m), 7);
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, R_OUT));
    s->k->requant_s32_bias_s8(acc, bias, n, g.m, sh, r.key, r.nearest, y->q);
    y->e = e + sh;
}

static void gemm_backward(ie_session *s, uint32_t node) {
    const ie_model *m = s->model;
    gemm_shape g = shape_of(m, &m->nodes[node]);
    ie_node_rt *rt = &s->nodes[node];
    ie_value *x = &s->values[g.x], *y = &s->values[g.y];
    uint32_t wi = m->tensors[g.w].param;
    ie_param *pw = &s->params[wi];
    size_t n = s->n;
    if (x->requires_grad) { /* dX[N,K] = dY[N,M] . W[M,K] */
        int8_t *wt = rt->scratch[S_WT];
        int32_t *acc = rt->scratch[S_DX_ACC];
        ie_transpose_s8(pw->w8, g.m, g.k, wt);
        s->k->gemm_s8s8_s32(y->g, wt, acc, n, g.k, g.m);
        int sh = ie_requant_shift(s->k->absmax_s32_bias(acc, NULL, n, g.k), 7);
        ie_rounder r = ie_session_rounder(s, ie_node_stream(node, R_DX));
        s->k->requant_s32_bias_s8(acc, NULL, n, g.k, sh, r.key, r.nearest, x->g);
        x->ge = y->ge + pw->e8 + sh;
    }
    if (pw->trainable) { /* dW = dY^T . X, exact in int64, in the master's layout */
        int8_t *dyt = rt->scratch[S_DYT], *xt = rt->scratch[S_XT];
        ie_transpose_s8(y->g, n, g.m, dyt);
        ie_transpose_s8(x->q, n, g.k, xt);
        if (g.w_is_mk) s->k->gemm_s8s8_s64(dyt, xt, pw->grad, g.m, g.k, n);
        else s->k->gemm_s8s8_s64(xt, dyt, pw->grad, g.k, g.m, n);
        pw->grad_e = y->ge + x->e;
        ie_optim_step(s, wi);
    }
    if (g.b != IE_NONE && s->params[m->tensors[g.b].param].trainable) { /* dB = column sums of dY */
        uint32_t bi = m->tensors[g.b].param;
        ie_param *pb = &s->params[bi];
        for (size_t j = 0; j < g.m; j++) pb->grad[j] = 0;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < g.m; j++) pb->grad[j] += y->g[i * g.m + j];
        pb->grad_e = y->ge;
        ie_optim_step(s, bi);
    }
}

const ie_op_def ie_op_gemm = {"Gemm", 2, 3, 1, gemm_check, gemm_plan, gemm_forward, gemm_backward};
