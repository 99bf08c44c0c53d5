/* The testing surface (intedge_testing.h): thin wrappers over the arithmetic the ops use. */
#include <stdlib.h>
#include <string.h>

#include "intedge_testing.h"
#include "../port/ie_port.h"
#include "ops/ops.h"
#include "planner.h"

static const ie_exec *scalar_exec(void) {
    static const ie_exec scalar = {&ie_kernels_scalar, NULL, NULL, NULL}; /* constant: no mutable global */
    return &scalar;
}

static ie_rounder rounder(uint64_t seed, int32_t nearest) {
    ie_rounder r = {ie_stream_key(seed, 0, 0), nearest != 0};
    return r;
}

int32_t ie_test_requant_s64(const int64_t *x, size_t n, uint64_t seed, int32_t nearest, int8_t *y) {
    return ie_requant_s64_s8(x, n, rounder(seed, nearest), y);
}

int32_t ie_test_gemm_forward(uint32_t n, uint32_t m, uint32_t k, const int8_t *x, int32_t ex, const int8_t *w8,
                             int32_t ew, const int32_t *bias, int32_t eb, uint64_t seed, int32_t nearest, int8_t *y) {
    int32_t *acc = malloc(sizeof(int32_t) * n * m);
    int64_t *bias_al = malloc(sizeof(int64_t) * m);
    ie_rounder r[3] = {rounder(seed, nearest), rounder(seed + 1, nearest), rounder(seed + 2, nearest)};
    int32_t e = ie_gemm_fwd(scalar_exec(), n, m, k, x, ex, w8, ew, bias, eb, acc, bias_al, r, y);
    free(acc);
    free(bias_al);
    return e;
}

int32_t ie_test_gemm_backward_dx(uint32_t n, uint32_t m, uint32_t k, const int8_t *dy, int32_t edy, const int8_t *w8,
                                 int32_t ew, uint64_t seed, int8_t *dx) {
    int32_t *acc = malloc(sizeof(int32_t) * n * k);
    int32_t e = ie_gemm_bwd_dx(scalar_exec(), n, m, k, dy, edy, w8, ew, acc, rounder(seed, 0), dx);
    free(acc);
    return e;
}

int32_t ie_test_gemm_backward_dw(uint32_t n, uint32_t m, uint32_t k, const int8_t *dy, int32_t edy, const int8_t *x,
                                 int32_t ex, int32_t w_is_mk, int64_t *dw) {
    int8_t *dyt = malloc((size_t)m * n), *xt = malloc((size_t)k * n);
    int narrow;
    int32_t e = ie_gemm_bwd_dw(scalar_exec(), n, m, k, dy, edy, x, ex, w_is_mk, dyt, xt, dw, &narrow);
    if (narrow) { /* int32 sums in dw's first half: widen through a copy */
        size_t total = (size_t)m * k;
        int32_t *sums = malloc(sizeof(int32_t) * total);
        memcpy(sums, dw, sizeof(int32_t) * total);
        for (size_t i = 0; i < total; i++) dw[i] = sums[i];
        free(sums);
    }
    free(dyt);
    free(xt);
    return e;
}

int32_t ie_test_gemm_backward_db(uint32_t n, uint32_t m, const int8_t *dy, int32_t edy, int64_t *db) {
    return ie_gemm_bwd_db(n, m, dy, edy, db);
}

static ie_conv_geom geom(const uint32_t *v) {
    ie_conv_geom g = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10],
                      v[11], v[12], v[13], v[14], v[15], v[16], v[0] ? v[11] / v[0] : 0, IE_CONV_CHUNK_COLS};
    return g;
}

int32_t ie_test_conv_forward(const uint32_t *geometry, uint32_t n, const int8_t *x, int32_t ex, const int8_t *w8,
                             int32_t ew, const int32_t *bias, int32_t eb, uint64_t seed, int8_t *y) {
    ie_conv_geom g = geom(geometry);
    int8_t *col = malloc(ie_conv_scratch(&g, n, IE_PROF_FWD));
    int32_t *acc = malloc(sizeof(int32_t) * n * g.cout * g.ho * g.wo);
    int64_t *bias_al = malloc(sizeof(int64_t) * g.cout);
    ie_rounder r[3] = {rounder(seed, 0), rounder(seed + 1, 0), rounder(seed + 2, 0)};
    int32_t e = ie_conv_fwd(scalar_exec(), &g, n, x, ex, w8, ew, bias, eb, col, acc, bias_al, r, y, NULL);
    free(col);
    free(acc);
    free(bias_al);
    return e;
}

