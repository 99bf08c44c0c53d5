/* Conv (2-D, NCHW): Y = conv(X, W) + B with groups (depthwise included), stride, dilation and
 * explicit asymmetric pads. Through a reduction-major im2col (col[K, HoWo]: one row per kernel
 * tap, the layout the reduction-major GEMM and dW's long reduction both read) the three training
 * GEMMs are the packed int8 kernels, with no transposes of activations:
 *   forward  Y_g[Cout_g, HoWo]  = W_g[Cout_g, K] . col[K, HoWo]            (reduction-major)
 *   dX       dcol[K, HoWo]      = W_g^T[K, Cout_g] . dY_g[Cout_g, HoWo]    (reduction-major), col2im;
 *            for stride-1 'same' convolutions, a convolution of dY instead (dx_by_conv)
 *   dW       dW_g[Cout_g, K]   += dY_g[Cout_g, HoWo] . col[K, HoWo]^T       (exact, int64)
 * attrs: 0 group, 1 kh, 2 kw, 3 stride h, 4 stride w, 5 dilation h, 6 dilation w,
 *        7 pad top, 8 pad left, 9 pad bottom, 10 pad right. */
#include <string.h>

#include "../planner.h"
#include "ops.h"

enum { S_ACC, S_BIAS, S_COL, S_COL_B, S_WT, S_DCOL, S_DX_ACC, S_DW_PART };
enum { R_ACC = 1, R_BIAS, R_OUT, R_DX };

/* The outputs [lo, hi) of one axis whose input position o * stride + off lies in [0, in). */
static void inside(int64_t off, uint32_t stride, uint32_t in, uint32_t out, size_t *lo, size_t *hi) {
    int64_t l, h;
    if (IE_FAST_PATHS && stride == 1) { /* the same bounds without two 64-bit divisions per tap */
        l = off >= 0 ? 0 : -off;
        h = (int64_t)in - off <= 0 ? 0 : (int64_t)in - off;
    } else {
        l = off >= 0 ? 0 : (-off + stride - 1) / stride;
        h = (int64_t)in - off <= 0 ? 0 : ((int64_t)in - off + stride - 1) / stride;
    }
    h = h > (int64_t)out ? (int64_t)out : h;
    l = l > h ? h : l;
    *lo = (size_t)l;
    *hi = (size_t)h;
}

/* Walks the kernel taps (c, i, j) = row r of col: the rows [oh0, oh1) and columns [ow0, ow1) of
 * the output whose input pixel lies inside, and the input offset of output (0, 0) (which may lie
 * in the padding: only in-range outputs add it). */
#define FOR_TAPS(g, BODY)                                                                                  for (uint32_t c_ = 0, r = 0; c_ < (g)->cin_g; c_++)                                                         for (uint32_t i_ = 0; i_ < (g)->kh; i_++)                                                                   for (uint32_t j_ = 0; j_ < (g)->kw; j_++, r++) {                                                            int64_t offh_ = (int64_t)i_ * (g)->dh - (g)->pt, offw_ = (int64_t)j_ * (g)->dw - (g)->pl;                 size_t oh0, oh1, ow0, ow1;                                                                              inside(offh_, (g)->sh, (g)->h, (g)->ho, &oh0, &oh1);                                                    inside(offw_, (g)->sw, (g)->w, (g)->wo, &ow0, &ow1);                                                    int64_t base = ((int64_t)c_ * (g)->h + offh_) * (g)->w + offw_;                                         BODY                                                                                                }

/* Input pixel of output (oh, ow) for the tap whose (0, 0) offset is base. */
#define TAP_AT(g, base, oh, ow) ((size_t)((base) + (int64_t)((oh) * (g)->sh) * (g)->w + (int64_t)((ow) * (g)->sw)))

/* Stride 1 with output rows as wide as input rows (same padding): a tap's in-range outputs, from
 * (oh0, ow0) to (oh1 - 1, ow1 - 1), read one contiguous run of the input, so the row copies
 * become one run; the positions of the run past a row's ends (ow >= ow1, or < ow0 on the next
 * row) are the few that do not belong to the tap. */
