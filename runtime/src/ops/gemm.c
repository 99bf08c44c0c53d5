/* Gemm: Y[R,M] = X[R,K] . W^T + B. Forward and backward side by side.
 * R is the batch times the rows each sample holds: 1 (attrs[1] = 0 or 1: the sample is flattened,
 * a classifier's Linear), or the tokens of a transformer's [T, K] (a Linear applied to the last
 * axis of [N, T, K] or [N, h, T, K]: attrs[1] = T or h * T). dW and dB sum over all R rows.
 * The int8 view of W is kept as [M,K] whatever the master's layout, so one packed kernel
 * (dot products along a contiguous reduction) serves all three GEMMs of training. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

enum { S_ACC, S_BIAS, S_DX_ACC, S_DYT, S_XT };
enum { R_ACC = 1, R_BIAS, R_OUT, R_DX };

typedef struct gemm_shape {
    size_t k, m, rows; /* rows: per sample */
    int w_is_mk; /* 1: W is [M,K] (ONNX transB=1, PyTorch Linear); 0: [K,M] (MatMul) */
    uint32_t x, w, b, y;
} gemm_shape;

static gemm_shape shape_of(const ie_model *m, const ie_node_desc *nd) {
    gemm_shape g;
    g.x = nd->in[0];
    g.w = nd->in[1];
    g.b = nd->n_in > 2 ? nd->in[2] : IE_NONE;
    g.y = nd->out[0];
    g.rows = nd->attrs[1] > 1 ? (size_t)nd->attrs[1] : 1;
    g.k = m->tensors[g.x].numel / g.rows;
    g.m = m->tensors[g.y].numel / g.rows;
    g.w_is_mk = nd->attrs[0];
    return g;
}

static ie_status gemm_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *w = &m->tensors[nd->in[1]], *y = &m->tensors[nd->out[0]];
    if (nd->attrs[0] != 0 && nd->attrs[0] != 1) { ie_set_err(err, "attribute w_is_mk must be 0 or 1"); return IE_ERR_FORMAT; }
    if (x->kind == IE_KIND_PARAM) { ie_set_err(err, "the data input must not be a parameter"); return IE_ERR_FORMAT; }
    if (w->kind != IE_KIND_PARAM || w->rank != 2) { ie_set_err(err, "the weight must be a rank-2 parameter"); return IE_ERR_FORMAT; }
    uint32_t rows = nd->attrs[1] > 1 ? (uint32_t)nd->attrs[1] : 1;
    if (nd->attrs[1] < 0 || x->numel % rows || y->numel % rows) {
        ie_set_err(err, "%" PRId32 " rows per sample do not divide the input and output", nd->attrs[1]);
        return IE_ERR_FORMAT;
    }
    uint32_t k = x->numel / rows, mo = y->numel / rows;
    if (rows > 1 && (x->dims[x->rank - 1] != k || y->dims[y->rank - 1] != mo)) {
        ie_set_err(err, "with %" PRIu32 " rows per sample the last axes must hold the %" PRIu32 " inputs and %"
                        PRIu32 " outputs", rows, k, mo);
        return IE_ERR_FORMAT;
    }
    uint32_t wm = nd->attrs[0] ? w->dims[0] : w->dims[1], wk = nd->attrs[0] ? w->dims[1] : w->dims[0];
    if (wk != k || wm != mo) {
        ie_set_err(err, "weight [%" PRIu32 ",%" PRIu32 "] does not map %" PRIu32 " inputs to %" PRIu32 " outputs",
                   w->dims[0], w->dims[1], k, mo);
        return IE_ERR_FORMAT;
    }
    if (k > IE_MAX_REDUCTION || mo > IE_MAX_REDUCTION) { ie_set_err(err, "more than 2^17 features"); return IE_ERR_UNSUPPORTED; }
    if (nd->n_in > 2) {
        const ie_tensor_desc *b = &m->tensors[nd->in[2]];
        if (b->kind != IE_KIND_PARAM || b->numel != mo) {
            ie_set_err(err, "the bias must be a parameter of %" PRIu32 " values", mo);
            return IE_ERR_FORMAT;
        }
    }
    return IE_OK;
}