int32_t ie_test_conv_backward_dx(const uint32_t *geometry, uint32_t n, const int8_t *dy, int32_t edy,
                                 const int8_t *w8, int32_t ew, uint64_t seed, int8_t *dx) {
    ie_conv_geom g = geom(geometry);
    size_t cout_g = g.cout / g.group, k = (size_t)g.cin_g * g.kh * g.kw;
    int8_t *wt = malloc(g.group * k * cout_g);
    int8_t *dcol = malloc(ie_conv_scratch(&g, n, IE_PROF_DX));
    int32_t *acc = malloc(sizeof(int32_t) * n * g.cin * g.h * g.w);
    int32_t e = ie_conv_bwd_dx(scalar_exec(), &g, n, dy, edy, w8, ew, wt, dcol, acc, rounder(seed, 0), dx);
    free(wt);
    free(dcol);
    free(acc);
    return e;
}

int32_t ie_test_conv_backward_dw(const uint32_t *geometry, uint32_t n, const int8_t *dy, int32_t edy, const int8_t *x,
                                 int32_t ex, int64_t *dw) {
    ie_conv_geom g = geom(geometry);
    int8_t *col = malloc(ie_conv_scratch(&g, n, IE_PROF_DW));
    uint8_t narrow;
    int32_t e = ie_conv_bwd_dw(scalar_exec(), &g, n, dy, edy, x, ex, col, NULL, dw, &narrow);
    for (size_t i = (size_t)g.cout * g.cin_g * g.kh * g.kw; narrow && i-- > 0;) { /* int32 sums: widen, last first */
        int32_t v;
        memcpy(&v, (const char *)dw + 4 * i, 4);
        dw[i] = v;
    }
    free(col);
    return e;
}

ie_status ie_test_gemm(const char *tier, int32_t wide, uint32_t m, uint32_t n, uint32_t k, const int8_t *a,
                       const int8_t *b, void *c) {
    const ie_kernels *kt = ie_kernels_select(tier);
    if (!kt) return IE_ERR_UNSUPPORTED;
    if (wide) memset(c, 0, sizeof(int64_t) * m * n); /* the kernel adds to c */
    if (wide) kt->gemm_s8s8_s64(a, b, c, m, n, k);
    else kt->gemm_s8s8_s32(a, b, c, m, n, k);
    return IE_OK;
}

void ie_test_relu_backward(size_t n, const int8_t *y, const int8_t *dy, int8_t *dx) { ie_relu_bwd(n, y, dy, dx); }

ie_status ie_test_softmax_ce(uint32_t n, uint32_t c, const int8_t *z, int32_t ez, const int32_t *labels, uint64_t seed,
                             int8_t *grad, int32_t *grad_e, int64_t *loss_q16, uint32_t *correct) {
    int64_t *acc = malloc(sizeof(int64_t) * n * c);
    ie_step_stats st = {0, n, 0};
    char err[IE_ERRMSG_LEN];
    ie_status status = ie_softmax_ce_rows(z, ez, n, c, labels, acc, &st, err);
    if (status == IE_OK) *grad_e = IE_CE_GRAD_EXP + ie_requant_s64_s8(acc, (size_t)n * c, rounder(seed, 0), grad);
    *loss_q16 = st.loss_sum_q16;
    *correct = st.n_correct;
    free(acc);
    return status;
}

/* A dense loss on [n, c, p] outputs, its gradient rounded to int8 as a session would. */
static ie_status test_dense(ie_dense_loss loss, uint32_t n, uint32_t c, uint32_t p, const int8_t *z, int32_t ez,
                            const int32_t *labels, uint64_t seed, int8_t *grad, int32_t *grad_e, int64_t *wide,
                            int32_t *wide_e, int64_t *loss_q16, uint32_t *correct, uint32_t *count) {
    size_t total = (size_t)n * c * p;
    int64_t *acc = malloc(sizeof(int64_t) * total);
    if (!acc) return IE_ERR_NOMEM;
    ie_step_stats st = {0, 0, 0};
    char err[IE_ERRMSG_LEN];
    int32_t e = 0;
    ie_status status = loss(z, ez, n, c, p, labels, acc, &e, &st, err);
    if (status == IE_OK && wide) {
        memcpy(wide, acc, sizeof(int64_t) * total);
        *wide_e = e;
    }
    if (status == IE_OK) *grad_e = e + ie_requant_s64_s8(acc, total, rounder(seed, 0), grad);
    *loss_q16 = st.loss_sum_q16;
    *correct = st.n_correct;
    *count = st.count;
    free(acc);
    return status;
}