static int one_run(const ie_conv_geom *g) { return IE_FAST_PATHS && g->sh == 1 && g->sw == 1 && g->w == g->wo; }

/* A 1 x 1 window with stride 1 and no padding: col is the input itself, so nothing is copied. */
static int col_is_input(const ie_conv_geom *g) {
    return IE_FAST_PATHS && g->kh == 1 && g->kw == 1 && g->sh == 1 && g->sw == 1 && !g->pt && !g->pl &&
           g->ho == g->h && g->wo == g->w;
}

static void im2col_run(const int8_t *x, const ie_conv_geom *g, int8_t *col) {
    size_t ho = g->ho, wo = g->wo, howo = ho * wo;
    FOR_TAPS(g, {
        int8_t *row = col + (size_t)r * howo;
        if (oh0 >= oh1 || ow0 >= ow1) {
            memset(row, 0, howo);
            continue;
        }
        size_t first = oh0 * wo + ow0; /* the run: [first, last) */
        size_t last = (oh1 - 1) * wo + ow1;
        if (howo >= 64 && first <= 64 && howo - last <= 64) { /* fixed sizes: two stores, not two calls */
            memset(row, 0, 64);
            memset(row + howo - 64, 0, 64);
        } else {
            memset(row, 0, first);
            memset(row + last, 0, howo - last);
        }
        memcpy(row + first, x + TAP_AT(g, base, oh0, ow0), last - first);
        for (size_t oh = oh0; oh + 1 < oh1; oh++) /* between row oh's end and row oh + 1's start */
            for (size_t t = oh * wo + ow1; t < (oh + 1) * wo + ow0; t++) row[t] = 0;
    })
}

/* n bytes, short runs (a 5 x 5 window's 8-pixel rows) without a library call: two overlapping
 * fixed-size moves cover 4..16 bytes. */
static inline void copy_run(int8_t *d, const int8_t *src, size_t n) {
    if (!IE_FAST_PATHS || n > 16) {
        memcpy(d, src, n);
    } else if (n >= 8) {
        memcpy(d, src, 8);
        memcpy(d + n - 8, src + n - 8, 8);
    } else if (n >= 4) {
        memcpy(d, src, 4);
        memcpy(d + n - 4, src + n - 4, 4);
    } else {
        for (size_t t = 0; t < n; t++) d[t] = src[t];
    }
}

/* Stride-2 rows, with restrict: without it GCC kept the loop scalar (the int8 pointers may
 * alias). Rows shorter than a vector still run in its scalar tail. */
static inline void gather2(int8_t *restrict d, const int8_t *restrict src, size_t n) {
    for (size_t t = 0; t < n; t++) d[t] = src[2 * t];
}

static inline void scatter2_add(int32_t *restrict d, const int32_t *restrict src, size_t n) {
    for (size_t t = 0; t < n; t++) d[2 * t] += src[t];
}

IE_HOT static void im2col(const int8_t *x, const ie_conv_geom *g, int8_t *col) {
    const size_t sw = g->sw; /* a local: stores through the int pointers may alias *g */
    size_t ho = g->ho, wo = g->wo;
    if (one_run(g)) {
        im2col_run(x, g, col);
        return;
    }
    FOR_TAPS(g, {
        int8_t *row = col + (size_t)r * ho * wo;
        if (ow0 || ow1 < wo || oh0 || oh1 < ho) memset(row, 0, ho * wo); /* one call, not two per row */
        for (size_t oh = oh0; oh < oh1; oh++) {
            int8_t *d = row + oh * wo;
            const int8_t *src = x + TAP_AT(g, base, oh, ow0);
            if (sw == 1) /* one run of the input row */
                copy_run(d + ow0, src, ow1 - ow0);
            else if (IE_FAST_PATHS && sw == 2) /* a constant stride vectorizes */
                gather2(d + ow0, src, ow1 - ow0);
            else
                for (size_t t = 0; t < ow1 - ow0; t++) d[ow0 + t] = src[t * sw];
        }
    })
}

