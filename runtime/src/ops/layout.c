/* Ops that move data: Concat, Slice, Transpose, Pad (zeros), Resize (rational scales), Dropout
 * and ParamBroadcast. Most are exact: Concat rounds only when its inputs' exponents differ,
 * nearest Resize's backward sums the copies of each input, Dropout scales by 1/(1-p),
 * ParamBroadcast's parameter gradient is the exact sum of dY over the batch; bilinear Resize
 * rounds each way (below). Axes and shapes are per sample: the batch never moves. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

static size_t prod(const uint32_t *d, uint32_t from, uint32_t to) {
    size_t p = 1;
    for (uint32_t i = from; i < to; i++) p *= d[i];
    return p;
}

static ie_status no_param_inputs(const ie_model *m, const ie_node_desc *nd, char *err) {
    for (uint32_t k = 0; k < nd->n_in; k++)
        if (m->tensors[nd->in[k]].kind == IE_KIND_PARAM) {
            ie_set_err(err, "inputs must be activations");
            return IE_ERR_FORMAT;
        }
    return IE_OK;
}

static void nothing_to_plan(ie_planner *p, uint32_t node) { (void)p; (void)node; }

/* ---- Concat: attrs[0] = per-sample axis ---- */

static ie_status concat_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    if (no_param_inputs(m, nd, err) != IE_OK) return IE_ERR_FORMAT;
    const ie_tensor_desc *y = &m->tensors[nd->out[0]];
    uint32_t axis = (uint32_t)nd->attrs[0], total = 0;
    if (nd->attrs[0] < 0 || axis >= y->rank) { ie_set_err(err, "axis out of range"); return IE_ERR_FORMAT; }
    for (uint32_t k = 0; k < nd->n_in; k++) {
        const ie_tensor_desc *x = &m->tensors[nd->in[k]];
        if (x->rank != y->rank) { ie_set_err(err, "inputs must have the output's rank"); return IE_ERR_FORMAT; }
        for (uint32_t d = 0; d < y->rank; d++)
            if (d != axis && x->dims[d] != y->dims[d]) {
                ie_set_err(err, "input %" PRIu32 "'s shape does not fit", k);
                return IE_ERR_FORMAT;
            }
        total += x->dims[axis];
    }
    if (total != y->dims[axis]) { ie_set_err(err, "inputs do not add up to the output along the axis"); return IE_ERR_FORMAT; }
    return IE_OK;
}

static void concat_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *yt = &s->model->tensors[nd->out[0]];
    ie_value *y = &s->values[nd->out[0]];
    uint32_t axis = (uint32_t)nd->attrs[0];
    size_t outer = (size_t)s->n * prod(yt->dims, 0, axis), inner = prod(yt->dims, axis + 1, yt->rank);
    int32_t lo = s->values[nd->in[0]].e, hi = lo;
    for (uint32_t k = 1; k < nd->n_in; k++) {
        int32_t e = s->values[nd->in[k]].e;
        lo = e < lo ? e : lo;
        hi = e > hi ? e : hi;
    }
    int32_t e_c = hi - 40 > lo ? hi - 40 : lo;
    ie_rounder align = ie_session_rounder(s, ie_node_stream(node, 9)), r = ie_session_rounder(s, ie_node_stream(node, 1));
    /* pass 0 finds the max at the common exponent, pass 1 writes (identity when all exponents agree) */
    uint64_t max = 0;
    int sh = 0;
    for (int pass = 0; pass < 2; pass++) {
        size_t row = 0;
        for (size_t o = 0; o < outer; o++)
            for (uint32_t k = 0; k < nd->n_in; k++) {
                const ie_value *x = &s->values[nd->in[k]];
                size_t len = s->model->tensors[nd->in[k]].dims[axis] * inner, base = o * len;
                for (size_t i = 0; i < len; i++, row++) {
                    int64_t v = ie_shift_round(x->q[base + i], e_c - x->e, ie_draw(align, (uint32_t)row));
                    if (pass == 0) {
                        if (ie_abs64(v) > max) max = ie_abs64(v);
                    } else {
                        y->q[row] = (int8_t)ie_clamp64(ie_shift_round(v, sh, ie_draw(r, (uint32_t)row)), 127);
                    }
                }
            }
        if (pass == 0) sh = lo == hi ? 0 : ie_requant_shift(max, 7);
    }
    y->e = e_c + sh;
}

