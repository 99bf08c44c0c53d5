/* MaxPool and AveragePool over [C, H, W] (GlobalAveragePool is an AveragePool whose window is
 * the whole plane). attrs: 0 kh, 1 kw, 2 stride h, 3 stride w, 4 dilation h, 5 dilation w,
 * 6 pad top, 7 pad left, 8 pad bottom, 9 pad right, 10 count_include_pad (AveragePool). */
#include <string.h>

#include "../planner.h"
#include "ops.h"

enum { S_ACC, S_GRAD_ACC };
enum { R_OUT = 1, R_DX };

typedef struct pool_geom {
    uint32_t kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, include_pad;
    uint32_t c, h, w, ho, wo;
} pool_geom;

static pool_geom geometry(const ie_model *m, const ie_node_desc *nd) {
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    pool_geom g;
    uint32_t *f[11] = {&g.kh, &g.kw, &g.sh, &g.sw, &g.dh, &g.dw, &g.pt, &g.pl, &g.pb, &g.pr, &g.include_pad};
    for (int i = 0; i < 11; i++) *f[i] = (uint32_t)nd->attrs[i];
    g.c = x->dims[0];
    g.h = x->dims[1];
    g.w = x->dims[2];
    g.ho = y->dims[1];
    g.wo = y->dims[2];
    return g;
}

/* Calls visit(ctx, input index or -1 for padding) for each tap of output (oh, ow) of one plane. */
#define FOR_WINDOW(g, oh, ow, idx, body)                                                          \
    for (uint32_t i_ = 0; i_ < (g).kh; i_++)                                                       \
        for (uint32_t j_ = 0; j_ < (g).kw; j_++) {                                                 \
            int64_t ih_ = (int64_t)(oh) * (g).sh - (g).pt + (int64_t)i_ * (g).dh;                  \
            int64_t iw_ = (int64_t)(ow) * (g).sw - (g).pl + (int64_t)j_ * (g).dw;                  \
            int64_t idx = (ih_ >= 0 && ih_ < (g).h && iw_ >= 0 && iw_ < (g).w) ? ih_ * (g).w + iw_ : -1; \
            body                                                                                   \
        }

static ie_status pool_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (x->kind == IE_KIND_PARAM || x->rank != 3 || y->rank != 3 || x->dims[0] != y->dims[0]) {
        ie_set_err(err, "input and output must be [C, H, W] activations with the same C");
        return IE_ERR_FORMAT;
    }
    for (int i = 0; i < IE_MAX_ATTRS; i++)
        if (nd->attrs[i] < 0 || (i > 10 && nd->attrs[i]) || (i == 10 && nd->attrs[i] > 1)) {
            ie_set_err(err, "attribute %d is out of range", i);
            return IE_ERR_FORMAT;
        }
    pool_geom g = geometry(m, nd);
    if (g.pt >= g.kh || g.pb >= g.kh || g.pl >= g.kw || g.pr >= g.kw) {
        ie_set_err(err, "pads must be smaller than the window");
        return IE_ERR_FORMAT;
    }
    if ((uint64_t)g.kh * g.kw > IE_MAX_REDUCTION) { ie_set_err(err, "window of more than 2^17 taps"); return IE_ERR_UNSUPPORTED; }
    return ie_window_check(g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.pb, g.pr, g.ho, g.wo, err);
}

/* ---- MaxPool: the output is one of the inputs, so no rounding; backward routes dY to the first
 * maximum of each window (recomputed from the saved input). ---- */

/* Windows that tile the input (stride = window, no pads, no dilation), the usual 2 x 2 pooling:
 * every tap is inside, so the walk needs no bounds checks, and a constant window (kh, kw given as
 * literals through the inlined call) unrolls. Forward writes y; backward (dy set) adds each dY
 * to the first maximum of its window in acc: the scan order and tests of the general walk below,
 * so the same bytes. */
static int tiling(const pool_geom *g) {
    return IE_FAST_PATHS && g->sh == g->kh && g->sw == g->kw && g->dh == 1 && g->dw == 1 && !g->pt && !g->pl && !g->pb && !g->pr;
}