/* The columns of one plane block: x itself for a 1 x 1 window, else im2col into col. */
static const int8_t *columns(const int8_t *x, const ie_conv_geom *g, int8_t *col) {
    if (col_is_input(g)) return x;
    im2col(x, g, col);
    return col;
}

/* dX of a stride-1 'same' convolution is itself one, of dY by the flipped weights
 * Wf[c][(o, i, j)] = W[o][c][kh-1-i][kw-1-j] with pads (k - 1) d - p: its GEMM writes dX's int32
 * sums (the same exact integers) straight into the accumulator, with a longer reduction (Cout_g
 * kh kw, not Cout_g) and no dcol or col2im pass. (Where the output is smaller than the input,
 * as without padding, it would multiply the padding too: more work, not less.) The geometry of
 * that convolution goes in t. Returns 0 when the general path applies. */
static int dx_by_conv(const ie_conv_geom *g, ie_conv_geom *t) {
    if (!IE_FAST_PATHS || g->sh != 1 || g->sw != 1 || g->ho != g->h || g->wo != g->w ||
        g->pt > (g->kh - 1) * g->dh || g->pl > (g->kw - 1) * g->dw)
        return 0;
    uint32_t cout_g = g->cout / g->group;
    *t = *g;
    t->cin = g->cout;
    t->cout = g->cin;
    t->cin_g = cout_g;
    t->h = g->ho;
    t->w = g->wo;
    t->ho = g->h;
    t->wo = g->w;
    t->pt = (g->kh - 1) * g->dh - g->pt;
    t->pl = (g->kw - 1) * g->dw - g->pl;
    t->pb = t->pr = 0; /* im2col reads neither */
    return 1;
}

size_t ie_conv_dx_scratch(const ie_conv_geom *g) {
    ie_conv_geom t;
    if (!dx_by_conv(g, &t)) return sizeof(int32_t) * g->ho * g->wo * g->cin_g * g->kh * g->kw;
    size_t cols = col_is_input(&t) ? 0 : (size_t)t.ho * t.wo * t.cin_g * t.kh * t.kw;
    return cols > 16 ? cols : 16; /* never empty: every thread's piece has an address */
}

/* Wf of dx_by_conv for every group: [group][Cin_g][Cout_g kh kw]. */
static void flip_weights(const ie_conv_geom *g, const int8_t *w8, int8_t *wf) {
    size_t kk = (size_t)g->kh * g->kw, cout_g = g->cout / g->group;
    for (size_t gi = 0; gi < g->group; gi++)
        for (size_t o = 0; o < cout_g; o++)
            for (size_t c = 0; c < g->cin_g; c++)
                for (size_t q = 0; q < kk; q++)
                    wf[((gi * g->cin_g + c) * cout_g + o) * kk + kk - 1 - q] = w8[((gi * cout_g + o) * g->cin_g + c) * kk + q];
}

/* dx += col2im(dcol). dcol's positions outside the tap are zeroed first when the run form
 * applies (see im2col_run): they then add 0 to pixels inside the run. */
