/* Softmax along one per-sample axis of X (any rank: attention scores [heads, T, T] with the last
 * axis, or any other), with an optional mask. Inputs: X, [mask]. The mask is a state parameter
 * (a constant, e.g. causal; its full shape) or an activation (its per-sample shape); its axes sit
 * on X's per-sample axes from `offset` on, each of size 1 (broadcast) or X's. Where the mask says
 * so, the element is out: probability exactly 0 and no gradient, the meaning of an additive -inf
 * mask. A row with every element out gives zeros (PyTorch gives NaN there).
 * attrs: 0 axis (per sample), 1 offset (mask), 2 flags: bit 0 set = the mask keeps its nonzero
 * elements (1 = attend, as Hugging Face's attention_mask); clear = nonzero elements are out.
 *
 * Forward, per row (z int8 at exponent ez): the max over the elements in; gaps zmax - z scaled
 * by log2(e) into Q16 and 2^-t by the fixed-point exp2 (fixmath.c), one table of the 255 gaps per
 * call, in Q30; sum exact in int64; r = 1/sum as a dyadic (31 bits); p = e r is an exact int64 at
 * the row's exponent, and one SR for the tensor brings every row to the same int8 exponent.
 * Backward from the saved int8 y: dx = y (dy - sum(dy y)), exact in int64 (y <= 1, so the
 * exponents meet by a left shift), one SR. Elements out have y = 0, hence dx = 0. */
#include "../planner.h"
#include "ops.h"

enum { S_ROWMAX, S_RECIP, S_DOT, S_Z, S_Y, S_KEEP }; /* S_Z, S_Y, S_KEEP: one row each */
enum { R_OUT = 1, R_DX };
enum { MASK_KEEPS_NONZERO = 1 };
#define MAX_LEN (1u << 24) /* a row's sum of Q30 values stays below 2^54 */

typedef struct sm_shape {
    size_t outer, len, inner, numel; /* X per sample: [outer, len, inner] around the axis */
    uint32_t axis, rank;
    uint32_t dims[IE_MAX_RANK];
    size_t mstride[IE_MAX_RANK];     /* the mask's stride along each of X's axes (0: broadcast) */
    size_t mask_numel;               /* per sample for an activation mask, 0 for a constant */
    int has_mask;
} sm_shape;

static sm_shape shape_of(const ie_model *m, const ie_node_desc *nd) {
    const ie_tensor_desc *x = &m->tensors[nd->in[0]];
    sm_shape s = {1, 1, 1, x->numel, (uint32_t)nd->attrs[0], x->rank, {0}, {0}, 0, nd->n_in > 1};
    for (uint32_t a = 0; a < x->rank; a++) {
        s.dims[a] = x->dims[a];
        if (a < s.axis) s.outer *= x->dims[a];
        else if (a == s.axis) s.len = x->dims[a];
        else s.inner *= x->dims[a];
    }
    if (!s.has_mask) return s;
    const ie_tensor_desc *mk = &m->tensors[nd->in[1]];
    size_t stride = 1;
    for (int j = (int)mk->rank - 1; j >= 0; j--) {
        uint32_t a = (uint32_t)nd->attrs[1] + (uint32_t)j;
        if (a < x->rank) s.mstride[a] = mk->dims[j] == 1 ? 0 : stride;
        stride *= mk->dims[j];
    }
    s.mask_numel = mk->kind == IE_KIND_PARAM ? 0 : mk->numel;
    return s;
}