static void concat_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *yt = &s->model->tensors[nd->out[0]];
    ie_value *y = &s->values[nd->out[0]];
    uint32_t axis = (uint32_t)nd->attrs[0];
    size_t outer = (size_t)s->n * prod(yt->dims, 0, axis), inner = prod(yt->dims, axis + 1, yt->rank), row = 0;
    for (size_t o = 0; o < outer; o++)
        for (uint32_t k = 0; k < nd->n_in; k++) {
            ie_value *x = &s->values[nd->in[k]];
            size_t len = s->model->tensors[nd->in[k]].dims[axis] * inner;
            if (x->requires_grad) memcpy(x->g + o * len, y->g + row, len);
            row += len;
        }
    for (uint32_t k = 0; k < nd->n_in; k++) s->values[nd->in[k]].ge = y->ge;
}

const ie_op_def ie_op_concat = {"Concat", 1, IE_MAX_INPUTS, 1, concat_check, nothing_to_plan, concat_forward, concat_backward};

/* ---- Slice: Y = X[..., start : start + Y's length, ...] along per-sample axis attrs[0] from
 * attrs[1], step 1 (ONNX Slice, Split, Gather of one index; the qkv projection's thirds). The
 * backward writes dY into its window of dX and zeros elsewhere: exact. ---- */

static ie_status slice_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    if (no_param_inputs(m, nd, err) != IE_OK) return IE_ERR_FORMAT;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    uint32_t axis = (uint32_t)nd->attrs[0];
    if (nd->attrs[0] < 0 || axis >= x->rank || x->rank != y->rank) { ie_set_err(err, "axis or rank out of range"); return IE_ERR_FORMAT; }
    for (uint32_t d = 0; d < x->rank; d++)
        if (d != axis && x->dims[d] != y->dims[d]) { ie_set_err(err, "output shape differs off the axis"); return IE_ERR_FORMAT; }
    if (nd->attrs[1] < 0 || (uint64_t)(uint32_t)nd->attrs[1] + y->dims[axis] > x->dims[axis]) {
        ie_set_err(err, "the window [%" PRId32 ", +%" PRIu32 ") leaves the axis of %" PRIu32, nd->attrs[1], y->dims[axis], x->dims[axis]);
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

static void slice_run(ie_session *s, uint32_t node, int backward) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *xt = &s->model->tensors[nd->in[0]], *yt = &s->model->tensors[nd->out[0]];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (backward && !x->requires_grad) return;
    uint32_t axis = (uint32_t)nd->attrs[0];
    size_t outer = (size_t)s->n * prod(xt->dims, 0, axis), inner = prod(xt->dims, axis + 1, xt->rank);
    size_t xlen = xt->dims[axis] * inner, ylen = yt->dims[axis] * inner, start = (size_t)nd->attrs[1] * inner;
    if (backward) memset(x->g, 0, outer * xlen);
    for (size_t o = 0; o < outer; o++) {
        if (backward) memcpy(x->g + o * xlen + start, y->g + o * ylen, ylen);
        else memcpy(y->q + o * ylen, x->q + o * xlen + start, ylen);
    }
    if (backward) x->ge = y->ge;
    else y->e = x->e;
}

static void slice_forward(ie_session *s, uint32_t node) { slice_run(s, node, 0); }
static void slice_backward(ie_session *s, uint32_t node) { slice_run(s, node, 1); }

const ie_op_def ie_op_slice = {"Slice", 1, 1, 1, slice_check, nothing_to_plan, slice_forward, slice_backward};