IE_HOT static void col2im_add(int32_t *dcol, const ie_conv_geom *g, int32_t *dx) {
    const size_t sw = g->sw; /* a local: stores through the int pointers may alias *g */
    size_t ho = g->ho, wo = g->wo;
    if (one_run(g)) {
        FOR_TAPS(g, {
            if (oh0 >= oh1 || ow0 >= ow1) continue;
            int32_t *row = dcol + (size_t)r * ho * wo;
            size_t first = oh0 * wo + ow0;
            size_t last = (oh1 - 1) * wo + ow1;
            for (size_t oh = oh0; oh + 1 < oh1; oh++)
                for (size_t t = oh * wo + ow1; t < (oh + 1) * wo + ow0; t++) row[t] = 0;
            int32_t *d = dx + TAP_AT(g, base, oh0, ow0);
            for (size_t t = 0; t < last - first; t++) d[t] += row[first + t];
        })
        return;
    }
    FOR_TAPS(g, {
        const int32_t *row = dcol + (size_t)r * ho * wo;
        for (size_t oh = oh0; oh < oh1; oh++) {
            int32_t *d = dx + TAP_AT(g, base, oh, ow0);
            const int32_t *src = row + oh * wo + ow0;
            if (sw == 1) /* contiguous runs: vectorizes */
                for (size_t t = 0; t < ow1 - ow0; t++) d[t] += src[t];
            else if (IE_FAST_PATHS && sw == 2)
                scatter2_add(d, src, ow1 - ow0);
            else
                for (size_t t = 0; t < ow1 - ow0; t++) d[t * sw] += src[t];
        }
    })
}

/* ---- the arithmetic on plain arrays ----------------------------------------------------------- */

/* Work shared by samples across the pool: each part takes a range of samples and its own slice
 * of the per-sample scratch; GEMMs inside run without the pool (it is not re-entered). */
typedef struct conv_job {
    const ie_exec *rt;
    const ie_conv_geom *g, *dx_conv; /* dx_conv: dX as a convolution (dx_by_conv), or NULL */
    size_t n;
    const int8_t *x, *w8, *dy;
    int8_t *col, *wt;
    int32_t *acc, *dcol;
    size_t dcol_piece; /* bytes of dcol per thread (ie_conv_dx_scratch) */
    int64_t *partial;
} conv_job;

/* The sizes every part needs, and its range of samples [s0, s1). */
typedef struct conv_part {
    size_t hw, howo, k, s0, s1;
    uint32_t cout_g;
    ie_exec single; /* the kernels without the pool: parts never re-enter it */
} conv_part;

static conv_part part_of(const conv_job *j, uint32_t part, uint32_t parts) {
    const ie_conv_geom *g = j->g;
    conv_part c = {(size_t)g->h * g->w, (size_t)g->ho * g->wo, (size_t)g->cin_g * g->kh * g->kw, 0, 0,
                   g->cout / g->group, {j->rt->k, NULL}};
    ie_part_range(j->n, part, parts, &c.s0, &c.s1);
    return c;
}

static void conv_fwd_part(void *p, uint32_t part, uint32_t parts) {
    const conv_job *j = p;
    const ie_conv_geom *g = j->g;
    conv_part c = part_of(j, part, parts);
    int8_t *buf = j->col + part * c.howo * c.k;
    for (size_t s = c.s0; s < c.s1; s++)
        for (uint32_t gi = 0; gi < g->group; gi++) {
            const int8_t *col = columns(j->x + (s * g->cin + (size_t)gi * g->cin_g) * c.hw, g, buf);
            ie_gemm32_bt(&c.single, j->w8 + (size_t)gi * c.cout_g * c.k, col,
                         j->acc + (s * g->cout + (size_t)gi * c.cout_g) * c.howo, c.cout_g, c.howo, c.k);
        }
}

/* col holds one [K, HoWo] buffer per thread of rt's pool. */
int32_t ie_conv_fwd(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *x, int32_t ex,
                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb, int8_t *col, int32_t *acc,
                    int64_t *bias_al, const ie_rounder r[3], int8_t *y) {
    conv_job j = {rt, g, NULL, n, x, w8, NULL, col, NULL, acc, NULL, 0, NULL};
    ie_pool_run(rt->pool, conv_fwd_part, &j);
    size_t howo = (size_t)g->ho * g->wo;
    return ie_requant_bias(rt, acc, n * g->cout * howo, ex + ew, howo, g->cout, bias, eb, bias_al, r, y);
}