ie_status ie_test_softmax_ce_pixels(uint32_t n, uint32_t c, uint32_t p, const int8_t *z, int32_t ez, const int32_t *labels,
                                    uint64_t seed, int8_t *grad, int32_t *grad_e, int64_t *wide, int32_t *wide_e,
                                    int64_t *loss_q16, uint32_t *correct, uint32_t *count) {
    return test_dense(ie_softmax_ce_pixels, n, c, p, z, ez, labels, seed, grad, grad_e, wide, wide_e, loss_q16, correct,
                      count);
}

ie_status ie_test_centernet(uint32_t n, uint32_t c, uint32_t p, const int8_t *z, int32_t ez, const int32_t *labels,
                            uint64_t seed, int8_t *grad, int32_t *grad_e, int64_t *wide, int32_t *wide_e,
                            int64_t *loss_q16, uint32_t *correct, uint32_t *count) {
    return test_dense(ie_centernet_loss, n, c + 4, p, z, ez, labels, seed, grad, grad_e, wide, wide_e, loss_q16, correct,
                      count);
}

int64_t ie_test_exp2_neg_q16(int64_t t) { return ie_exp2_neg_q16(t); }
int64_t ie_test_log2_q16(uint64_t x) { return ie_log2_q16(x); }

ie_dyadic ie_test_dyadic(const char *fn, ie_dyadic a, ie_dyadic b) {
    static const struct { const char *name; ie_dyadic (*unary)(ie_dyadic); } unary[] = {
        {"exp2", ie_dy_exp2}, {"exp", ie_dy_exp}, {"expm1", ie_dy_expm1}, {"erf", ie_dy_erf},
        {"erfc", ie_dy_erfc},
        {"sqrt", ie_dy_sqrt}, {"rsqrt", ie_dy_rsqrt}};
    ie_dyadic none = {0, INT32_MIN};
    if (!strcmp(fn, "div")) return ie_dy_div(a, b);
    for (size_t i = 0; i < sizeof unary / sizeof unary[0]; i++)
        if (!strcmp(fn, unary[i].name)) return unary[i].unary(a);
    return none;
}

int32_t ie_test_activation_table(const int32_t *attrs, int32_t ex, int32_t slope, int64_t *tab) {
    ie_dyadic *stage = malloc(256 * sizeof(ie_dyadic));
    int32_t e = ie_act_table(attrs, ex, slope, stage, tab);
    free(stage);
    return e;
}

ie_status ie_test_activation(const int32_t *attrs, int32_t ex, const int8_t *q, const int8_t *dy, size_t n, uint64_t seed,
                             int32_t nearest, int32_t path, int8_t *y, int32_t *e) {
    if (path < IE_ACT_TABLE || path > IE_ACT_FAST) return IE_ERR_ARG;
    ie_dyadic *stage = malloc(256 * sizeof(ie_dyadic));
    if (!stage) return IE_ERR_NOMEM;
    *e = ie_act_run(attrs, ex, q, dy, n, rounder(seed, nearest), stage, path, y);
    free(stage);
    return IE_OK;
}

ie_status ie_test_f32_to_fixed(const uint32_t *v, size_t n, int32_t bits, uint64_t seed, int32_t nearest,
                               int32_t *out, int32_t *e) {
    ie_status st = ie_f32_common_exponent(v, n, bits, e);
    if (st != IE_OK) return st;
    ie_rounder r = rounder(seed, nearest);
    for (size_t i = 0; i < n; i++) out[i] = ie_f32_to_fixed(v[i], *e, bits, ie_draw(r, (uint32_t)i));
    return IE_OK;
}

uint32_t ie_test_fixed_to_f32(int64_t m, int32_t e) { return ie_fixed_to_f32_bits(m, e); }

/* ---- whole sessions: any tensor's data and gradient (sessions created with keep_tensors) ---- */

ie_status ie_test_step_from_output_grad(ie_session *s, uint32_t n, const void *const *inputs, const int8_t *dy,
                                        int32_t edy) {
    if (!s || !dy) return IE_ERR_ARG;
    if (!s->cfg.keep_tensors) return IE_ERR_STATE;
    ie_status st = ie_session_begin(s, n, inputs, IE_MODE_TRAIN);
    if (st != IE_OK) return st;
    ie_value *out = &s->values[s->model->output];
    if (out->requires_grad) {
        memcpy(out->g, dy, (size_t)n * s->model->tensors[s->model->output].numel);
        out->ge = edy;
    }
    ie_session_backward(s);
    return IE_OK;
}

