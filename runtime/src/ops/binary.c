/* Add, Sub and Mul with numpy broadcasting. A is an activation; B an activation or a parameter
 * without a batch axis, broadcast over the batch. A parameter marked as state is a constant of
 * the graph (a scale baked in, never trained) whose int8 view is rounded to nearest once per call;
 * any other parameter is a weight (a positional embedding, a layer scale) with the SR view every
 * weight has, trained when the session's trainable flags say so. Shapes are per sample for
 * activations and whole for a parameter; they broadcast right-aligned against the output's
 * per-sample shape.
 *   Add/Sub: terms meet at a common exponent (at most 40 bits apart), one SR.
 *   Mul: the int8 x int8 product is exact, one SR.
 * Backward reduces dY over the broadcast axes of each input exactly (int64), then one SR;
 * without broadcasting Add/Sub pass dY through unrounded. A trained parameter's gradient is dY
 * (Mul: dY * A) summed over the batch and its broadcast axes, exact, handed to the optimizer. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

enum { OP_KIND_ADD, OP_KIND_SUB, OP_KIND_MUL };
enum { S_B8, S_ACC_A, S_ACC_B };
enum { R_OUT = 1, R_DA, R_DB, R_B8 };

/* Index maps from an output element (within a sample) to an input element. */
typedef struct bmap {
    uint32_t rank;
    uint32_t dims[IE_MAX_RANK];       /* output per-sample dims */
    uint32_t stride[2][IE_MAX_RANK];  /* per input, 0 on broadcast axes */
    size_t numel[2];                  /* per-sample (or whole, for a constant) */
    int per_sample[2];                /* 1 if the input has a batch dimension */
    int broadcast[2];                 /* 1 if some output element reuses an input element */
    int identity[2];                  /* 1 if the input's shape is the output's (per sample) */
} bmap;

static void build_map(const ie_model *m, const ie_node_desc *nd, bmap *bm) {
    const ie_tensor_desc *y = &m->tensors[nd->out[0]];
    bm->rank = y->rank;
    memcpy(bm->dims, y->dims, sizeof bm->dims);
    for (int k = 0; k < 2; k++) {
        const ie_tensor_desc *t = &m->tensors[nd->in[k]];
        uint32_t off = y->rank - t->rank;
        size_t s = 1;
        bm->broadcast[k] = 0;
        for (int d = (int)y->rank - 1; d >= 0; d--) {
            uint32_t td = (uint32_t)d >= off ? t->dims[d - off] : 1;
            bm->stride[k][d] = td == 1 && y->dims[d] != 1 ? 0 : (uint32_t)s;
            if (td != y->dims[d]) bm->broadcast[k] = 1;
            s *= td;
        }
        bm->numel[k] = t->numel;
        bm->identity[k] = !bm->broadcast[k];
        bm->per_sample[k] = t->kind != IE_KIND_PARAM;
        if (!bm->per_sample[k]) bm->broadcast[k] = 1; /* one parameter serves every sample */
    }
}

static size_t map_index(const bmap *bm, int k, size_t sample, size_t o) {
    if (bm->identity[k]) return (bm->per_sample[k] ? sample * bm->numel[k] : 0) + o; /* same shape */
    size_t idx = 0;
    for (int d = (int)bm->rank - 1; d >= 0; d--) {
        idx += (o % bm->dims[d]) * bm->stride[k][d];
        o /= bm->dims[d];
    }
    return idx + (bm->per_sample[k] ? sample * bm->numel[k] : 0);
}