static inline __attribute__((always_inline)) void max_tiles(const pool_geom *g, const int8_t *x, size_t planes,
                                                            uint32_t kh, uint32_t kw, const int8_t *dy, int32_t *acc,
                                                            int8_t *y, int8_t *dx) {
    size_t hw = (size_t)g->h * g->w, howo = (size_t)g->ho * g->wo;
    for (size_t pl = 0; pl < planes; pl++)
        for (uint32_t oh = 0; oh < g->ho; oh++)
            for (uint32_t ow = 0; ow < g->wo; ow++) {
                size_t at = pl * hw + (size_t)oh * kh * g->w + (size_t)ow * kw, arg = SIZE_MAX;
                int best = -128;
                for (uint32_t i = 0; i < kh; i++)
                    for (uint32_t j = 0; j < kw; j++)
                        if (x[at + i * g->w + j] > best) {
                            best = x[at + i * g->w + j];
                            arg = at + i * g->w + j;
                        }
                size_t o = pl * howo + (size_t)oh * g->wo + ow;
                if (!dy) y[o] = (int8_t)best;
                else if (arg != SIZE_MAX && dx) dx[arg] = dy[o]; /* windows do not overlap: one dY each */
                else if (arg != SIZE_MAX) acc[arg] += dy[o]; /* none: all -128, like FOR_WINDOW */
            }
}

static void maxpool_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    pool_geom g = geometry(m, nd);
    uint32_t B = ie_pos_bwd(m, node);
    if (!ie_plan_requires_grad(p, nd->in[0])) return;
    ie_plan_keep(p, nd->in[0], B);
    ie_plan_node_scratch(p, node, S_GRAD_ACC, IE_SIZE(ie_plan_batch(p), g.c, g.h, g.w, sizeof(int32_t)), B, B);
}

/* The first largest input of output (oh, ow)'s window in FOR_WINDOW's order: its index, or -1
 * (a window wholly in the padding); *best its value. Windows inside the plane (all but the
 * edges) skip the bounds checks. */
static inline int64_t window_max(const pool_geom *g, const int8_t *xp, uint32_t oh, uint32_t ow, int *best) {
    int64_t h0 = (int64_t)oh * g->sh - g->pt, w0 = (int64_t)ow * g->sw - g->pl, arg = -1;
    int b = -128;
    if (IE_FAST_PATHS && h0 >= 0 && w0 >= 0 && h0 + (int64_t)(g->kh - 1) * g->dh < g->h &&
        w0 + (int64_t)(g->kw - 1) * g->dw < g->w && g->kh == 3 && g->kw == 3 && g->dh == 1 && g->dw == 1) {
        /* ResNet's 3 x 3 stem pool: constant bounds unroll the same scan */
        const int8_t *x0 = xp + h0 * g->w + w0;
        int64_t at = -1;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                int v = x0[i * (int64_t)g->w + j], better = v > b;
                b = better ? v : b;
                at = better ? i * (int64_t)g->w + j : at;
            }
        *best = b;
        return at < 0 ? -1 : h0 * g->w + w0 + at;
    }
    if (IE_FAST_PATHS && h0 >= 0 && w0 >= 0 && h0 + (int64_t)(g->kh - 1) * g->dh < g->h &&
        w0 + (int64_t)(g->kw - 1) * g->dw < g->w) {
        for (uint32_t i = 0; i < g->kh; i++) {
            const int8_t *row = xp + (h0 + (int64_t)i * g->dh) * g->w + w0;
            for (uint32_t j = 0; j < g->kw; j++)
                if (row[j * g->dw] > b) {
                    b = row[j * g->dw];
                    arg = (h0 + (int64_t)i * g->dh) * g->w + w0 + (int64_t)j * g->dw;
                }
        }
    } else {
        FOR_WINDOW(*g, oh, ow, idx, if (idx >= 0 && xp[idx] > b) { b = xp[idx]; arg = idx; })
    }
    *best = b;
    return arg;
}

static void maxpool_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    pool_geom g = geometry(s->model, nd);
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    size_t planes = (size_t)s->n * g.c;
    if (tiling(&g)) {
        if (g.kh == 2 && g.kw == 2) max_tiles(&g, x->q, planes, 2, 2, NULL, NULL, y->q, NULL);
        else max_tiles(&g, x->q, planes, g.kh, g.kw, NULL, NULL, y->q, NULL);
        y->e = x->e;
        return;
    }
    for (size_t pl = 0; pl < planes; pl++) {
        const int8_t *xp = x->q + pl * g.h * g.w;
        int8_t *yp = y->q + pl * g.ho * g.wo;
        for (uint32_t oh = 0; oh < g.ho; oh++)
            for (uint32_t ow = 0; ow < g.wo; ow++) {
                int best;
                window_max(&g, xp, oh, ow, &best);
                yp[oh * g.wo + ow] = (int8_t)best;
            }
    }
    y->e = x->e;
}