static ie_status sm_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    ie_status st = ie_check_along_axis(m, nd, err);
    if (st != IE_OK) return st;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]];
    if (x->dims[nd->attrs[0]] > MAX_LEN) { ie_set_err(err, "more than 2^24 elements along the axis"); return IE_ERR_UNSUPPORTED; }
    if (nd->attrs[2] & ~MASK_KEEPS_NONZERO) { ie_set_err(err, "unknown mask flags"); return IE_ERR_FORMAT; }
    if (nd->n_in < 2) return IE_OK;
    const ie_tensor_desc *mk = &m->tensors[nd->in[1]];
    if (mk->kind == IE_KIND_PARAM && !mk->state) { ie_set_err(err, "a constant mask must be marked as state"); return IE_ERR_FORMAT; }
    if (nd->attrs[1] < 0 || (uint32_t)nd->attrs[1] + mk->rank > x->rank) {
        ie_set_err(err, "the mask's %u axes do not fit from axis %" PRId32 " of the input's %u", (unsigned)mk->rank,
                   nd->attrs[1], (unsigned)x->rank);
        return IE_ERR_FORMAT;
    }
    for (uint32_t j = 0; j < mk->rank; j++)
        if (mk->dims[j] != 1 && mk->dims[j] != x->dims[nd->attrs[1] + j]) {
            ie_set_err(err, "mask axis %" PRIu32 " (%" PRIu32 ") does not broadcast to the input's %" PRIu32, j, mk->dims[j],
                       x->dims[nd->attrs[1] + j]);
            return IE_ERR_FORMAT;
        }
    return IE_OK;
}

static void sm_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    sm_shape sh = shape_of(m, nd);
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    uint64_t rows = IE_SIZE(ie_plan_batch(p), sh.outer, sh.inner);
    int bwd = ie_plan_requires_grad(p, nd->out[0]);
    ie_plan_node_scratch(p, node, S_ROWMAX, IE_SIZE(rows, sizeof(int32_t)), F, F);
    ie_plan_node_scratch(p, node, S_RECIP, IE_SIZE(rows, sizeof(ie_dyadic)), F, F);
    for (uint32_t k = S_Z; k <= S_KEEP; k++) ie_plan_node_scratch(p, node, k, sh.len, F, bwd ? B : F);
    if (!bwd) return;
    ie_plan_keep(p, nd->out[0], B);
    ie_plan_node_scratch(p, node, S_DOT, IE_SIZE(rows, sizeof(int64_t)), B, B);
}

/* Where row `row` (over the batch) starts in X and in the mask, and the mask's step along it. */
typedef struct sm_row {
    size_t base, mbase, mstep;
} sm_row;

static sm_row row_at(const sm_shape *sh, size_t row) {
    size_t per = sh->outer * sh->inner, sample = row / per, rem = row % per;
    size_t first = rem / sh->inner * sh->len * sh->inner + rem % sh->inner; /* per-sample index of element 0 */
    sm_row r = {sample * sh->numel + first, sample * sh->mask_numel, sh->mstride[sh->axis]};
    for (int a = (int)sh->rank - 1; a >= 0; a--) { /* the mask's offset from the element's coordinates */
        r.mbase += first % sh->dims[a] * sh->mstride[a];
        first /= sh->dims[a];
    }
    return r;
}

/* A row of an int8 tensor as a contiguous array: in place along the last axis, else gathered
 * into tmp (inner > 1); put_row writes such a row back. */
static const int8_t *get_row(const int8_t *t, const sm_shape *sh, sm_row r, int8_t *tmp) {
    if (sh->inner == 1) return t + r.base;
    for (size_t j = 0; j < sh->len; j++) tmp[j] = t[r.base + j * sh->inner];
    return tmp;
}

static void put_row(int8_t *t, const sm_shape *sh, sm_row r, const int8_t *row) {
    for (size_t j = 0; sh->inner > 1 && j < sh->len; j++) t[r.base + j * sh->inner] = row[j];
}

/* The row's in (1) / out (0) bytes from the node's mask, into keep; NULL when there is no mask
 * (all ones in size-optimized builds, which leave out the loops without a mask).
 * The mask is int8 data (an activation) or int32 masters (a constant). */