static ie_status binary_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *a = &m->tensors[nd->in[0]], *b = &m->tensors[nd->in[1]], *y = &m->tensors[nd->out[0]];
    if (a->kind == IE_KIND_PARAM) { ie_set_err(err, "the first input must be an activation"); return IE_ERR_FORMAT; }
    if (nd->attrs[0] < OP_KIND_ADD || nd->attrs[0] > OP_KIND_MUL) { ie_set_err(err, "unknown kind"); return IE_ERR_FORMAT; }
    const ie_tensor_desc *in[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        if (in[k]->rank > y->rank) { ie_set_err(err, "an input has a higher rank than the output"); return IE_ERR_FORMAT; }
        uint32_t off = y->rank - in[k]->rank;
        for (uint32_t d = 0; d < in[k]->rank; d++)
            if (in[k]->dims[d] != 1 && in[k]->dims[d] != y->dims[d + off]) {
                ie_set_err(err, "input %d does not broadcast to the output shape", k);
                return IE_ERR_FORMAT;
            }
    }
    for (uint32_t d = 0; d < y->rank; d++) { /* the output is exactly the broadcast shape */
        uint32_t want = 1;
        for (int k = 0; k < 2; k++) {
            uint32_t off = y->rank - in[k]->rank;
            if (d >= off && in[k]->dims[d - off] > want) want = in[k]->dims[d - off];
        }
        if (want != y->dims[d]) { ie_set_err(err, "the output is not the broadcast shape"); return IE_ERR_FORMAT; }
    }
    return IE_OK;
}

static void binary_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    bmap bm;
    build_map(m, nd, &bm);
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    size_t n = ie_plan_batch(p);
    int bwd = ie_plan_requires_grad(p, nd->out[0]), mul = nd->attrs[0] == OP_KIND_MUL;
    int param_b = m->tensors[nd->in[1]].kind == IE_KIND_PARAM;
    if (param_b) ie_plan_node_scratch(p, node, S_B8, bm.numel[1], F, bwd && mul ? B : F);
    if (!bwd) return;
    for (int k = 0; k < 2; k++) {
        uint32_t t = nd->in[k];
        if (!ie_plan_requires_grad(p, t)) continue; /* a parameter: trained */
        if (mul) ie_plan_keep(p, nd->in[1 - k], B); /* dA needs B and dB needs A */
        if (k && param_b) {
            ie_plan_param_buffer(p, t, IE_BUF_PARAM_GRAD, IE_SIZE(bm.numel[1], sizeof(int64_t)), B, B);
        } else if (mul || bm.broadcast[k]) {
            ie_plan_node_scratch(p, node, k ? S_ACC_B : S_ACC_A, IE_SIZE(n, bm.numel[k], sizeof(int64_t)), B, B);
        }
    }
}

typedef struct operands {
    const int8_t *a, *b;
    int32_t ea, eb;
} operands;

static operands load(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *tb = &s->model->tensors[nd->in[1]];
    operands o = {s->values[nd->in[0]].q, s->values[nd->in[1]].q, s->values[nd->in[0]].e, s->values[nd->in[1]].e};
    if (tb->kind == IE_KIND_PARAM) { /* the int8 view: a constant's rounded to nearest, a weight's by SR */
        uint32_t pi = tb->param;
        int8_t *b8 = s->nodes[node].scratch[S_B8];
        ie_param_quantize(s, pi, b8, 0, tb->state); /* backward rebuilds the forward's bytes */
        o.b = b8;
        o.eb = s->params[pi].e8;
    }
    return o;
}

static int64_t combine(int kind, const operands *o, size_t ia, size_t ib, int32_t e_c, uint32_t draw) {
    if (kind == OP_KIND_MUL) return (int64_t)o->a[ia] * o->b[ib];
    int64_t va = ie_shift_round(o->a[ia], e_c - o->ea, draw);
    int64_t vb = ie_shift_round(o->b[ib], e_c - o->eb, ie_hash32(draw ^ 0x68E31DA4U));
    return kind == OP_KIND_SUB ? va - vb : va + vb;
}