static void conv_dx_part(void *p, uint32_t part, uint32_t parts) {
    const conv_job *j = p;
    const ie_conv_geom *g = j->g;
    conv_part c = part_of(j, part, parts);
    int8_t *scratch = (int8_t *)j->dcol + part * j->dcol_piece;
    for (uint32_t gi = 0; gi < g->group; gi++)
        for (size_t s = c.s0; s < c.s1; s++) {
            const int8_t *dy = j->dy + (s * g->cout + (size_t)gi * c.cout_g) * c.howo;
            int32_t *dx = j->acc + (s * g->cin + (size_t)gi * g->cin_g) * c.hw;
            if (j->dx_conv) {
                const int8_t *col = columns(dy, j->dx_conv, scratch);
                ie_gemm32_bt(&c.single, j->wt + (size_t)gi * c.k * c.cout_g, col, dx, g->cin_g, c.hw,
                             (size_t)c.cout_g * g->kh * g->kw);
                continue;
            }
            int32_t *dcol = (int32_t *)scratch; /* [K, HoWo] int32 pieces: a multiple of 4 bytes each */
            ie_gemm32_bt(&c.single, j->wt + (size_t)gi * c.k * c.cout_g, dy, dcol, c.k, c.howo, c.cout_g);
            memset(dx, 0, sizeof(int32_t) * g->cin_g * c.hw); /* here, not in one pass: the adds find it in cache */
            col2im_add(dcol, g, dx);
        }
}

/* wt holds W^T for every group ([group][K][Cout_g]), or dx_by_conv's Wf (the same size); dcol one
 * ie_conv_dx_scratch per thread. */
int32_t ie_conv_bwd_dx(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, int32_t edy,
                       const int8_t *w8, int32_t ew, int8_t *wt, int32_t *dcol, int32_t *acc,
                       ie_rounder r, int8_t *dx) {
    size_t hw = (size_t)g->h * g->w, k = (size_t)g->cin_g * g->kh * g->kw;
    uint32_t cout_g = g->cout / g->group;
    ie_conv_geom t;
    int by_conv = dx_by_conv(g, &t);
    if (by_conv) flip_weights(g, w8, wt);
    else
        for (uint32_t gi = 0; gi < g->group; gi++)
            ie_transpose_s8(w8 + (size_t)gi * cout_g * k, cout_g, k, wt + (size_t)gi * k * cout_g);
    conv_job j = {rt, g, by_conv ? &t : NULL, n, NULL, NULL, dy, NULL, wt, acc, dcol, ie_conv_dx_scratch(g), NULL};
    ie_pool_run(rt->pool, conv_dx_part, &j);
    return edy + ew + ie_requant_acc(rt, acc, n * g->cin * hw, r, dx);
}

static void conv_dw_part(void *p, uint32_t part, uint32_t parts) {
    const conv_job *j = p;
    const ie_conv_geom *g = j->g;
    conv_part c = part_of(j, part, parts);
    int8_t *buf = j->col + part * c.howo * c.k;
    int64_t *dw = j->partial + part * g->cout * c.k;
    memset(dw, 0, sizeof(int64_t) * g->cout * c.k);
    for (size_t s = c.s0; s < c.s1; s++)
        for (uint32_t gi = 0; gi < g->group; gi++) {
            const int8_t *col = columns(j->x + (s * g->cin + (size_t)gi * g->cin_g) * c.hw, g, buf);
            ie_gemm64(&c.single, j->dy + (s * g->cout + (size_t)gi * c.cout_g) * c.howo, col,
                      dw + (size_t)gi * c.cout_g * c.k, c.cout_g, c.k, c.howo); /* adds to dw */
        }
}

/* col holds one buffer per thread; partial one [Cout, K] int64 sum per thread
 * (the first is dw itself), added in part order: exact, so the thread count changes nothing. */