/* ---- Transpose: attrs[0..rank-1] = per-sample permutation ---- */

static ie_status transpose_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    if (no_param_inputs(m, nd, err) != IE_OK) return IE_ERR_FORMAT;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    uint32_t seen = 0;
    if (x->rank != y->rank) { ie_set_err(err, "rank differs"); return IE_ERR_FORMAT; }
    for (uint32_t d = 0; d < x->rank; d++) {
        int32_t p = nd->attrs[d];
        if (p < 0 || (uint32_t)p >= x->rank || (seen >> p) & 1) { ie_set_err(err, "not a permutation"); return IE_ERR_FORMAT; }
        seen |= 1u << p;
        if (y->dims[d] != x->dims[p]) { ie_set_err(err, "output shape does not match the permutation"); return IE_ERR_FORMAT; }
    }
    return IE_OK;
}

/* Input offset of output element o (within a sample). */
static size_t transposed(const ie_tensor_desc *x, const ie_node_desc *nd, const ie_tensor_desc *y, size_t o) {
    size_t stride[IE_MAX_RANK], idx = 0;
    for (int d = (int)x->rank - 1; d >= 0; d--) stride[d] = d == (int)x->rank - 1 ? 1 : stride[d + 1] * x->dims[d + 1];
    for (int d = (int)y->rank - 1; d >= 0; d--) {
        idx += (o % y->dims[d]) * stride[nd->attrs[d]];
        o /= y->dims[d];
    }
    return idx;
}

static void transpose_run(ie_session *s, uint32_t node, int backward) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *xt = &s->model->tensors[nd->in[0]], *yt = &s->model->tensors[nd->out[0]];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (backward && !x->requires_grad) return;
    size_t per = xt->numel;
    for (size_t b = 0; b < s->n; b++)
        for (size_t o = 0; o < per; o++) {
            size_t i = b * per + transposed(xt, nd, yt, o);
            if (backward) x->g[i] = y->g[b * per + o];
            else y->q[b * per + o] = x->q[i];
        }
    if (backward) x->ge = y->ge;
    else y->e = x->e;
}

static void transpose_forward(ie_session *s, uint32_t node) { transpose_run(s, node, 0); }
static void transpose_backward(ie_session *s, uint32_t node) { transpose_run(s, node, 1); }

const ie_op_def ie_op_transpose = {"Transpose", 1, 1, 1, transpose_check, nothing_to_plan, transpose_forward, transpose_backward};

/* ---- Pad (constant 0): attrs[d] = pad before axis d, attrs[6 + d] = pad after ---- */

static ie_status pad_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    if (no_param_inputs(m, nd, err) != IE_OK) return IE_ERR_FORMAT;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (x->rank != y->rank) { ie_set_err(err, "rank differs"); return IE_ERR_FORMAT; }
    for (uint32_t d = 0; d < x->rank; d++)
        if (nd->attrs[d] < 0 || nd->attrs[6 + d] < 0 || nd->attrs[d] > 65536 || nd->attrs[6 + d] > 65536 ||
            y->dims[d] != x->dims[d] + (uint32_t)nd->attrs[d] + (uint32_t)nd->attrs[6 + d]) {
            ie_set_err(err, "pads must be 0..65536 and give the output shape");
            return IE_ERR_FORMAT;
        }
    return IE_OK;
}

/* Output offset of input element i (within a sample). */
static size_t padded(const ie_tensor_desc *x, const ie_tensor_desc *y, const ie_node_desc *nd, size_t i) {
    size_t idx = 0, stride = 1;
    for (int d = (int)x->rank - 1; d >= 0; d--) {
        idx += (i % x->dims[d] + (size_t)nd->attrs[d]) * stride;
        stride *= y->dims[d];
        i /= x->dims[d];
    }
    return idx;
}