/* dX of tiling windows straight in int8: each dY lands on one input pixel, so the int32 sums the
 * general path requantizes are the routed dY values and zeros. When their max has at most 7 bits
 * (no routed -128) that requant is an exact left shift by 7 - bitlen(max), done here in place:
 * the same bytes and exponent without the int32 buffer and its two passes. Returns 0 (dX
 * unfinished) otherwise. */
IE_HOT static int max_tiles_dx(const pool_geom *g, const int8_t *x, size_t planes, const int8_t *dy, int8_t *dx,
                               int32_t *sh) {
    size_t total = planes * g->h * g->w;
    int whole = 2 * g->ho == g->h && 2 * g->wo == g->w; /* no last odd row or column without dY */
    if (!whole || g->kh != 2 || g->kw != 2) memset(dx, 0, total);
    if (g->kh == 2 && g->kw == 2) { /* branch-free: the first maximum above -128 of a, b, c, d gets dY */
        size_t w = g->w, hw = (size_t)g->h * w, wo = g->wo, howo = (size_t)g->ho * wo;
        for (size_t pl = 0; pl < planes; pl++)
            for (size_t oh = 0; oh < g->ho; oh++) {
                const int8_t *restrict x0 = x + pl * hw + 2 * oh * w, *restrict x1 = x0 + w;
                const int8_t *restrict dyr = dy + pl * howo + oh * wo;
                int8_t *restrict d0 = dx + pl * hw + 2 * oh * w, *restrict d1 = d0 + w;
                for (size_t ow = 0; ow < wo; ow++) {
                    int a = x0[2 * ow], b = x0[2 * ow + 1], c = x1[2 * ow], d = x1[2 * ow + 1], v = dyr[ow];
                    int sa = (a >= b) & (a >= c) & (a >= d) & (a > -128), sb = (b > a) & (b >= c) & (b >= d);
                    int sc = (c > a) & (c > b) & (c >= d), sd = (d > a) & (d > b) & (d > c);
                    d0[2 * ow] = (int8_t)(sa ? v : 0);
                    d0[2 * ow + 1] = (int8_t)(sb ? v : 0);
                    d1[2 * ow] = (int8_t)(sc ? v : 0);
                    d1[2 * ow + 1] = (int8_t)(sd ? v : 0);
                }
            }
    } else
        max_tiles(g, x, planes, g->kh, g->kw, dy, NULL, NULL, dx);
    int lo = 0, hi = 0;
    for (size_t i = 0; i < total; i++) {
        lo = dx[i] < lo ? dx[i] : lo;
        hi = dx[i] > hi ? dx[i] : hi;
    }
    int s = ie_requant_shift((uint64_t)(-lo > hi ? -lo : hi), 7);
    if (s > 0) return 0;
    for (size_t i = 0; s < 0 && i < total; i++) dx[i] = (int8_t)(dx[i] * (1 << -s));
    *sh = s;
    return 1;
}

static void maxpool_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    pool_geom g = geometry(s->model, nd);
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (!x->requires_grad) return;
    size_t planes = (size_t)s->n * g.c;
    int32_t sh;
    if (tiling(&g) && max_tiles_dx(&g, x->q, planes, y->g, x->g, &sh)) {
        x->ge = y->ge + sh;
        return;
    }
    int32_t *acc = s->nodes[node].scratch[S_GRAD_ACC];
    memset(acc, 0, sizeof(int32_t) * planes * g.h * g.w);
    if (tiling(&g) && g.kh == 2 && g.kw == 2) max_tiles(&g, x->q, planes, 2, 2, y->g, acc, NULL, NULL);
    else if (tiling(&g)) max_tiles(&g, x->q, planes, g.kh, g.kw, y->g, acc, NULL, NULL);
    for (size_t pl = 0; !tiling(&g) && pl < planes; pl++) {
        const int8_t *xp = x->q + pl * g.h * g.w, *dyp = y->g + pl * g.ho * g.wo;
        int32_t *ap = acc + pl * g.h * g.w;
        for (uint32_t oh = 0; oh < g.ho; oh++)
            for (uint32_t ow = 0; ow < g.wo; ow++) {
                int best;
                int64_t arg = window_max(&g, xp, oh, ow, &best);
                if (arg >= 0) ap[arg] += dyp[oh * g.wo + ow];
            }
    }
    /* without overlapping windows the sums are the dY values themselves: the requant is exact */
    x->ge = y->ge + ie_requant_acc(&s->ex, acc, planes * g.h * g.w, ie_session_rounder(s, ie_node_stream(node, R_DX)), x->g);
}