int32_t ie_conv_bwd_dw(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, int32_t edy,
                       const int8_t *x, int32_t ex, int8_t *col, int64_t *partial, int64_t *dw) {
    size_t k = (size_t)g->cin_g * g->kh * g->kw, size = (size_t)g->cout * k;
    uint32_t parts = ie_pool_threads(rt->pool);
    conv_job j = {rt, g, NULL, n, x, NULL, dy, col, NULL, NULL, NULL, 0, parts > 1 ? partial : dw};
    ie_pool_run(rt->pool, conv_dw_part, &j);
    if (parts > 1) {
        memcpy(dw, partial, sizeof(int64_t) * size);
        for (uint32_t p = 1; p < parts; p++)
            for (size_t i = 0; i < size; i++) dw[i] += partial[p * size + i];
    }
    return edy + ex;
}

int32_t ie_conv_bwd_db(const ie_conv_geom *g, size_t n, const int8_t *dy, int32_t edy, int64_t *db) {
    size_t howo = (size_t)g->ho * g->wo;
    for (uint32_t c = 0; c < g->cout; c++) db[c] = 0;
    for (size_t s = 0; s < n; s++)
        for (uint32_t c = 0; c < g->cout; c++) {
            const int8_t *d = dy + (s * g->cout + c) * howo;
            int64_t sum = 0; /* a local: adds into db[c] itself stayed scalar (a char may alias it) */
            for (size_t p = 0; p < howo; p++) sum += d[p];
            db[c] += sum;
        }
    return edy;
}

/* ---- the op ------------------------------------------------------------------------------------ */

ie_conv_geom ie_conv_geometry(const ie_model *m, const ie_node_desc *nd) {
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    ie_conv_geom g;
    g.group = (uint32_t)nd->attrs[0];
    g.kh = (uint32_t)nd->attrs[1];
    g.kw = (uint32_t)nd->attrs[2];
    g.sh = (uint32_t)nd->attrs[3];
    g.sw = (uint32_t)nd->attrs[4];
    g.dh = (uint32_t)nd->attrs[5];
    g.dw = (uint32_t)nd->attrs[6];
    g.pt = (uint32_t)nd->attrs[7];
    g.pl = (uint32_t)nd->attrs[8];
    g.pb = (uint32_t)nd->attrs[9];
    g.pr = (uint32_t)nd->attrs[10];
    g.cin = x->dims[0];
    g.h = x->dims[1];
    g.w = x->dims[2];
    g.cout = y->dims[0];
    g.ho = y->dims[1];
    g.wo = y->dims[2];
    g.cin_g = g.group ? g.cin / g.group : 0;
    return g;
}

/* Output size of one spatial axis, or 0 if the window does not fit. */
static uint32_t out_size(uint32_t in, uint32_t k, uint32_t s, uint32_t d, uint32_t p0, uint32_t p1) {
    uint64_t span = (uint64_t)d * (k - 1) + 1, padded = (uint64_t)in + p0 + p1;
    return padded < span ? 0 : (uint32_t)((padded - span) / s + 1);
}

