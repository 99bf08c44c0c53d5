/* Shape-preserving ops: Relu (a mask, no rounding) and Reshape (a view, no copy), and the shape
 * check of the ops along one axis. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

static ie_status same_numel_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (x->kind == IE_KIND_PARAM) { ie_set_err(err, "the input must not be a parameter"); return IE_ERR_FORMAT; }
    if (x->numel != y->numel) {
        ie_set_err(err, "%" PRIu32 " input elements but %" PRIu32 " output elements", x->numel, y->numel);
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

ie_status ie_check_along_axis(const ie_model *m, const ie_node_desc *nd, char *err) {
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (x->kind == IE_KIND_PARAM || x->numel != y->numel) { ie_set_err(err, "input and output must match"); return IE_ERR_FORMAT; }
    if (nd->attrs[0] < 0 || (uint32_t)nd->attrs[0] >= x->rank) {
        ie_set_err(err, "axis %" PRId32 " is outside the %u per-sample axes", nd->attrs[0], (unsigned)x->rank);
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

/* ---- Relu ---- */
static void relu_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    uint32_t y = m->nodes[node].out[0];
    if (ie_plan_requires_grad(p, y)) ie_plan_keep(p, y, ie_pos_bwd(m, node)); /* the mask is y > 0 */
}

IE_HOT void ie_relu_fwd(size_t n, const int8_t *x, int8_t *y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
}

/* The mask comes from the output: y > 0 exactly where x > 0. */
IE_HOT void ie_relu_bwd(size_t n, const int8_t *y, const int8_t *dy, int8_t *dx) {
    for (size_t i = 0; i < n; i++) dx[i] = (int8_t)(dy[i] & -(y[i] > 0)); /* a mask, not a branch: vectorizes */
}

static void relu_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    ie_relu_fwd((size_t)s->n * s->model->tensors[nd->in[0]].numel, x->q, y->q);
    y->e = x->e;
}

static void relu_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (!x->requires_grad) return;
    uint32_t src = s->model->tensors[nd->in[0]].producer;
    if (src != IE_NONE && s->model->nodes[src].op == IE_OP_BATCHNORM) /* the mask from x before its rounding */
        ie_bn_relu_backward(s, src, y->q, y->g, x->g);
    else
        ie_relu_bwd((size_t)s->n * s->model->tensors[nd->in[0]].numel, y->q, y->g, x->g);
    x->ge = y->ge;
}

const ie_op_def ie_op_relu = {"Relu", 1, 1, 1, same_numel_check, relu_plan, relu_forward, relu_backward};

/* ---- Reshape ---- */
static void reshape_plan(ie_planner *p, uint32_t node) {
    const ie_node_desc *nd = &ie_plan_model(p)->nodes[node];
    ie_plan_alias(p, nd->out[0], nd->in[0]);
}

static void reshape_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    s->values[nd->out[0]].e = s->values[nd->in[0]].e;
}

static void reshape_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (!x->requires_grad) return;
    if (x->g != y->g) /* x feeds other nodes too: this share goes to its own slot */
        memcpy(x->g, y->g, (size_t)s->n * s->model->tensors[nd->in[0]].numel);
    x->ge = y->ge;
}

const ie_op_def ie_op_reshape = {"Reshape", 1, 1, 1, same_numel_check, reshape_plan, reshape_forward, reshape_backward};