static void pad_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *xt = &s->model->tensors[nd->in[0]], *yt = &s->model->tensors[nd->out[0]];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    memset(y->q, 0, (size_t)s->n * yt->numel);
    for (size_t b = 0; b < s->n; b++)
        for (size_t i = 0; i < xt->numel; i++) y->q[b * yt->numel + padded(xt, yt, nd, i)] = x->q[b * xt->numel + i];
    y->e = x->e;
}

static void pad_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *xt = &s->model->tensors[nd->in[0]], *yt = &s->model->tensors[nd->out[0]];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (!x->requires_grad) return;
    for (size_t b = 0; b < s->n; b++)
        for (size_t i = 0; i < xt->numel; i++) x->g[b * xt->numel + i] = y->g[b * yt->numel + padded(xt, yt, nd, i)];
    x->ge = y->ge;
}

const ie_op_def ie_op_pad = {"Pad", 1, 1, 1, pad_check, nothing_to_plan, pad_forward, pad_backward};

/* ---- Resize, [C, H, W] by rational scales P/Q, one an axis. attrs: [0] P_h, [1] P_w, [3] Q_h,
 * [4] Q_w (0 reads as 1: the integer scales of files from before); [2] the mode: nearest, or
 * bilinear with one of the coordinate transforms below; [5] nearest's coordinates (the same
 * numbers, 0 asymmetric: torch's "nearest"), [6] its rounding. The output is floor(n P / Q) an
 * axis. Every source coordinate is an exact rational num / den (den = 2P, P or H_out - 1 by the
 * transform), so a bilinear output is an exact integer sum of its four taps over den_h * den_w,
 * which one stochastic division brings to 8 fractional bits; the requantization then rounds once
 * more. Nearest picks the tap by rounding num / den exactly. The backward scatters dY with the
 * same taps. ---- */

enum {
    RESIZE_NEAREST = 0, RESIZE_HALF_PIXEL = 1, RESIZE_ALIGN_CORNERS = 2, RESIZE_ASYMMETRIC = 3,
    RESIZE_PYTORCH_HALF_PIXEL = 4, RESIZE_TF_HALF_PIXEL_FOR_NN = 5
};
enum { ROUND_FLOOR = 0, ROUND_CEIL = 1, ROUND_PREFER_FLOOR = 2, ROUND_PREFER_CEIL = 3 };
#define RESIZE_MAX_OUT 32768u /* and den <= 2^15: den_h * den_w <= 2^30 keeps the division in uint64 */
#define RESIZE_MAX_PQ 16384
#define RESIZE_FRAC 8

typedef struct resize_axis {
    uint32_t n, out, p, q, den; /* input and output sizes, scale p / q, the coordinates' denominator */
    int32_t coords;
} resize_axis;

typedef struct resize_tap {
    uint32_t i0, i1, w; /* the source is (x[i0] * (den - w) + x[i1] * w) / den */
} resize_tap;

static int32_t resize_coords(const ie_node_desc *nd) {
    if (nd->attrs[2] != RESIZE_NEAREST) return nd->attrs[2];
    return nd->attrs[5] == 0 ? RESIZE_ASYMMETRIC : nd->attrs[5];
}

static uint32_t resize_den(int32_t coords, uint32_t out, uint32_t p) {
    if (coords == RESIZE_ALIGN_CORNERS) return out > 1 ? out - 1 : 1;
    return coords == RESIZE_ASYMMETRIC ? p : 2 * p;
}

/* axis k (0 H, 1 W) of a node whose tensors the check accepted */
static resize_axis resize_axis_of(const ie_node_desc *nd, const ie_tensor_desc *x, const ie_tensor_desc *y, int k) {
    resize_axis a = {x->dims[1 + k], y->dims[1 + k], (uint32_t)nd->attrs[k], nd->attrs[3 + k] ? (uint32_t)nd->attrs[3 + k] : 1, 0,
                     resize_coords(nd)};
    a.den = resize_den(a.coords, a.out, a.p);
    return a;
}