static void gemm_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    gemm_shape g = shape_of(m, &m->nodes[node]);
    uint64_t n = IE_SIZE(ie_plan_batch(p), g.rows);
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int bwd = ie_plan_requires_grad(p, g.y);
    int need_dx = bwd && ie_plan_requires_grad(p, g.x);
    int need_dw = bwd && ie_plan_param_trainable(p, g.w);
    int need_db = bwd && g.b != IE_NONE && ie_plan_param_trainable(p, g.b);
    ie_plan_param_buffer(p, g.w, IE_BUF_PARAM_W8, IE_SIZE(g.m, g.k), F, need_dx ? B : F);
    ie_plan_node_scratch(p, node, S_ACC, IE_SIZE(n, g.m, sizeof(int32_t)), F, F);
    if (g.b != IE_NONE) ie_plan_node_scratch(p, node, S_BIAS, IE_SIZE(g.m, sizeof(int64_t)), F, F);
    if (need_dx) ie_plan_node_scratch(p, node, S_DX_ACC, IE_SIZE(n, g.k, sizeof(int32_t)), B, B);
    if (need_dw) {
        ie_plan_keep(p, g.x, B);
        ie_plan_node_scratch(p, node, S_DYT, IE_SIZE(g.m, n), B, B);
        ie_plan_node_scratch(p, node, S_XT, IE_SIZE(g.k, n), B, B);
        ie_plan_param_buffer(p, g.w, IE_BUF_PARAM_GRAD, IE_SIZE(g.m, g.k, sizeof(int64_t)), B, B);
    }
    if (need_db) {
        ie_plan_param_buffer(p, g.b, IE_BUF_PARAM_GRAD, IE_SIZE(g.m, sizeof(int64_t)), B, B);
    }
}

/* ---- the arithmetic, on plain arrays (the executor and the tests both call these) ---------- */

/* Y[n,m] = requant(X[n,k] . W8[m,k]^T + B); r[0..2] as ie_requant_bias takes them. */
int32_t ie_gemm_fwd(const ie_exec *rt, size_t n, size_t m, size_t k, const int8_t *x, int32_t ex,
                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb, int32_t *acc,
                    int64_t *bias_al, const ie_rounder r[3], int8_t *y) {
    ie_gemm32(rt, x, w8, acc, n, m, k);
    return ie_requant_bias(rt, acc, n * m, ex + ew, 1, m, bias, eb, bias_al, r, y, NULL);
}

/* dX[n,k] = requant(dY[n,m] . W8[m,k]): W8 is reduction-major as it stands; acc is scratch. */
int32_t ie_gemm_bwd_dx(const ie_exec *rt, size_t n, size_t m, size_t k, const int8_t *dy, int32_t edy,
                       const int8_t *w8, int32_t ew, int32_t *acc, ie_rounder r, int8_t *dx) {
    ie_gemm32_bt(rt, dy, w8, acc, n, k, m);
    return edy + ew + ie_requant_acc(rt, acc, n * k, r, dx);
}

/* dW = dY^T . X, exact, as [m,k] (w_is_mk) or [k,m]; dyt and xt are scratch. X [n,k] and dY
 * [n,m] are reduction-major as they stand, so the int32 GEMM (exact: n <= 2^17 terms) reads one
 * of them directly and only the other is transposed; its sums stay int32, in dw's first half
 * (*narrow = 1: the optimizer reads them so). Otherwise dw holds int64 (*narrow = 0). */