const ie_op_def ie_op_maxpool = {"MaxPool", 1, 1, 1, pool_check, maxpool_plan, maxpool_forward, maxpool_backward};

/* ---- AveragePool: window sums times round(2^30 / count), exact in int64, one requant each way. ---- */

static int64_t recip_q30(uint32_t count) { return (((int64_t)1 << 31) / count + 1) >> 1; }

static uint32_t window_count(const pool_geom *g, uint32_t oh, uint32_t ow) {
    if (g->include_pad) { /* ONNX counts the pads but not the part of the window past them */
        uint32_t n = 0;
        for (uint32_t i = 0; i < g->kh; i++)
            for (uint32_t j = 0; j < g->kw; j++) {
                int64_t ih = (int64_t)oh * g->sh - g->pt + (int64_t)i * g->dh;
                int64_t iw = (int64_t)ow * g->sw - g->pl + (int64_t)j * g->dw;
                n += ih < (int64_t)g->h + g->pb && iw < (int64_t)g->w + g->pr;
            }
        return n;
    }
    uint32_t n = 0;
    FOR_WINDOW(*g, oh, ow, idx, n += idx >= 0;)
    return n;
}

static void avgpool_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    pool_geom g = geometry(m, nd);
    uint32_t n = ie_plan_batch(p), F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    ie_plan_node_scratch(p, node, S_ACC, IE_SIZE(n, g.c, g.ho, g.wo, sizeof(int64_t)), F, F);
    if (ie_plan_requires_grad(p, nd->in[0]))
        ie_plan_node_scratch(p, node, S_GRAD_ACC, IE_SIZE(n, g.c, g.h, g.w, sizeof(int64_t)), B, B);
}

static void avgpool_forward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    pool_geom g = geometry(s->model, nd);
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    int64_t *acc = s->nodes[node].scratch[S_ACC];
    size_t planes = (size_t)s->n * g.c;
    for (size_t pl = 0; pl < planes; pl++)
        for (uint32_t oh = 0; oh < g.ho; oh++)
            for (uint32_t ow = 0; ow < g.wo; ow++) {
                const int8_t *xp = x->q + pl * g.h * g.w;
                int64_t sum = 0;
                FOR_WINDOW(g, oh, ow, idx, if (idx >= 0) sum += xp[idx];)
                acc[(pl * g.ho + oh) * g.wo + ow] = sum * recip_q30(window_count(&g, oh, ow));
            }
    y->e = x->e - 30 + ie_requant_s64_s8(acc, planes * g.ho * g.wo, ie_session_rounder(s, ie_node_stream(node, R_OUT)), y->q);
}

static void avgpool_backward(ie_session *s, uint32_t node) {
    const ie_node_desc *nd = &s->model->nodes[node];
    pool_geom g = geometry(s->model, nd);
    ie_value *x = &s->values[nd->in[0]], *y = &s->values[nd->out[0]];
    if (!x->requires_grad) return;
    int64_t *acc = s->nodes[node].scratch[S_GRAD_ACC];
    size_t planes = (size_t)s->n * g.c;
    memset(acc, 0, sizeof(int64_t) * planes * g.h * g.w);
    for (size_t pl = 0; pl < planes; pl++)
        for (uint32_t oh = 0; oh < g.ho; oh++)
            for (uint32_t ow = 0; ow < g.wo; ow++) {
                int64_t share = y->g[(pl * g.ho + oh) * g.wo + ow] * recip_q30(window_count(&g, oh, ow));
                int64_t *ap = acc + pl * g.h * g.w;
                FOR_WINDOW(g, oh, ow, idx, if (idx >= 0) ap[idx] += share;)
            }
    x->ge = y->ge - 30 + ie_requant_s64_s8(acc, planes * g.h * g.w, ie_session_rounder(s, ie_node_stream(node, R_DX)), x->g);
}

const ie_op_def ie_op_avgpool = {"AveragePool", 1, 1, 1, pool_check, avgpool_plan, avgpool_forward, avgpool_backward};