/* output index i's source coordinate times a.den (negative before the first centre) */
static int64_t resize_source(const resize_axis *a, uint32_t i) {
    switch (a->coords) {
    case RESIZE_ALIGN_CORNERS: return (int64_t)i * (a->n - 1);
    case RESIZE_ASYMMETRIC: return (int64_t)i * a->q;
    case RESIZE_TF_HALF_PIXEL_FOR_NN: return (2 * (int64_t)i + 1) * a->q;
    case RESIZE_PYTORCH_HALF_PIXEL:
        if (a->out == 1) return 0;
        break;
    default: break;
    }
    return (2 * (int64_t)i + 1) * a->q - a->p; /* half_pixel: (i + 1/2) / scale - 1/2 */
}

static int64_t floor_div(int64_t a, int64_t b) {
    return a / b - (a % b < 0);
}

static resize_tap resize_at(const resize_axis *a, uint32_t i) {
    int64_t num = resize_source(a, i), last = (int64_t)(a->n - 1) * a->den;
    num = num < 0 ? 0 : num > last ? last : num; /* outside the outer centres: the edge pixel */
    resize_tap t = {(uint32_t)(num / a->den), 0, (uint32_t)(num % a->den)};
    t.i1 = t.i0 + 1 < a->n ? t.i0 + 1 : a->n - 1;
    return t;
}

static uint32_t nearest_at(const resize_axis *a, int32_t rounding, uint32_t i) {
    int64_t num = resize_source(a, i), d = a->den, k;
    if (rounding == ROUND_CEIL) k = floor_div(num + d - 1, d);
    else if (rounding == ROUND_PREFER_FLOOR) k = floor_div(2 * num + d - 1, 2 * d); /* x + 1/2, ties down */
    else if (rounding == ROUND_PREFER_CEIL) k = floor_div(2 * num + d, 2 * d);
    else k = floor_div(num, d);
    return k < 0 ? 0 : k >= a->n ? a->n - 1 : (uint32_t)k;
}

/* a / den rounded by the draw (den < 2^31): up when the remainder's fraction and the draw's reach 1 */
static int32_t resize_div(int64_t a, uint32_t den, uint32_t draw) {
    int64_t q = a / den, r = a % den;
    if (r < 0) { q--; r += den; }
    return (int32_t)(q + (((uint64_t)r << 32) + (uint64_t)draw * den >= ((uint64_t)den << 32)));
}

/* v 2^RESIZE_FRAC / den rounded by draw `at` of r. When den divides 2^RESIZE_FRAC (x 2 and x 4
 * with half_pixel: 16 and 64) the quotient is whole: no division, and no draw to hash. */
static int32_t resize_frac(int64_t v, uint32_t den, ie_rounder r, size_t at) {
    if ((1u << RESIZE_FRAC) % den == 0) return (int32_t)(v * ((1 << RESIZE_FRAC) / den));
    return resize_div(v * (1 << RESIZE_FRAC), den, ie_draw(r, (uint32_t)at));
}

static ie_status resize_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    if (no_param_inputs(m, nd, err) != IE_OK) return IE_ERR_FORMAT;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    int32_t mode = nd->attrs[2], near = nd->attrs[5];
    if (mode < RESIZE_NEAREST || mode > RESIZE_TF_HALF_PIXEL_FOR_NN || near < 0 || near > RESIZE_TF_HALF_PIXEL_FOR_NN ||
        nd->attrs[6] < ROUND_FLOOR || nd->attrs[6] > ROUND_PREFER_CEIL) {
        ie_set_err(err, "unknown resize mode %" PRId32 ", %" PRId32 ", %" PRId32, mode, near, nd->attrs[6]);
        return IE_ERR_FORMAT;
    }
    if (x->rank != 3 || y->rank != 3 || y->dims[0] != x->dims[0]) goto bad;
    for (int k = 0; k < 2; k++) {
        int32_t p = nd->attrs[k], q = nd->attrs[3 + k] ? nd->attrs[3 + k] : 1;
        if (p < 1 || q < 1 || p > RESIZE_MAX_PQ || q > RESIZE_MAX_PQ || p > 64 * q) goto bad;
        uint64_t out = (uint64_t)x->dims[1 + k] * (uint32_t)p / (uint32_t)q;
        if (out < 1 || out > RESIZE_MAX_OUT || y->dims[1 + k] != out) goto bad;
    }
    return IE_OK;