ie_status ie_window_check(uint32_t h, uint32_t w, uint32_t kh, uint32_t kw, uint32_t sh, uint32_t sw, uint32_t dh,
                          uint32_t dw, uint32_t pt, uint32_t pl, uint32_t pb, uint32_t pr, uint32_t ho, uint32_t wo,
                          char *err) {
    if (!kh || !kw || !sh || !sw || !dh || !dw || kh > 4096 || kw > 4096 || sh > 4096 || sw > 4096 || dh > 4096 ||
        dw > 4096 || pt > 4096 || pl > 4096 || pb > 4096 || pr > 4096) {
        ie_set_err(err, "kernel, stride and dilation must be 1..4096, pads 0..4096");
        return IE_ERR_FORMAT;
    }
    uint32_t eh = out_size(h, kh, sh, dh, pt, pb), ew = out_size(w, kw, sw, dw, pl, pr);
    if (eh != ho || ew != wo) {
        ie_set_err(err, "a %" PRIu32 "x%" PRIu32 " input gives %" PRIu32 "x%" PRIu32 " outputs, not %" PRIu32 "x%" PRIu32, h, w, eh, ew, ho, wo);
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

static ie_status conv_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *w = &m->tensors[nd->in[1]], *y = &m->tensors[nd->out[0]];
    if (x->kind == IE_KIND_PARAM || x->rank != 3 || y->rank != 3) {
        ie_set_err(err, "the data input and output must be [C, H, W] activations");
        return IE_ERR_FORMAT;
    }
    if (w->kind != IE_KIND_PARAM || w->rank != 4) { ie_set_err(err, "the weight must be a rank-4 parameter"); return IE_ERR_FORMAT; }
    for (int i = 11; i < IE_MAX_ATTRS; i++)
        if (nd->attrs[i]) { ie_set_err(err, "unused attributes must be 0"); return IE_ERR_FORMAT; }
    for (int i = 0; i < 11; i++)
        if (nd->attrs[i] < 0) { ie_set_err(err, "attributes must not be negative"); return IE_ERR_FORMAT; }
    ie_conv_geom g = ie_conv_geometry(m, nd);
    if (!g.group || g.cin % g.group || g.cout % g.group) {
        ie_set_err(err, "group %" PRIu32 " does not divide %" PRIu32 " input and %" PRIu32 " output channels", g.group, g.cin, g.cout);
        return IE_ERR_FORMAT;
    }
    if (w->dims[0] != g.cout || w->dims[1] != g.cin_g || w->dims[2] != g.kh || w->dims[3] != g.kw) {
        ie_set_err(err, "weight [%" PRIu32 ",%" PRIu32 ",%" PRIu32 ",%" PRIu32 "] does not fit %" PRIu32 "->%" PRIu32 " channels, group %" PRIu32 ", kernel %" PRIu32 "x%" PRIu32, w->dims[0],
                   w->dims[1], w->dims[2], w->dims[3], g.cin, g.cout, g.group, g.kh, g.kw);
        return IE_ERR_FORMAT;
    }
    if ((uint64_t)g.cin_g * g.kh * g.kw > IE_MAX_REDUCTION || (uint64_t)(g.cout / g.group) * g.kh * g.kw > IE_MAX_REDUCTION) {
        ie_set_err(err, "a window of more than 2^17 terms");
        return IE_ERR_UNSUPPORTED;
    }
    if (nd->n_in > 2) {
        const ie_tensor_desc *b = &m->tensors[nd->in[2]];
        if (b->kind != IE_KIND_PARAM || b->numel != g.cout) { ie_set_err(err, "the bias must be a parameter of %" PRIu32 " values", g.cout); return IE_ERR_FORMAT; }
    }
    return ie_window_check(g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.pb, g.pr, g.ho, g.wo, err);
}

static void conv_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    ie_conv_geom g = ie_conv_geometry(m, nd);
    size_t n = ie_plan_batch(p), howo = (size_t)g.ho * g.wo, k = (size_t)g.cin_g * g.kh * g.kw;
    size_t cout_g = g.cout / g.group, t = ie_plan_threads(p); /* per-thread scratch, t copies */
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node), x = nd->in[0], w = nd->in[1], y = nd->out[0];
    uint32_t b = nd->n_in > 2 ? nd->in[2] : IE_NONE;
    int bwd = ie_plan_requires_grad(p, y);
    int need_dx = bwd && ie_plan_requires_grad(p, x);
    int need_dw = bwd && ie_plan_param_trainable(p, w);
    ie_plan_param_buffer(p, w, IE_BUF_PARAM_W8, g.cout * k, F, need_dx ? B : F);
    ie_plan_node_scratch(p, node, S_ACC, n * g.cout * howo * sizeof(int32_t), F, F);
    ie_plan_node_scratch(p, node, S_COL, t * howo * k, F, F);
    if (b != IE_NONE) ie_plan_node_scratch(p, node, S_BIAS, g.cout * sizeof(int64_t), F, F);
    if (need_dx) {
        ie_plan_node_scratch(p, node, S_WT, g.group * k * cout_g, B, B);
        ie_plan_node_scratch(p, node, S_DCOL, t * ie_conv_dx_scratch(&g), B, B);
        ie_plan_node_scratch(p, node, S_DX_ACC, n * g.cin * g.h * g.w * sizeof(int32_t), B, B);
    }
    if (need_dw) {
        ie_plan_keep(p, x, B);
        ie_plan_node_scratch(p, node, S_COL_B, t * howo * k, B, B);
        if (t > 1) ie_plan_node_scratch(p, node, S_DW_PART, t * g.cout * k * sizeof(int64_t), B, B);
        ie_plan_param_buffer(p, w, IE_BUF_PARAM_GRAD, g.cout * k * sizeof(int64_t), B, B);
        ie_plan_param_buffer(p, w, IE_BUF_PARAM_OPT, g.cout * k * sizeof(int32_t), B, B);
    }
    if (bwd && b != IE_NONE && ie_plan_param_trainable(p, b)) {
        ie_plan_param_buffer(p, b, IE_BUF_PARAM_GRAD, g.cout * sizeof(int64_t), B, B);
        ie_plan_param_buffer(p, b, IE_BUF_PARAM_OPT, g.cout * sizeof(int32_t), B, B);
    }
}