int32_t ie_gemm_bwd_dw(const ie_exec *rt, size_t n, size_t m, size_t k, const int8_t *dy, int32_t edy,
                       const int8_t *x, int32_t ex, int w_is_mk, int8_t *dyt, int8_t *xt, int64_t *dw, int *narrow) {
    *narrow = IE_FAST_PATHS && n <= IE_MAX_REDUCTION;
    uint64_t t0 = ie_prof_start(rt->prof);
    if (*narrow) {
        int32_t *c = (int32_t *)dw;
        if (w_is_mk) {
            ie_transpose_s8(dy, n, m, dyt);
            ie_prof_add(rt->prof, IE_PROF_PACK, t0);
            ie_gemm32_bt(rt, dyt, x, c, m, k, n);
        } else {
            ie_transpose_s8(x, n, k, xt);
            ie_prof_add(rt->prof, IE_PROF_PACK, t0);
            ie_gemm32_bt(rt, xt, dy, c, k, m, n);
        }
        return edy + ex;
    }
    ie_transpose_s8(dy, n, m, dyt);
    ie_transpose_s8(x, n, k, xt);
    ie_prof_add(rt->prof, IE_PROF_PACK, t0);
    memset(dw, 0, sizeof(int64_t) * m * k); /* the kernel adds to it */
    if (w_is_mk) ie_gemm64(rt, dyt, xt, dw, m, k, n);
    else ie_gemm64(rt, xt, dyt, dw, k, m, n);
    return edy + ex;
}

/* dB = column sums of dY, exact. */
int32_t ie_gemm_bwd_db(size_t n, size_t m, const int8_t *dy, int32_t edy, int64_t *db) {
    for (size_t j = 0; j < m; j++) db[j] = 0;
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < m; j++) db[j] += dy[i * m + j];
    return edy;
}

/* ---- the op ------------------------------------------------------------------------------ */

static void gemm_forward(ie_session *s, uint32_t node) {
    const ie_model *m = s->model;
    gemm_shape g = shape_of(m, &m->nodes[node]);
    ie_node_rt *rt = &s->nodes[node];
    ie_value *x = &s->values[g.x], *y = &s->values[g.y];
    ie_param *pw = &s->params[m->tensors[g.w].param];
    const ie_param *pb = g.b != IE_NONE ? &s->params[m->tensors[g.b].param] : NULL;
    ie_param_quantize(s, m->tensors[g.w].param, pw->w8, g.w_is_mk ? 0 : g.k, 0);
    ie_rounder r[3] = {ie_session_rounder(s, ie_node_stream(node, R_ACC)),
                       ie_session_rounder(s, ie_node_stream(node, R_BIAS)),
                       ie_session_rounder(s, ie_node_stream(node, R_OUT))};
    y->e = ie_gemm_fwd(&s->ex, s->n * g.rows, g.m, g.k, x->q, x->e, pw->w8, pw->e8, pb ? pb->w : NULL, pb ? pb->we : 0,
                       rt->scratch[S_ACC], rt->scratch[S_BIAS], r, y->q);
}

static void gemm_backward(ie_session *s, uint32_t node) {
    const ie_model *m = s->model;
    gemm_shape g = shape_of(m, &m->nodes[node]);
    ie_node_rt *rt = &s->nodes[node];
    ie_value *x = &s->values[g.x], *y = &s->values[g.y];
    uint32_t wi = m->tensors[g.w].param;
    ie_param *pw = &s->params[wi];
    size_t n = s->n * g.rows;
    if (x->requires_grad)
        x->ge = ie_gemm_bwd_dx(&s->ex, n, g.m, g.k, y->g, y->ge, pw->w8, pw->e8, rt->scratch[S_DX_ACC],
                               ie_session_rounder(s, ie_node_stream(node, R_DX)), x->g);
    if (pw->trainable) {
        int narrow;
        ie_prof_switch(s->ex.prof, IE_PROF_DW);
        pw->grad_e = ie_gemm_bwd_dw(&s->ex, n, g.m, g.k, y->g, y->ge, x->q, x->e, g.w_is_mk, rt->scratch[S_DYT],
                                    rt->scratch[S_XT], pw->grad, &narrow);
        pw->grad32 = (uint8_t)narrow;
        ie_optim_step(s, wi);
    }
    if (g.b != IE_NONE && s->params[m->tensors[g.b].param].trainable) {
        ie_prof_switch(s->ex.prof, IE_PROF_DW);
        uint32_t bi = m->tensors[g.b].param;
        s->params[bi].grad_e = ie_gemm_bwd_db(n, g.m, y->g, y->ge, s->params[bi].grad);
        ie_optim_step(s, bi);
    }
}

const ie_op_def ie_op_gemm = {"Gemm", 2, 3, 1, gemm_check, gemm_plan, gemm_forward, gemm_backward};