ie_status ie_test_tensor(const ie_session *s, uint32_t tensor, int32_t grad, int8_t *out, int32_t *e) {
    if (!s || !out || !e || tensor >= s->model->n_tensors) return IE_ERR_ARG;
    const ie_value *v = &s->values[tensor];
    if (!s->cfg.keep_tensors || s->model->tensors[tensor].kind == IE_KIND_PARAM) return IE_ERR_STATE;
    if (grad && !v->requires_grad) return IE_ERR_STATE;
    size_t total = (size_t)s->n * s->model->tensors[tensor].numel;
    if (!grad && ie_tensor_is_q16(s->model, &s->cfg, tensor)) { /* int16: handed out on the int8 grid, rounded to nearest */
        const int16_t *q = ie_q16(v);
        uint64_t max = 0;
        for (size_t i = 0; i < total; i++) max = ie_abs64(q[i]) > max ? ie_abs64(q[i]) : max;
        int sh = ie_requant_shift(max, 7);
        for (size_t i = 0; i < total; i++) out[i] = (int8_t)ie_clamp64(ie_shift_round(q[i], sh, 0x80000000U), 127);
        *e = v->e + sh;
        return IE_OK;
    }
    memcpy(out, grad ? v->g : v->q, total);
    *e = grad ? v->ge : v->e;
    return IE_OK;
}

ie_status ie_test_run_node(ie_session *s, uint32_t node, int32_t backward) {
    if (!s || node >= s->model->n_nodes) return IE_ERR_ARG;
    if (!s->cfg.keep_tensors || s->n == 0) return IE_ERR_STATE;
    const ie_node_desc *nd = &s->model->nodes[node];
    for (uint32_t k = 0; k < nd->n_in; k++)
        if (s->nodes[node].grad_slot[k] != IE_NONE) return IE_ERR_UNSUPPORTED;
    if (backward && !s->values[nd->out[0]].requires_grad) return IE_ERR_STATE;
    const ie_op_def *op = ie_op_lookup(nd->op);
    if (backward) op->backward(s, node);
    else op->forward(s, node);
    return IE_OK;
}

/* ---- the step profile (profile.h) ------------------------------------------------------------- */

ie_status ie_test_profile(ie_session *s, uint64_t *ns) {
    if (!s) return IE_ERR_ARG;
    ie_port_free(s->ex.prof);
    s->ex.prof = NULL;
    if (!ns) return IE_OK;
    s->ex.prof = ie_port_calloc(sizeof(ie_prof)); /* the session frees it */
    if (!s->ex.prof) return IE_ERR_NOMEM;
    s->ex.prof->ns = ns;
    memset(ns, 0, sizeof(uint64_t) * (s->model->n_nodes + 1) * IE_PROF_PHASES * IE_PROF_KINDS);
    return IE_OK;
}

ie_status ie_test_node(const ie_session *s, uint32_t node, const char **name, const char **op) {
    if (!s || !name || !op || node >= s->model->n_nodes) return IE_ERR_ARG;
    *name = s->model->nodes[node].name;
    *op = ie_op_lookup(s->model->nodes[node].op)->name;
    return IE_OK;
}

ie_status ie_test_optimizer_step(ie_session *s, uint32_t param, const int64_t *grad, int32_t grad_e) {
    if (!s || param >= s->model->n_params) return IE_ERR_ARG;
    ie_param *p = &s->params[param];
    if (!grad) return IE_ERR_ARG;
    if (!p->trainable || !p->grad) return IE_ERR_STATE;
    memcpy(p->grad, grad, sizeof(int64_t) * p->numel);
    p->grad_e = grad_e;
    p->grad32 = 0;
    ie_optim_begin_step(s);
    ie_optim_step(s, param);
    s->step++;
    return IE_OK;
}

ie_status ie_test_plan(ie_model *m, const ie_session_config *cfg, uint64_t *rows, uint32_t cap, uint32_t *count) {
    size_t bytes;
    if (!count || (cap && !rows)) return IE_ERR_ARG;
    ie_status st = ie_session_arena_size(m, cfg, &bytes); /* checks the config */
    if (st == IE_OK) st = ie_plan_region(m, cfg, NULL, NULL, &bytes);
    if (st != IE_OK) return st;
    *count = m->plan_used;
    for (uint32_t i = 0; i < m->plan_used && i < cap; i++) {
        const ie_plan_buffer *b = &m->plan_scratch[i];
        uint64_t *r = rows + 6 * (size_t)i;
        r[0] = b->kind;
        r[1] = b->index;
        r[2] = b->first;
        r[3] = b->last;
        r[4] = b->bytes;
        r[5] = b->offset;
    }
    return IE_OK;
}