bad:
    ie_set_err(err, "[C, H, W] scaled by P/Q (P, Q 1..16384, at most 64) to floor(n P / Q) in 1..32768 is supported");
    return IE_ERR_FORMAT;
}

static void resize_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    uint32_t B = ie_pos_bwd(m, node), F = ie_pos_fwd(m, node);
    uint64_t n = ie_plan_batch(p), in = IE_SIZE(n, m->tensors[nd->in[0]].numel);
    if (ie_plan_requires_grad(p, nd->in[0])) {
        ie_plan_node_scratch(p, node, 0, IE_SIZE(in, sizeof(int32_t)), B, B);
        if (nd->attrs[2] != RESIZE_NEAREST) ie_plan_node_scratch(p, node, 1, IE_SIZE(in, sizeof(int64_t)), B, B);
    }
    if (nd->attrs[2] != RESIZE_NEAREST)
        ie_plan_node_scratch(p, node, 2, IE_SIZE(n, m->tensors[nd->out[0]].numel, sizeof(int32_t)), F, F);
    ie_plan_node_scratch(p, node, 3, IE_SIZE(m->tensors[nd->out[0]].dims[2], sizeof(resize_tap)), F,
                         ie_plan_requires_grad(p, nd->in[0]) ? B : F);
}

/* The output columns' taps, computed by the forward once for every row and plane (the backward
 * reads them again): bilinear's, or nearest's source column as i0. */
static const resize_tap *column_taps(ie_session *s, uint32_t node, const resize_axis *aw) {
    const ie_node_desc *nd = &s->model->nodes[node];
    resize_tap *t = s->nodes[node].scratch[3];
    for (uint32_t j = 0; j < aw->out; j++)
        t[j] = nd->attrs[2] == RESIZE_NEAREST ? (resize_tap){nearest_at(aw, nd->attrs[6], j), 0, 0} : resize_at(aw, j);
    return t;
}

/* Output pixel (i, j) of a plane from its four taps, times den_h * den_w. */
static int64_t bilinear_sum(const int8_t *x, uint32_t w, resize_tap th, resize_tap tw, uint32_t dh, uint32_t dw) {
    int64_t top = (int64_t)(dw - tw.w) * x[th.i0 * w + tw.i0] + (int64_t)tw.w * x[th.i0 * w + tw.i1];
    int64_t bottom = (int64_t)(dw - tw.w) * x[th.i1 * w + tw.i0] + (int64_t)tw.w * x[th.i1 * w + tw.i1];
    return (dh - th.w) * top + th.w * bottom;
}

static void resize_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *xt = &s->model->tensors[nd->in[0]], *yt = &s->model->tensors[nd->out[0]];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    resize_axis ah = resize_axis_of(nd, xt, yt, 0), aw = resize_axis_of(nd, xt, yt, 1);
    uint32_t H = ah.out, W = aw.out, h = ah.n, w = aw.n;
    size_t planes = (size_t)s->n * yt->dims[0];
    const resize_tap *tw = column_taps(s, node, &aw);
    if (nd->attrs[2] == RESIZE_NEAREST) {
        for (size_t p = 0; p < planes; p++)
            for (uint32_t i = 0; i < H; i++) {
                const int8_t *row = x->q + (p * h + nearest_at(&ah, nd->attrs[6], i)) * w;
                for (uint32_t j = 0; j < W; j++) y->q[(p * H + i) * W + j] = row[tw[j].i0];
            }
        y->e = x->e;
        return;
    }
    int32_t *acc = s->nodes[node].scratch[2];
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, 0));
    for (size_t p = 0; p < planes; p++)
        for (uint32_t i = 0; i < H; i++) {
            resize_tap th = resize_at(&ah, i);
            for (uint32_t j = 0; j < W; j++) {
                size_t at = (p * H + i) * W + j;
                int64_t v = bilinear_sum(x->q + p * h * w, w, th, tw[j], ah.den, aw.den);
                acc[at] = resize_frac(v, ah.den * aw.den, r, at);
            }
        }
    y->e = x->e - RESIZE_FRAC +
           ie_requant_acc(&s->ex, acc, planes * H * W, ie_session_rounder(s, ie_node_stream(node, 1)), y->q);
}