static const uint8_t *get_keep(const ie_session *s, const ie_node_desc *nd, sm_row r, size_t len, uint8_t *keep) {
    if (nd->n_in < 2) { /* no mask: every element in (the loops below have a faster form for it) */
        for (size_t j = 0; !IE_FAST_PATHS && j < len; j++) keep[j] = 1;
        return IE_FAST_PATHS ? NULL : keep;
    }
    const ie_tensor_desc *t = &s->model->tensors[nd->in[1]];
    uint8_t nonzero_in = (nd->attrs[2] & MASK_KEEPS_NONZERO) != 0;
    if (t->kind == IE_KIND_PARAM) {
        const int32_t *w = s->params[t->param].w + r.mbase;
        for (size_t j = 0; j < len; j++) keep[j] = (w[j * r.mstep] != 0) == nonzero_in;
    } else {
        const int8_t *q = s->values[nd->in[1]].q + r.mbase;
        for (size_t j = 0; j < len; j++) keep[j] = (q[j * r.mstep] != 0) == nonzero_in;
    }
    return keep;
}

/* The largest logit kept (INT32_MIN if none) and the sum of e2[zmax - z] over those kept. */
IE_HOT static int32_t row_stats(const int64_t *restrict e2, const int8_t *restrict z, const uint8_t *restrict keep,
                                size_t len, int64_t *sum) {
    int32_t zmax = INT32_MIN;
    int64_t acc = 0;
    if (IE_FAST_PATHS && !keep) {
        int8_t m = INT8_MIN;
        for (size_t j = 0; j < len; j++) m = z[j] > m ? z[j] : m;
        for (size_t j = 0; j < len; j++) acc += e2[m - z[j]];
        zmax = m;
    } else {
        for (size_t j = 0; j < len; j++) zmax = keep[j] && z[j] > zmax ? z[j] : zmax;
        for (size_t j = 0; j < len && zmax != INT32_MIN; j++) acc += keep[j] ? e2[zmax - z[j]] : 0;
    }
    *sum = acc;
    return zmax;
}

/* p = e2[zmax - z] rm (0 where out) rounded at the row's shift; draws from index base + j. */
IE_HOT static void row_probs(const int64_t *restrict e2, const int8_t *restrict z, const uint8_t *restrict keep,
                             size_t len, int32_t zmax, int32_t rm, int shift, ie_rounder r, size_t base,
                             int8_t *restrict y) {
    if (IE_FAST_PATHS && !keep) IE_ROUND_EACH(len, j, e2[zmax - z[j]] * rm, r, y, shift, base);
    else IE_ROUND_EACH(len, j, keep[j] ? e2[zmax - z[j]] * rm : 0, r, y, shift, base);
}

static void sm_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    sm_shape sh = shape_of(s->model, nd);
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    void **sc = s->nodes[node].scratch;
    int32_t *rowmax = sc[S_ROWMAX];
    ie_dyadic *recip = sc[S_RECIP], one = {1, 0};
    int8_t *zbuf = sc[S_Z], *ybuf = sc[S_Y];
    size_t rows = s->n * sh.outer * sh.inner, len = sh.len;
    int64_t e2[255]; /* e^-(gap 2^ez) in Q30 for every int8 gap */
    for (int gap = 0; gap < 255; gap++) e2[gap] = ie_exp2_neg_q16(ie_gap_log2e_q16(gap, x->e));
    /* per row: max and 1/sum; a row's largest probability is 2^30 r (gap 0), its top bit r's */
    int32_t top = INT32_MIN;
    for (size_t row = 0; row < rows; row++) {
        sm_row r = row_at(&sh, row);
        int64_t sum;
        rowmax[row] = row_stats(e2, get_row(x->q, &sh, r, zbuf), get_keep(s, nd, r, len, sc[S_KEEP]), len, &sum);
        recip[row] = ie_dy_div(one, ie_dy_norm(sum, -30)); /* 0 for a row with every element out */
        if (ie_dy_top(recip[row]) > top) top = ie_dy_top(recip[row]);
    }
    int32_t ey = top == INT32_MIN ? -7 : top - 7;
    ie_rounder rnd = ie_session_rounder(s, ie_node_stream(node, R_OUT));
    for (size_t row = 0; row < rows; row++) {
        sm_row r = row_at(&sh, row);
        int8_t *yr = sh.inner == 1 ? y->q + r.base : ybuf;
        if (!recip[row].m) {
            for (size_t j = 0; j < len; j++) yr[j] = 0;
        } else {
            int shift = ey - (recip[row].e - 30); /* p = e2 r.m at exponent r.e - 30 */
            row_probs(e2, get_row(x->q, &sh, r, zbuf), get_keep(s, nd, r, len, sc[S_KEEP]), len, rowmax[row],
                      recip[row].m, shift, rnd, row * len, yr);
        }
        put_row(y->q, &sh, r, yr);
    }
    y->e = ey;
}