static void binary_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    int kind = nd->attrs[0];
    bmap bm;
    build_map(s->model, nd, &bm);
    operands o = load(s, node);
    ie_value *y = &s->values[nd->out[0]];
    size_t per = s->model->tensors[nd->out[0]].numel, total = (size_t)s->n * per;
    int32_t lo = o.ea < o.eb ? o.ea : o.eb, hi = o.ea < o.eb ? o.eb : o.ea;
    int32_t e_c = kind == OP_KIND_MUL ? o.ea + o.eb : (hi - 40 > lo ? hi - 40 : lo);
    ie_rounder align = ie_session_rounder(s, ie_node_stream(node, R_OUT + 8));
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, R_OUT));
    int sh;
    /* Add/Sub of same-shaped tensors whose exponents are at most 40 apart (the usual residual):
     * both terms align by exact left shifts, so no alignment draws and no index maps. The bytes
     * are those of the general path. */
    if (kind != OP_KIND_MUL && !bm.broadcast[0] && !bm.broadcast[1] && e_c == lo) {
        int64_t ma = (int64_t)1 << (o.ea - e_c), mb = ((int64_t)1 << (o.eb - e_c)) * (kind == OP_KIND_SUB ? -1 : 1);
        y->e = e_c + ie_sum2_s8(o.a, ma, o.b, mb, total, r, y->q);
        return;
    }
    IE_REQUANT_EACH(total, i,
                    combine(kind, &o, map_index(&bm, 0, i / per, i % per), map_index(&bm, 1, i / per, i % per), e_c,
                            ie_draw(align, (uint32_t)i)),
                    r, y->q, sh);
    y->e = e_c + sh;
}

static void binary_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    int kind = nd->attrs[0];
    bmap bm;
    build_map(s->model, nd, &bm);
    ie_value *y = &s->values[nd->out[0]];
    size_t per = s->model->tensors[nd->out[0]].numel, total = (size_t)s->n * per;
    operands o = {0};
    if (kind == OP_KIND_MUL) o = load(s, node);
    for (int k = 0; k < 2; k++) {
        ie_value *x = &s->values[nd->in[k]];
        if (!x->requires_grad) continue;
        uint32_t pi = s->model->tensors[nd->in[k]].param; /* a parameter that requires grad is trained */
        int8_t sign = (kind == OP_KIND_SUB && k) ? -1 : 1;
        size_t xn = pi != IE_NONE ? bm.numel[k] : (size_t)s->n * bm.numel[k];
        if (kind != OP_KIND_MUL && !bm.broadcast[k]) { /* dY itself, unrounded */
            int8_t *gx = x->g; /* locals: a store through int8_t * could alias x->g, which kept this scalar */
            const int8_t *gy = y->g;
            for (size_t i = 0; i < xn; i++) gx[i] = (int8_t)(sign * gy[i]);
            x->ge = y->ge;
            continue;
        }
        int64_t *acc = pi != IE_NONE ? s->params[pi].grad : s->nodes[node].scratch[k ? S_ACC_B : S_ACC_A];
        memset(acc, 0, xn * sizeof(int64_t));
        const int8_t *other = k ? o.a : o.b;
        for (size_t i = 0; i < total; i++) {
            int64_t g = y->g[i];
            if (kind == OP_KIND_MUL) g *= other[map_index(&bm, 1 - k, i / per, i % per)];
            acc[map_index(&bm, k, i / per, i % per)] += sign * g;
        }
        int32_t e = y->ge + (kind == OP_KIND_MUL ? (k ? o.ea : o.eb) : 0);
        if (pi != IE_NONE) { /* exact, to the optimizer */
            s->params[pi].grad_e = e;
            ie_optim_step(s, pi);
            continue;
        }
        x->ge = e + ie_requant_s64_s8(acc, xn, ie_session_rounder(s, ie_node_stream(node, k ? R_DB : R_DA)), x->g);
    }
}

const ie_op_def ie_op_binary = {"Binary", 2, 2, 1, binary_check, binary_plan, binary_forward, binary_backward};