static void resize_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    const ie_tensor_desc *xt = &s->model->tensors[nd->in[0]], *yt = &s->model->tensors[nd->out[0]];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (!x->requires_grad) return;
    resize_axis ah = resize_axis_of(nd, xt, yt, 0), aw = resize_axis_of(nd, xt, yt, 1);
    uint32_t H = ah.out, W = aw.out, h = ah.n, w = aw.n;
    int32_t *acc = s->nodes[node].scratch[0];
    const resize_tap *taps = s->nodes[node].scratch[3]; /* the forward's column_taps */
    size_t planes = (size_t)s->n * yt->dims[0], total = (size_t)s->n * xt->numel;
    int32_t frac = 0;
    if (nd->attrs[2] == RESIZE_NEAREST) { /* at most 65 x 65 copies of 127 an input: int32 */
        memset(acc, 0, sizeof(int32_t) * total);
        for (size_t p = 0; p < planes; p++)
            for (uint32_t i = 0; i < H; i++) {
                int32_t *row = acc + (p * h + nearest_at(&ah, nd->attrs[6], i)) * w;
                for (uint32_t j = 0; j < W; j++) row[taps[j].i0] += y->g[(p * H + i) * W + j];
            }
    } else {
        uint32_t dh = ah.den, dw = aw.den;
        int64_t *sum = s->nodes[node].scratch[1];
        memset(sum, 0, sizeof(int64_t) * total);
        for (size_t p = 0; p < planes; p++)
            for (uint32_t i = 0; i < H; i++) {
                resize_tap th = resize_at(&ah, i);
                for (uint32_t j = 0; j < W; j++) {
                    resize_tap tw = taps[j];
                    int64_t g = y->g[(p * H + i) * W + j], *row0 = sum + (p * h + th.i0) * w, *row1 = sum + (p * h + th.i1) * w;
                    int64_t g0 = g * (dh - th.w), g1 = g * th.w;
                    row0[tw.i0] += g0 * (dw - tw.w);
                    row0[tw.i1] += g0 * tw.w;
                    row1[tw.i0] += g1 * (dw - tw.w);
                    row1[tw.i1] += g1 * tw.w;
                }
            }
        ie_rounder r = ie_session_rounder(s, ie_node_stream(node, 3));
        for (size_t k = 0; k < total; k++) acc[k] = resize_frac(sum[k], dh * dw, r, k);
        frac = RESIZE_FRAC;
    }
    x->ge = y->ge - frac + ie_requant_acc(&s->ex, acc, total, ie_session_rounder(s, ie_node_stream(node, 2)), x->g);
}

const ie_op_def ie_op_resize = {"Resize", 1, 1, 1, resize_check, resize_plan, resize_forward, resize_backward};

/* ---- Dropout: attrs[0] keep threshold (keep if draw < it, as uint32), attrs[1..2] the scale
 * 1/(1-p) as a dyadic. Training draws a counter-based mask (no storage: backward redraws it);
 * evaluation is the identity. ---- */

