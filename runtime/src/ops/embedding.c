/* Embedding: Y[..., D] = table[ids[...]] (ONNX Gather on a [V, D] initializer along axis 0), and
 * Cast, which turns an integer input (an attention mask) into int8 activations.
 *
 * The ids are an integer graph input (token ids: the runtime checked them against V when the
 * batch arrived) or a constant (position ids, a state parameter of whole numbers). The forward
 * copies the int8 view of the rows it reads, built at the table's view exponent: exact, no
 * rounding beyond the view. The backward sums dY into the rows the batch used, exactly, and the
 * optimizer steps those rows only (ie_optim_step_rows): a 30,000-row vocabulary costs what the
 * batch's rows cost, and rows no sample used keep their bytes. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

enum { S_IDS, S_MARK, S_ROWS, S_GRAD, S_OPT };

typedef struct emb_shape {
    uint32_t table, ids, y;
    size_t rows, d, count; /* table rows V, row length D, ids per sample */
} emb_shape;

static emb_shape shape_of(const ie_model *m, const ie_node_desc *nd) {
    emb_shape e = {nd->in[0], nd->in[1], nd->out[0], 0, 0, 0};
    e.rows = m->tensors[e.table].dims[0];
    e.d = m->tensors[e.table].dims[1];
    e.count = m->tensors[e.ids].numel;
    return e;
}

static int const_ids(const ie_model *m, uint32_t t) { return m->tensors[t].kind == IE_KIND_PARAM; }

static ie_status emb_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *table = &m->tensors[nd->in[0]], *ids = &m->tensors[nd->in[1]], *y = &m->tensors[nd->out[0]];
    if (table->kind != IE_KIND_PARAM || table->rank != 2) { ie_set_err(err, "the table must be a rank-2 parameter"); return IE_ERR_FORMAT; }
    if (ids->kind == IE_KIND_ACTIVATION || (ids->kind == IE_KIND_INPUT && !ids->ids) || (ids->kind == IE_KIND_PARAM && !ids->state)) {
        ie_set_err(err, "the ids must be an integer input or a constant (state) parameter");
        return IE_ERR_FORMAT;
    }
    if ((uint64_t)ids->numel * table->dims[1] != y->numel || y->dims[y->rank - 1] != table->dims[1]) {
        ie_set_err(err, "the output must hold one %" PRIu32 "-wide row per id", table->dims[1]);
        return IE_ERR_FORMAT;
    }
    if (const_ids(m, nd->in[1]))
        for (uint32_t i = 0; i < ids->numel; i++) {
            int32_t v;
            if (!ie_f32_bits_to_int32(ie_rd32(ids->data + 4 * i), &v) || v < 0 || (uint32_t)v >= table->dims[0]) {
                ie_set_err(err, "constant id %" PRIu32 " is not a row of the %" PRIu32 "-row table", i, table->dims[0]);
                return IE_ERR_FORMAT;
            }
        }
    return IE_OK;
}

/* Distinct rows a batch can touch: never more than the ids it holds, nor the table's rows. */
static uint64_t max_touched(const emb_shape *e, uint32_t batch) {
    uint64_t n = IE_SIZE(e->count, batch);
    return n < e->rows ? n : e->rows;
}

static void emb_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    emb_shape e = shape_of(m, &m->nodes[node]);
    uint64_t touched = max_touched(&e, ie_plan_batch(p));
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int train = ie_plan_requires_grad(p, e.y) && ie_plan_param_trainable(p, e.table);
    if (const_ids(m, e.ids)) /* the constant ids, decoded (whole numbers, checked at load) */
        ie_plan_node_scratch(p, node, S_IDS, IE_SIZE(e.count, sizeof(int32_t)), F, train ? B : F);
    else if (train)
        ie_plan_keep(p, e.ids, B);
    if (!train) return;
    ie_plan_node_scratch(p, node, S_MARK, IE_SIZE((e.rows + 63) / 64, sizeof(uint64_t)), B, B);
    ie_plan_node_scratch(p, node, S_ROWS, IE_SIZE(touched, sizeof(uint32_t)), B, B);
    ie_plan_node_scratch(p, node, S_GRAD, IE_SIZE(touched, e.d, sizeof(int64_t)), B, B);
    ie_plan_node_scratch(p, node, S_OPT, ie_optim_rows_scratch(ie_plan_config(p), IE_SIZE(touched, e.d)), B, B);
}