/* dx = y (dy - sum(dy y)) at exponent edy + 2 ey: dy 2^-ey meets sum(dy y) by a left shift (y's
 * exponent is at most -6: probabilities are at most 1; at least -32: some row's max is >= 2^-24). */
#define DX_VALUE(j) ((int64_t)y[j] * (dy[j] * ((int64_t)1 << lsh) - dot))

/* sum(dy y) over a row, and max |dx| (before rounding) over it. */
IE_HOT static uint64_t row_dot_max(const int8_t *restrict y, const int8_t *restrict dy, size_t len, int lsh,
                                   int64_t *dot_out) {
    int64_t dot = 0;
    for (size_t j = 0; j < len; j++) dot += y[j] * dy[j];
    uint64_t max = 0;
    for (size_t j = 0; j < len; j++) {
        uint64_t a = ie_abs64(DX_VALUE(j));
        max = a > max ? a : max;
    }
    *dot_out = dot;
    return max;
}

IE_HOT static void row_dx(const int8_t *restrict y, const int8_t *restrict dy, size_t len, int lsh, int64_t dot,
                          int shift, ie_rounder r, size_t base, int8_t *restrict dx) {
    IE_ROUND_EACH(len, j, DX_VALUE(j), r, dx, shift, base);
}
#undef DX_VALUE

static void sm_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    sm_shape sh = shape_of(s->model, nd);
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    void **sc = s->nodes[node].scratch;
    if (sh.has_mask && s->values[nd->in[1]].requires_grad) { /* a mask has no gradient */
        ie_value *mv = &s->values[nd->in[1]];
        for (size_t i = 0; i < s->n * sh.mask_numel; i++) mv->g[i] = 0;
        mv->ge = y->ge;
    }
    if (!x->requires_grad) return;
    int64_t *dot = sc[S_DOT];
    int8_t *ybuf = sc[S_Y], *dybuf = sc[S_Z];
    size_t rows = s->n * sh.outer * sh.inner, len = sh.len;
    int lsh = -y->e; /* the forward left y->e in [-32, -6] */
    uint64_t max = 0;
    for (size_t row = 0; row < rows; row++) {
        sm_row r = row_at(&sh, row);
        uint64_t m = row_dot_max(get_row(y->q, &sh, r, ybuf), get_row(y->g, &sh, r, dybuf), len, lsh, &dot[row]);
        max = m > max ? m : max;
    }
    int shift = ie_requant_shift(max, 7);
    ie_rounder rnd = ie_session_rounder(s, ie_node_stream(node, R_DX));
    for (size_t row = 0; row < rows; row++) {
        sm_row r = row_at(&sh, row);
        const int8_t *yr = get_row(y->q, &sh, r, ybuf), *dyr = get_row(y->g, &sh, r, dybuf);
        int8_t *dxr = sh.inner == 1 ? x->g + r.base : sc[S_KEEP]; /* the forward's keep bytes are free */
        row_dx(yr, dyr, len, lsh, dot[row], shift, rnd, row * len, dxr);
        put_row(x->g, &sh, r, dxr);
    }
    x->ge = y->ge + y->e - lsh + shift;
}

const ie_op_def ie_op_softmax = {"Softmax", 1, 2, 1, sm_check, sm_plan, sm_forward, sm_backward};
