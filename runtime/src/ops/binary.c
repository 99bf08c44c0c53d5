/* Add and Sub of two activations of the same shape (residual connections): the terms meet at a
 * common exponent and are rounded once (ie_sum_s8). Backward passes dY through, negated for B
 * of Sub, at dY's exponent: no rounding. */
#include "../planner.h"
#include "ops.h"

static ie_status binary_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *a = &m->tensors[nd->in[0]], *b = &m->tensors[nd->in[1]], *y = &m->tensors[nd->out[0]];
    if (a->kind == IE_KIND_PARAM || b->kind == IE_KIND_PARAM) {
        ie_set_err(err, "both inputs must be activations");
        return IE_ERR_FORMAT;
    }
    if (a->rank != b->rank || a->rank != y->rank) { ie_set_err(err, "inputs and output must have the same shape"); return IE_ERR_FORMAT; }
    for (uint32_t d = 0; d < a->rank; d++)
        if (a->dims[d] != b->dims[d] || a->dims[d] != y->dims[d]) {
            ie_set_err(err, "inputs and output must have the same shape (broadcasting comes later)");
            return IE_ERR_UNSUPPORTED;
        }
    return IE_OK;
}

static void binary_plan(ie_planner *p, uint32_t node) { (void)p; (void)node; }

static void forward(ie_session *s, uint32_t node, int8_t sign_b) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *a = &s->values[nd->in[0]], *b = &s->values[nd->in[1]], *y = &s->values[nd->out[0]];
    const int8_t *x[2] = {a->q, b->q};
    int32_t e[2] = {a->e, b->e};
    int8_t sign[2] = {1, sign_b};
    y->e = ie_sum_s8(x, e, sign, 2, (size_t)s->n * s->model->tensors[nd->out[0]].numel,
                     ie_session_rounder(s, ie_node_stream(node, 1)), y->q);
}

static void backward(ie_session *s, uint32_t node, int8_t sign_b) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *y = &s->values[nd->out[0]];
    size_t n = (size_t)s->n * s->model->tensors[nd->out[0]].numel;
    for (int k = 0; k < 2; k++) {
        ie_value *x = &s->values[nd->in[k]];
        if (!x->requires_grad) continue;
        int8_t sign = k ? sign_b : 1;
        for (size_t i = 0; i < n; i++) x->g[i] = (int8_t)(sign * y->g[i]);
        x->ge = y->ge;
    }
}

static void add_forward(ie_session *s, uint32_t node) { forward(s, node, 1); }
static void add_backward(ie_session *s, uint32_t node) { backward(s, node, 1); }
static void sub_forward(ie_session *s, uint32_t node) { forward(s, node, -1); }
static void sub_backward(ie_session *s, uint32_t node) { backward(s, node, -1); }

const ie_op_def ie_op_add = {"Add", 2, 2, 1, binary_check, binary_plan, add_forward, add_backward};
const ie_op_def ie_op_sub = {"Sub", 2, 2, 1, binary_check, binary_plan, sub_forward, sub_backward};