/* The ids of sample i (a constant's are the same for every sample). */
static const int32_t *ids_of(ie_session *s, uint32_t node, const emb_shape *e, size_t i) {
    if (const_ids(s->model, e->ids)) return s->nodes[node].scratch[S_IDS];
    return (const int32_t *)s->values[e->ids].q + i * e->count;
}

static void emb_forward(ie_session *s, uint32_t node) {
    const ie_model *m = s->model;
    emb_shape e = shape_of(m, &m->nodes[node]);
    ie_value *y = &s->values[e.y];
    uint32_t pi = m->tensors[e.table].param;
    if (const_ids(m, e.ids)) {
        int32_t *ids = s->nodes[node].scratch[S_IDS];
        for (size_t j = 0; j < e.count; j++) ie_f32_bits_to_int32(ie_rd32(m->tensors[e.ids].data + 4 * j), &ids[j]);
    }
    for (size_t i = 0; i < s->n; i++)
        ie_param_quantize_rows(s, pi, ids_of(s, node, &e, i), e.count, e.d, y->q + i * e.count * e.d);
    y->e = s->params[pi].e8;
}

/* Index of row r in the ascending list rows[0..n). */
static size_t find_row(const uint32_t *rows, size_t n, uint32_t r) {
    size_t lo = 0, hi = n;
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (rows[mid] <= r) lo = mid;
        else hi = mid;
    }
    return lo;
}

static void emb_backward(ie_session *s, uint32_t node) {
    const ie_model *m = s->model;
    emb_shape e = shape_of(m, &m->nodes[node]);
    uint32_t pi = m->tensors[e.table].param;
    if (!s->params[pi].trainable) return;
    ie_node_rt *rt = &s->nodes[node];
    const ie_value *y = &s->values[e.y];
    uint64_t *mark = rt->scratch[S_MARK];
    uint32_t *rows = rt->scratch[S_ROWS];
    int64_t *grad = rt->scratch[S_GRAD];
    memset(mark, 0, (e.rows + 63) / 64 * sizeof(uint64_t));
    for (size_t i = 0; i < s->n; i++) {
        const int32_t *ids = ids_of(s, node, &e, i);
        for (size_t j = 0; j < e.count; j++) mark[(uint32_t)ids[j] / 64] |= (uint64_t)1 << ((uint32_t)ids[j] % 64);
    }
    size_t used = 0; /* the bitmap, read in order, lists the rows ascending */
    for (size_t w = 0; w < (e.rows + 63) / 64; w++)
        for (uint32_t b = 0; b < 64 && mark[w] >> b; b++) /* b < 64 first: a shift by 64 is undefined */
            if (mark[w] >> b & 1) rows[used++] = (uint32_t)(w * 64 + b);
    memset(grad, 0, used * e.d * sizeof(int64_t));
    for (size_t i = 0; i < s->n; i++) {
        const int32_t *ids = ids_of(s, node, &e, i);
        for (size_t j = 0; j < e.count; j++) {
            int64_t *g = grad + find_row(rows, used, (uint32_t)ids[j]) * e.d;
            const int8_t *dy = y->g + (i * e.count + j) * e.d;
            for (size_t k = 0; k < e.d; k++) g[k] += dy[k];
        }
    }
    ie_optim_step_rows(s, pi, rows, used, e.d, grad, y->ge, rt->scratch[S_OPT]);
}

const ie_op_def ie_op_embedding = {"Embedding", 2, 2, 1, emb_check, emb_plan, emb_forward, emb_backward};

/* ---- Cast: integer input -> int8 -------------------------------------------------------------- */

static ie_status cast_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (x->kind != IE_KIND_INPUT || !x->ids || x->numel != y->numel) {
        ie_set_err(err, "Cast reads an integer input into an activation of its size");
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

static void cast_plan(ie_planner *p, uint32_t node) { (void)p; (void)node; }

/* Whole numbers of at most 7 bits (masks) come out exact; larger ones are requantized by SR. */
static void cast_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_value *x = &s->values[nd->in[0]];
    ie_value *y = &s->values[nd->out[0]];
    const int32_t *v = (const int32_t *)x->q;
    size_t n = (size_t)s->n * s->model->tensors[nd->in[0]].numel;
    int sh;
    IE_REQUANT_EACH(n, i, (int64_t)v[i], ie_session_rounder(s, ie_node_stream(node, 1)), y->q, sh);
    y->e = sh;
}

static void cast_backward(ie_session *s, uint32_t node) { (void)s; (void)node; } /* integers take no gradient */

const ie_op_def ie_op_cast = {"Cast", 1, 1, 1, cast_check, cast_plan, cast_forward, cast_backward};