static ie_status dropout_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    if (no_param_inputs(m, nd, err) != IE_OK) return IE_ERR_FORMAT;
    if (m->tensors[nd->in[0]].numel != m->tensors[nd->out[0]].numel || nd->attrs[1] <= 0 || nd->attrs[2] > 0 ||
        nd->attrs[2] < -62) {
        ie_set_err(err, "shape or scale out of range");
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

static int kept(const ie_session *s, uint32_t node, uint32_t threshold, size_t i) {
    ie_rounder r = ie_session_rounder(s, ie_node_stream(node, 3));
    r.nearest = 0; /* the mask is random in training whatever the rounding mode */
    return ie_draw(r, (uint32_t)i) < threshold;
}

static void dropout_run(ie_session *s, uint32_t node, int backward) {
    const ie_node_desc *nd = &s->model->nodes[node];
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    size_t n = (size_t)s->n * s->model->tensors[nd->in[0]].numel;
    if (backward && !x->requires_grad) return;
    const int8_t *src = backward ? y->g : x->q;
    int8_t *dst = backward ? x->g : y->q;
    int32_t e = backward ? y->ge : x->e;
    if (s->mode == IE_MODE_EVAL) {
        memcpy(dst, src, n);
    } else {
        uint32_t threshold = (uint32_t)nd->attrs[0];
        int64_t m = nd->attrs[1];
        int sh;
        ie_rounder r = ie_session_rounder(s, ie_node_stream(node, backward ? 5 : 4));
        /* a dropped element is the value 0, which rounds to 0 */
        IE_REQUANT_EACH(n, i, kept(s, node, threshold, i) ? src[i] * m : 0, r, dst, sh);
        e += nd->attrs[2] + sh;
    }
    if (backward) x->ge = e;
    else y->e = e;
}

static void dropout_forward(ie_session *s, uint32_t node) { dropout_run(s, node, 0); }
static void dropout_backward(ie_session *s, uint32_t node) { dropout_run(s, node, 1); }

const ie_op_def ie_op_dropout = {"Dropout", 1, 1, 1, dropout_check, nothing_to_plan, dropout_forward, dropout_backward};

/* ---- ParamBroadcast: Y[n] = P for every sample n (ONNX Expand of an initializer over the batch:
 * a class token). The forward writes the parameter's int8 view (SR, like any weight's) into the
 * first sample and copies it to the others; the backward sums dY over the batch, exactly, for the
 * optimizer. ---- */

static ie_status param_broadcast_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *p = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (p->kind != IE_KIND_PARAM || p->numel != y->numel) {
        ie_set_err(err, "the input must be a parameter of the output's per-sample size");
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

static void param_broadcast_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    uint32_t B = ie_pos_bwd(m, node), numel = m->tensors[nd->in[0]].numel;
    if (!ie_plan_param_trainable(p, nd->in[0])) return; /* frozen: a copy, nothing for backward */
    ie_plan_param_buffer(p, nd->in[0], IE_BUF_PARAM_GRAD, IE_SIZE(numel, sizeof(int64_t)), B, B);
}

static void param_broadcast_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    uint32_t pi = s->model->tensors[nd->in[0]].param;
    ie_value *y = &s->values[nd->out[0]];
    size_t numel = s->params[pi].numel;
    ie_param_quantize(s, pi, y->q, 0, s->model->tensors[nd->in[0]].state); /* a constant: nearest */
    for (size_t b = 1; b < s->n; b++) memcpy(y->q + b * numel, y->q, numel);
    y->e = s->params[pi].e8;
}

static void param_broadcast_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    uint32_t pi = s->model->tensors[nd->in[0]].param;
    ie_param *p = &s->params[pi];
    const ie_value *y = &s->values[nd->out[0]];
    if (!p->trainable) return;
    int64_t *g = p->grad;
    memset(g, 0, sizeof(int64_t) * p->numel);
    for (size_t b = 0; b < s->n; b++) {
        const int8_t *dy = y->g + b * p->numel;
        for (size_t i = 0; i < p->numel; i++) g[i] += dy[i];
    }
    p->grad_e = y->ge;
    ie_optim_step(s, pi);
}

const ie_op_def ie_op_param_broadcast = {"ParamBroadcast", 1, 1, 1, param_broadcast_check, param_broadcast_plan,
                                         param_broadcast_forward, param_broadcast_backward};