/* What forward and backward both look up for a node. */
typedef struct conv_node {
    ie_conv_geom g;
    void **sc;
    ie_value *x, *y;
    uint32_t wi;
    ie_param *pw, *pb;
} conv_node;

static conv_node conv_open(ie_session *s, uint32_t node) {
    const ie_model *m = s->model;
    const ie_node_desc *nd = &m->nodes[node];
    conv_node c = {ie_conv_geometry(m, nd), s->nodes[node].scratch, &s->values[nd->in[0]], &s->values[nd->out[0]],
                   m->tensors[nd->in[1]].param, NULL, NULL};
    c.pw = &s->params[c.wi];
    c.pb = nd->n_in > 2 ? &s->params[m->tensors[nd->in[2]].param] : NULL;
    return c;
}

static void conv_forward(ie_session *s, uint32_t node) {
    conv_node c = conv_open(s, node);
    ie_param_quantize(s, c.wi, c.pw->w8, 0, 0);
    ie_rounder r[3] = {ie_session_rounder(s, ie_node_stream(node, R_ACC)),
                       ie_session_rounder(s, ie_node_stream(node, R_BIAS)),
                       ie_session_rounder(s, ie_node_stream(node, R_OUT))};
    c.y->e = ie_conv_fwd(&s->ex, &c.g, s->n, c.x->q, c.x->e, c.pw->w8, c.pw->e8, c.pb ? c.pb->w : NULL,
                         c.pb ? c.pb->we : 0, c.sc[S_COL], c.sc[S_ACC], c.sc[S_BIAS], r, c.y->q);
}

static void conv_backward(ie_session *s, uint32_t node) {
    conv_node c = conv_open(s, node);
    if (c.x->requires_grad)
        c.x->ge = ie_conv_bwd_dx(&s->ex, &c.g, s->n, c.y->g, c.y->ge, c.pw->w8, c.pw->e8, c.sc[S_WT], c.sc[S_DCOL], c.sc[S_DX_ACC], ie_session_rounder(s, ie_node_stream(node, R_DX)), c.x->g);
    if (c.pw->trainable) {
        c.pw->grad_e = ie_conv_bwd_dw(&s->ex, &c.g, s->n, c.y->g, c.y->ge, c.x->q, c.x->e, c.sc[S_COL_B], c.sc[S_DW_PART], c.pw->grad);
        ie_optim_step(s, c.wi);
    }
    if (c.pb && c.pb->trainable) {
        c.pb->grad_e = ie_conv_bwd_db(&c.g, s->n, c.y->g, c.y->ge, c.pb->grad);
        ie_optim_step(s, s->model->tensors[s->model->nodes[node].in[2]].param);
    }
}

const ie_op_def ie_op_conv = {"Conv", 2, 3, 1, conv_check, conv_plan, conv_forward, conv_backward};
