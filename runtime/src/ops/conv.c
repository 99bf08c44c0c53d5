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
#define FOR_TAPS(g, BODY)                                                                                              \
    for (uint32_t c_ = 0, r = 0; c_ < (g)->cin_g; c_++)                                                                \
        for (uint32_t i_ = 0; i_ < (g)->kh; i_++)                                                                      \
            for (uint32_t j_ = 0; j_ < (g)->kw; j_++, r++) {                                                           \
                int64_t offh_ = (int64_t)i_ * (g)->dh - (g)->pt, offw_ = (int64_t)j_ * (g)->dw - (g)->pl;              \
                size_t oh0, oh1, ow0, ow1;                                                                             \
                inside(offh_, (g)->sh, (g)->h, (g)->ho, &oh0, &oh1);                                                   \
                inside(offw_, (g)->sw, (g)->w, (g)->wo, &ow0, &ow1);                                                   \
                int64_t base = ((int64_t)c_ * (g)->h + offh_) * (g)->w + offw_;                                        \
                BODY                                                                                                   \
            }

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

/* im2col and col2im write or read rows r0..r1 - 1 of col, each ld entries apart (one sample's
 * columns in a chunk of several: see conv_chunk). */
static void im2col_run(const int8_t *x, const ie_conv_geom *g, int8_t *col, size_t ld, uint32_t r0, uint32_t r1) {
    size_t ho = g->ho, wo = g->wo, howo = ho * wo;
    FOR_TAPS(g, {
        if (r < r0 || r >= r1) continue;
        int8_t *row = col + (size_t)r * ld;
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

IE_HOT static void im2col(const int8_t *x, const ie_conv_geom *g, int8_t *col, size_t ld, uint32_t r0, uint32_t r1) {
    const size_t sw = g->sw; /* a local: stores through the int pointers may alias *g */
    size_t ho = g->ho, wo = g->wo;
    if (one_run(g)) {
        im2col_run(x, g, col, ld, r0, r1);
        return;
    }
    FOR_TAPS(g, {
        if (r < r0 || r >= r1) continue;
        int8_t *row = col + (size_t)r * ld;
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

/* d[0..8] = s[8..0], a 3 x 3 kernel's taps reversed: one byte, and eight by a byte swap (the
 * same memory order on either endianness), not a loop of nine. */
static inline void reverse9(int8_t *d, const int8_t *s) {
#if defined(__GNUC__) || defined(__clang__)
    uint64_t v;
    memcpy(&v, s, 8);
    v = __builtin_bswap64(v);
    d[0] = s[8];
    memcpy(d + 1, &v, 8);
#else
    for (int q = 0; q < 9; q++) d[q] = s[8 - q];
#endif
}

/* Wf of dx_by_conv for every group: [group][Cin_g][Cout_g kh kw]. */
static void flip_weights(const ie_conv_geom *g, const int8_t *w8, int8_t *wf) {
    size_t kk = (size_t)g->kh * g->kw, cout_g = g->cout / g->group;
    if (IE_FAST_PATHS && kk == 1) { /* one tap: a transpose of [Cout_g][Cin_g] (MobileNetV2's 1 x 1) */
        for (size_t gi = 0; gi < g->group; gi++)
            ie_transpose_s8(w8 + gi * cout_g * g->cin_g, cout_g, g->cin_g, wf + gi * g->cin_g * cout_g);
        return;
    }
    for (size_t gi = 0; gi < g->group; gi++)
        for (size_t o0 = 0; o0 < cout_g; o0 += 16) /* in 16 x 16 tiles of (o, c): cache lines reused */
            for (size_t c0 = 0; c0 < g->cin_g; c0 += 16)
                for (size_t o = o0; o < cout_g && o < o0 + 16; o++)
                    for (size_t c = c0; c < g->cin_g && c < c0 + 16; c++) {
                        const int8_t *src = w8 + ((gi * cout_g + o) * g->cin_g + c) * kk;
                        int8_t *dst = wf + ((gi * g->cin_g + c) * cout_g + o) * kk;
                        if (IE_FAST_PATHS && kk == 9) reverse9(dst, src);
                        else
                            for (size_t q = 0; q < kk; q++) dst[kk - 1 - q] = src[q];
                    }
}

/* dx += col2im(dcol). dcol's positions outside the tap are zeroed first when the run form
 * applies (see im2col_run): they then add 0 to pixels inside the run. */
IE_HOT static void col2im_add(int32_t *dcol, size_t ld, const ie_conv_geom *g, int32_t *dx) {
    const size_t sw = g->sw; /* a local: stores through the int pointers may alias *g */
    size_t wo = g->wo;
    if (one_run(g)) {
        FOR_TAPS(g, {
            if (oh0 >= oh1 || ow0 >= ow1) continue;
            int32_t *row = dcol + (size_t)r * ld;
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
        const int32_t *row = dcol + (size_t)r * ld;
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

/* ---- depthwise convolutions (one input and one output channel per group) ---------------------
 * As im2col + GEMM they are a poor fit: one output row per group, 9-term products, and im2col
 * copies every input pixel 9 times; walked plane by plane, MobileNetV2's 3 x 3 to 12 x 12 planes
 * make runs too short for vectors. So they run channels-last: a sample's planes are transposed
 * to [pixel][channel], every (output pixel, tap) pair is one vector operation over all channels
 * with the tap's weights as a vector, and the int32 sums are transposed back. The sums are the
 * same integers as the GEMMs' (at most kh kw terms a position; dW at most HoWo <= 2^17 a sample,
 * then int64 over samples). */
static uint64_t up64(uint64_t b) { return (b + 63) & ~(uint64_t)63; }

static int depthwise(const ie_conv_geom *g) {
    return IE_FAST_PATHS && g->cin_g == 1 && g->group > 1 && g->cout == g->cin &&
           (size_t)g->ho * g->wo <= IE_MAX_REDUCTION;
}

/* One thread's scratch and the shared part, in byte offsets. Shared: the taps' weights as rows
 * [kk][Wo C] int32 (each tap's channel vector repeated along an output row). Per thread: x and
 * dY channels-last (int8), int32 sums [pixels][C], and for dW the sample's int32 sums per tap
 * along a row [kk][Wo C] and the thread's int64 total [kk][C]. */
typedef struct dw_layout { /* 64 bits, by IE_SIZE: planning refuses what size_t could not hold */
    uint64_t xt, dyt, sums, rows, total, size, shared;
} dw_layout;

static dw_layout dw_layout_of(const ie_conv_geom *g) {
    uint64_t c = g->cin, hw = IE_SIZE(g->h, g->w), howo = IE_SIZE(g->ho, g->wo), kk = IE_SIZE(g->kh, g->kw);
    dw_layout l;
    l.shared = up64(IE_SIZE(sizeof(int32_t), kk, g->wo, c));
    l.xt = 0;
    l.dyt = up64(IE_SIZE(hw, c));
    l.sums = l.dyt + up64(IE_SIZE(howo, c));
    l.rows = l.sums + up64(IE_SIZE(sizeof(int32_t), hw > howo ? hw : howo, c));
    l.total = l.rows + up64(IE_SIZE(sizeof(int32_t), kk, g->wo, c));
    l.size = l.total + up64(IE_SIZE(sizeof(int64_t), kk, c));
    return l;
}

/* One sample, channels-last, tap by tap and output row by output row: a tap's in-range outputs
 * [ow0, ow1) of row oh read input row ih from pixel ow0 sw + offw on. With stride 1 both runs are
 * contiguous over (pixel, channel), so each (row, tap) is one flat loop against the tap's weight
 * row (wr: the channel vector repeated, so position t has channel t mod C):
 *   phase FWD: sums[out pixel][c] += w[tap][c] v[in pixel][c]     (v: x)
 *   phase DX:  sums[in pixel][c]  += w[tap][c] u[out pixel][c]    (u: dY)
 *   phase DW:  rows[tap][t]       += u[out][t] v[in][t]           (u: dY, v: x; folded per channel
 *                                                                  by the caller) */
IE_HOT static void dw_sample(const ie_conv_geom *g, int phase, const int32_t *restrict wrows, const int8_t *restrict u,
                             const int8_t *restrict v, int32_t *restrict sums, int32_t *restrict rows) {
    size_t c = g->cin, sw = g->sw, rowlen = (size_t)g->wo * c;
    for (uint32_t i = 0; i < g->kh; i++)
        for (uint32_t j = 0; j < g->kw; j++) {
            size_t oh0, oh1, ow0, ow1, tap = (size_t)i * g->kw + j;
            int64_t offh = (int64_t)i * g->dh - g->pt, offw = (int64_t)j * g->dw - g->pl;
            inside(offh, g->sh, g->h, g->ho, &oh0, &oh1);
            inside(offw, g->sw, g->w, g->wo, &ow0, &ow1);
            const int32_t *wr = wrows + tap * rowlen;
            int32_t *rr = rows + tap * rowlen;
            for (size_t oh = oh0; oh < oh1; oh++) {
                size_t in0 = (size_t)((int64_t)(oh * g->sh) + offh) * g->w + (size_t)((int64_t)(ow0 * sw) + offw);
                size_t out0 = oh * g->wo + ow0, len = (ow1 - ow0) * c;
                if (sw == 1) { /* flat runs */
                    if (phase == IE_PROF_FWD) {
                        int32_t *a = sums + out0 * c;
                        const int8_t *x = v + in0 * c;
                        for (size_t t = 0; t < len; t++) a[t] += wr[t] * x[t];
                    } else if (phase == IE_PROF_DX) {
                        int32_t *a = sums + in0 * c;
                        const int8_t *d = u + out0 * c;
                        for (size_t t = 0; t < len; t++) a[t] += wr[t] * d[t];
                    } else {
                        const int8_t *x = v + in0 * c, *d = u + out0 * c;
                        for (size_t t = 0; t < len; t++) rr[t] += d[t] * x[t];
                    }
                    continue;
                }
                for (size_t ow = 0; ow < ow1 - ow0; ow++) { /* pixel by pixel */
                    size_t in = (in0 + ow * sw) * c, out = (out0 + ow) * c;
                    if (phase == IE_PROF_FWD)
                        for (size_t k = 0; k < c; k++) sums[out + k] += wr[k] * v[in + k];
                    else if (phase == IE_PROF_DX)
                        for (size_t k = 0; k < c; k++) sums[in + k] += wr[k] * u[out + k];
                    else
                        for (size_t k = 0; k < c; k++) rr[k] += u[out + k] * v[in + k];
                }
            }
        }
}

typedef struct dw_job {
    const ie_conv_geom *g;
    size_t n;
    const int8_t *x, *dy;
    int8_t *scratch; /* the shared weights, then one dw_layout per thread */
    dw_layout l;
    int32_t *acc;
    int64_t *dw; /* one [kk][C] total per part, then dW */
    int phase;
} dw_job;

static void dw_part(void *p, uint32_t part, uint32_t parts) {
    const dw_job *j = p;
    const ie_conv_geom *g = j->g;
    size_t b, e, c = g->cin, hw = (size_t)g->h * g->w, howo = (size_t)g->ho * g->wo, kk = (size_t)g->kh * g->kw;
    size_t rowlen = (size_t)g->wo * c;
    const int32_t *wrows = (const int32_t *)j->scratch;
    int8_t *mine = j->scratch + j->l.shared + part * j->l.size, *xt = mine + j->l.xt, *dyt = mine + j->l.dyt;
    int32_t *sums = (int32_t *)(mine + j->l.sums), *rows = (int32_t *)(mine + j->l.rows);
    int64_t *total = (int64_t *)(mine + j->l.total);
    if (j->phase == IE_PROF_DW) memset(total, 0, sizeof(int64_t) * kk * c);
    ie_part_range(j->n, part, parts, &b, &e);
    for (size_t s = b; s < e; s++) {
        if (j->x) ie_transpose_s8(j->x + s * c * hw, c, hw, xt);
        if (j->dy) ie_transpose_s8(j->dy + s * c * howo, c, howo, dyt);
        if (j->phase == IE_PROF_DW) memset(rows, 0, sizeof(int32_t) * kk * rowlen);
        else memset(sums, 0, sizeof(int32_t) * (j->phase == IE_PROF_FWD ? howo : hw) * c);
        dw_sample(g, j->phase, wrows, j->dy ? dyt : NULL, j->x ? xt : NULL, sums, rows);
        if (j->phase == IE_PROF_FWD) ie_transpose_s32(sums, howo, c, j->acc + s * c * howo);
        else if (j->phase == IE_PROF_DX) ie_transpose_s32(sums, hw, c, j->acc + s * c * hw);
        else
            for (size_t t = 0; t < kk; t++) /* a row's positions ow C + k belong to channel k */
                for (size_t ow = 0; ow < g->wo; ow++) {
                    const int32_t *src = rows + t * rowlen + ow * c;
                    int64_t *dst = total + t * c;
                    for (size_t ch = 0; ch < c; ch++) dst[ch] += src[ch];
                }
    }
}

/* phase: IE_PROF_FWD (sums into acc from x), IE_PROF_DX (into acc from dy) or IE_PROF_DW (dw
 * from x and dy); scratch: ie_conv_scratch's bytes for the phase. */
static void dw_run(const ie_exec *rt, int phase, const ie_conv_geom *g, size_t n, const int8_t *x, const int8_t *w8,
                   const int8_t *dy, int8_t *scratch, int32_t *acc, int64_t *dw) {
    uint64_t t0 = ie_prof_start(rt->prof);
    dw_job j = {g, n, x, dy, scratch, dw_layout_of(g), acc, dw, phase};
    size_t c = g->cin, kk = (size_t)g->kh * g->kw;
    int32_t *wrows = (int32_t *)scratch;
    for (size_t t = 0; w8 && t < kk; t++) /* each tap's weights as a channel vector, repeated along a row */
        for (size_t ow = 0; ow < g->wo; ow++)
            for (size_t ch = 0; ch < c; ch++) wrows[(t * g->wo + ow) * c + ch] = w8[ch * kk + t];
    ie_pool_run(rt->pool, dw_part, &j);
    if (phase == IE_PROF_DW) {
        for (size_t t = 0; t < kk; t++) /* the parts' totals, in part order: exact */
            for (size_t ch = 0; ch < c; ch++) {
                int64_t sum = 0;
                for (uint32_t part = 0; part < ie_pool_threads(rt->pool); part++) {
                    const int8_t *mine = scratch + j.l.shared + part * j.l.size;
                    sum += ((const int64_t *)(mine + j.l.total))[t * c + ch];
                }
                dw[ch * kk + t] = sum;
            }
    }
    ie_prof_add(rt->prof, IE_PROF_GEMM, t0); /* the multiplies, as the GEMMs' are */
}

/* ---- the arithmetic on plain arrays ----------------------------------------------------------- */

/* Chunks: a GEMM over one sample's plane is short where planes are small (ResNet-18's last
 * stage at 96 px has 3 x 3 = 9 columns), and dW's sum over samples then makes one pass over its
 * int64 sums per sample. Samples go in chunks of about IE_CONV_CHUNK_COLS columns: a chunk's columns
 * sit side by side (sample j's at j HoWo in every row, rows c HoWo apart), so each GEMM has
 * c HoWo columns (forward, dX) or terms (dW). Its sums are the same integers. Builds without
 * IE_FAST_PATHS (the microcontrollers') and sessions with lean_scratch keep one sample per GEMM
 * (g->chunk_cols 0), which their golden runs then compare with the host's chunks. */
#define SPLIT_MIN ((size_t)1 << 15) /* below this many bytes a pack runs on the caller alone */

size_t ie_conv_chunk(const ie_conv_geom *g, size_t n) {
    size_t howo = (size_t)g->ho * g->wo, c = g->chunk_cols && howo ? (g->chunk_cols + howo - 1) / howo : 1;
    return n == 0 ? 1 : (c < n ? c : n);
}

/* One thread's scratch for a phase, in byte offsets: columns (int8), rows of dY (int8) and an
 * int32 block (a chunk's outputs, or dX's dcol). */
typedef struct conv_scratch { /* 64 bits, by IE_SIZE: planning refuses what size_t could not hold */
    uint64_t rows, tmp, total;
} conv_scratch;

static conv_scratch scratch_of(const ie_conv_geom *g, size_t n, int phase) {
    ie_conv_geom t;
    uint64_t c = ie_conv_chunk(g, n), l = IE_SIZE(c, g->ho, g->wo), cout_g = g->cout / g->group;
    uint64_t k = IE_SIZE(g->cin_g, g->kh, g->kw), col = 0, rows = 0, tmp = 0;
    if (phase == IE_PROF_FWD) {
        col = c == 1 && col_is_input(g) ? 0 : IE_SIZE(k, l);
        tmp = c > 1 ? IE_SIZE(sizeof(int32_t), cout_g, l) : 0;
    } else if (phase == IE_PROF_DX && dx_by_conv(g, &t)) {
        col = c == 1 && col_is_input(&t) ? 0 : IE_SIZE(cout_g, g->kh, g->kw, l);
        tmp = c > 1 ? IE_SIZE(sizeof(int32_t), g->cin_g, l) : 0;
    } else if (phase == IE_PROF_DX) {
        rows = c > 1 ? IE_SIZE(cout_g, l) : 0;
        tmp = IE_SIZE(sizeof(int32_t), k, l);
    } else {
        col = IE_SIZE(k, l);
        rows = c > 1 ? IE_SIZE(cout_g, l) : 0;
    }
    conv_scratch s = {up64(col), up64(col) + up64(rows), 0};
    s.total = s.tmp + up64(tmp) > 64 ? s.tmp + up64(tmp) : 64; /* never empty: every piece has an address */
    return s;
}

uint64_t ie_conv_scratch(const ie_conv_geom *g, size_t n, int phase) {
    if (depthwise(g)) /* the shared weights counted with every thread's piece: simple, and small */
        return dw_layout_of(g).size + dw_layout_of(g).shared;
    return scratch_of(g, n, phase).total;
}

/* Copies of rows (planes of HoWo bytes, rows a sample) or im2col (g) into a chunk's columns, split over
 * the pool by (sample, row). */
typedef struct pack_job {
    const ie_conv_geom *g; /* im2col by g; NULL: plain rows */
    const int8_t *src;     /* the first sample's first row or plane */
    size_t stride;         /* bytes from one sample to the next */
    size_t rows, howo, c;
    int8_t *dst;
} pack_job;

static void pack_part(void *p, uint32_t part, uint32_t parts) {
    const pack_job *j = p;
    size_t b, e, ld = j->c * j->howo;
    ie_part_range(j->c * j->rows, part, parts, &b, &e);
    while (b < e) {
        size_t s = b / j->rows, r0 = b % j->rows, r1 = e - s * j->rows < j->rows ? e - s * j->rows : j->rows;
        const int8_t *x = j->src + s * j->stride;
        int8_t *d = j->dst + s * j->howo;
        if (j->g) im2col(x, j->g, d, ld, (uint32_t)r0, (uint32_t)r1);
        else
            for (size_t r = r0; r < r1; r++) memcpy(d + r * ld, x + r * j->howo, j->howo);
        b = s * j->rows + r1;
    }
}

static void pack(const ie_exec *ex, const pack_job *j) {
    uint64_t t0 = ie_prof_start(ex->prof);
    ie_pool_run(j->c * j->rows * j->howo >= SPLIT_MIN ? ex->pool : NULL, pack_part, (void *)j);
    ie_prof_add(ex->prof, j->g ? IE_PROF_IM2COL : IE_PROF_PACK, t0);
}

/* The columns [K, c HoWo] under geometry g of planes x (sample after sample, stride apart):
 * x itself for one sample of a 1 x 1 window, else packed into col. */
static const int8_t *columns(const ie_exec *ex, const ie_conv_geom *g, const int8_t *x, size_t stride, size_t c,
                             int8_t *col) {
    int plain = col_is_input(g);
    if (plain && c == 1) return x;
    pack_job j = {plain ? NULL : g, x, stride, plain ? g->cin_g : (size_t)g->cin_g * g->kh * g->kw,
                  (size_t)g->ho * g->wo, c, col};
    pack(ex, &j);
    return col;
}

/* rows planes of HoWo bytes per sample as [rows, c HoWo]: src itself for one sample. */
static const int8_t *rows_of(const ie_exec *ex, const int8_t *src, size_t stride, size_t rows, size_t howo, size_t c,
                             int8_t *dst) {
    if (c == 1) return src;
    pack_job j = {NULL, src, stride, rows, howo, c, dst};
    pack(ex, &j);
    return dst;
}

/* The inverse for int32 outputs: [rows, c HoWo] back into planes, sample after sample. */
typedef struct unpack_job {
    const int32_t *src;
    size_t rows, howo, c, stride;
    int32_t *dst;
} unpack_job;

static void unpack_part(void *p, uint32_t part, uint32_t parts) {
    const unpack_job *j = p;
    size_t b, e;
    ie_part_range(j->c * j->rows, part, parts, &b, &e);
    for (size_t i = b; i < e; i++) {
        size_t s = i / j->rows, r = i % j->rows;
        memcpy(j->dst + s * j->stride + r * j->howo, j->src + r * j->c * j->howo + s * j->howo,
               sizeof(int32_t) * j->howo);
    }
}

static void unpack(const ie_exec *ex, const int32_t *src, size_t rows, size_t howo, size_t c, int32_t *dst,
                   size_t stride) {
    uint64_t t0 = ie_prof_start(ex->prof);
    unpack_job j = {src, rows, howo, c, stride, dst};
    ie_pool_run(c * rows * howo >= SPLIT_MIN / 4 ? ex->pool : NULL, unpack_part, &j);
    ie_prof_add(ex->prof, IE_PROF_PACK, t0);
}

/* The work of one phase, chunk by chunk. Chunks are shared out across the pool when there are
 * enough of them (each thread with its own scratch, its GEMMs single-threaded); otherwise they
 * run one after the other on the caller, each GEMM and pack split over the pool. */
typedef struct conv_job conv_job;
typedef void (*chunk_fn)(const conv_job *j, const ie_exec *ex, size_t s0, size_t c, int8_t *scratch, int64_t *dw);
struct conv_job {
    const ie_exec *rt;
    const ie_conv_geom *g, *dx_conv; /* dx_conv: dX as a convolution (dx_by_conv), or NULL */
    size_t n, c;
    const int8_t *x, *w8, *dy;
    int8_t *scratch;
    conv_scratch sc; /* one thread's piece */
    int32_t *acc;
    int64_t *dw;     /* dW's sums (or one per thread: partial) */
    size_t dw_size;
    chunk_fn fn;
    int narrow; /* dW: one chunk of int32 sums (see ie_conv_bwd_dw) */
};

static void chunks_part(void *p, uint32_t part, uint32_t parts) {
    const conv_job *j = p;
    size_t b, e, chunks = (j->n + j->c - 1) / j->c;
    ie_part_range(chunks, part, parts, &b, &e);
    ie_exec ex = ie_exec_part(j->rt, part);
    int64_t *dw = j->dw ? j->dw + part * j->dw_size : NULL;
    if (dw && parts > 1) memset(dw, 0, sizeof(int64_t) * j->dw_size);
    for (size_t i = b; i < e; i++)
        j->fn(j, &ex, i * j->c, j->n - i * j->c < j->c ? j->n - i * j->c : j->c, j->scratch + part * j->sc.total, dw);
}

/* Runs j; returns the number of parts whose dW sums are in j->dw (1: dw itself). */
static uint32_t run_chunks(conv_job *j) {
    uint32_t parts = ie_pool_threads(j->rt->pool);
    size_t chunks = (j->n + j->c - 1) / j->c;
    if (parts > 1 && chunks >= parts) {
        ie_pool_run(j->rt->pool, chunks_part, j);
        return parts;
    }
    for (size_t i = 0; i < chunks; i++)
        j->fn(j, j->rt, i * j->c, j->n - i * j->c < j->c ? j->n - i * j->c : j->c, j->scratch, j->dw);
    return 1;
}

static void fwd_chunk(const conv_job *j, const ie_exec *ex, size_t s0, size_t c, int8_t *scratch, int64_t *dw) {
    (void)dw;
    const ie_conv_geom *g = j->g;
    size_t hw = (size_t)g->h * g->w, howo = (size_t)g->ho * g->wo, k = (size_t)g->cin_g * g->kh * g->kw;
    size_t cout_g = g->cout / g->group;
    int32_t *tmp = (int32_t *)(scratch + j->sc.tmp);
    for (uint32_t gi = 0; gi < g->group; gi++) {
        const int8_t *col = columns(ex, g, j->x + (s0 * g->cin + (size_t)gi * g->cin_g) * hw, (size_t)g->cin * hw, c, scratch);
        int32_t *out = j->acc + (s0 * g->cout + (size_t)gi * cout_g) * howo;
        ie_gemm32_bt(ex, j->w8 + (size_t)gi * cout_g * k, col, c == 1 ? out : tmp, cout_g, c * howo, k);
        if (c > 1) unpack(ex, tmp, cout_g, howo, c, out, (size_t)g->cout * howo);
    }
}

/* scratch: ie_conv_scratch(g, n, IE_PROF_FWD) bytes per thread of rt's pool. y16 instead of y:
 * the output is int16 (int16, read by a BatchNormalization). */
int32_t ie_conv_fwd(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *x, int32_t ex,
                    const int8_t *w8, int32_t ew, const int32_t *bias, int32_t eb, int8_t *scratch, int32_t *acc,
                    int64_t *bias_al, const ie_rounder r[3], int8_t *y, int16_t *y16) {
    conv_job j = {rt, g, NULL, n, ie_conv_chunk(g, n), x, w8, NULL, scratch, scratch_of(g, n, IE_PROF_FWD), acc,
                  NULL, 0, fwd_chunk, 0};
    if (depthwise(g)) dw_run(rt, IE_PROF_FWD, g, n, x, w8, NULL, scratch, acc, NULL);
    else run_chunks(&j);
    size_t howo = (size_t)g->ho * g->wo;
    return ie_requant_bias(rt, acc, n * g->cout * howo, ex + ew, howo, g->cout, bias, eb, bias_al, r, y, y16);
}

static void dx_chunk(const conv_job *j, const ie_exec *ex, size_t s0, size_t c, int8_t *scratch, int64_t *dw) {
    (void)dw;
    const ie_conv_geom *g = j->g;
    size_t hw = (size_t)g->h * g->w, howo = (size_t)g->ho * g->wo, k = (size_t)g->cin_g * g->kh * g->kw;
    size_t cout_g = g->cout / g->group, kt = cout_g * g->kh * g->kw;
    int32_t *tmp = (int32_t *)(scratch + j->sc.tmp);
    for (uint32_t gi = 0; gi < g->group; gi++) {
        const int8_t *dy = j->dy + (s0 * g->cout + (size_t)gi * cout_g) * howo;
        int32_t *dx = j->acc + (s0 * g->cin + (size_t)gi * g->cin_g) * hw;
        const int8_t *wt = j->w8 + (size_t)gi * k * cout_g;
        if (j->dx_conv) {
            const int8_t *col = columns(ex, j->dx_conv, dy, (size_t)g->cout * howo, c, scratch);
            ie_gemm32_bt(ex, wt, col, c == 1 ? dx : tmp, g->cin_g, c * hw, kt);
            if (c > 1) unpack(ex, tmp, g->cin_g, hw, c, dx, (size_t)g->cin * hw);
            continue;
        }
        const int8_t *rows = rows_of(ex, dy, (size_t)g->cout * howo, cout_g, howo, c, scratch + j->sc.rows);
        ie_gemm32_bt(ex, wt, rows, tmp, k, c * howo, cout_g); /* dcol [K, c HoWo] */
        uint64_t t0 = ie_prof_start(ex->prof);
        for (size_t s = 0; s < c; s++) {
            int32_t *d = dx + s * g->cin * hw;
            memset(d, 0, sizeof(int32_t) * g->cin_g * hw); /* here, not in one pass: the adds find it in cache */
            col2im_add(tmp + s * howo, c * howo, g, d);
        }
        ie_prof_add(ex->prof, IE_PROF_IM2COL, t0);
    }
}

/* acc = the int32 sums of dX (col2im of W^T . dY, or dx_by_conv's convolution of dY), exponent
 * edy + ew; wt receives W^T for every group ([group][K][Cout_g]) or dx_by_conv's Wf (the same
 * size); scratch ie_conv_scratch(g, n, IE_PROF_DX) bytes per thread. ConvTranspose's forward is
 * this sum (ops/conv_transpose.c). */
void ie_conv_dx_acc(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, const int8_t *w8,
                    int8_t *wt, int8_t *scratch, int32_t *acc) {
    size_t k = (size_t)g->cin_g * g->kh * g->kw;
    uint32_t cout_g = g->cout / g->group;
    ie_conv_geom t;
    int by_conv = dx_by_conv(g, &t);
    if (depthwise(g)) {
        dw_run(rt, IE_PROF_DX, g, n, NULL, w8, dy, scratch, acc, NULL);
        return;
    }
    uint64_t t0 = ie_prof_start(rt->prof);
    if (by_conv) flip_weights(g, w8, wt);
    else
        for (uint32_t gi = 0; gi < g->group; gi++)
            ie_transpose_s8(w8 + (size_t)gi * cout_g * k, cout_g, k, wt + (size_t)gi * k * cout_g);
    ie_prof_add(rt->prof, IE_PROF_PACK, t0);
    conv_job j = {rt, g, by_conv ? &t : NULL, n, ie_conv_chunk(g, n), NULL, wt, dy, scratch,
                  scratch_of(g, n, IE_PROF_DX), acc, NULL, 0, dx_chunk, 0};
    run_chunks(&j);
}

int32_t ie_conv_bwd_dx(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, int32_t edy,
                       const int8_t *w8, int32_t ew, int8_t *wt, int8_t *scratch, int32_t *acc,
                       ie_rounder r, int8_t *dx) {
    ie_conv_dx_acc(rt, g, n, dy, w8, wt, scratch, acc);
    return edy + ew + ie_requant_acc(rt, acc, n * g->cin * g->h * g->w, r, dx);
}

static void dw_chunk(const conv_job *j, const ie_exec *ex, size_t s0, size_t c, int8_t *scratch, int64_t *dw) {
    const ie_conv_geom *g = j->g;
    size_t hw = (size_t)g->h * g->w, howo = (size_t)g->ho * g->wo, k = (size_t)g->cin_g * g->kh * g->kw;
    size_t cout_g = g->cout / g->group;
    for (uint32_t gi = 0; gi < g->group; gi++) {
        const int8_t *col = columns(ex, g, j->x + (s0 * g->cin + (size_t)gi * g->cin_g) * hw, (size_t)g->cin * hw, c, scratch);
        const int8_t *rows = rows_of(ex, j->dy + (s0 * g->cout + (size_t)gi * cout_g) * howo, (size_t)g->cout * howo,
                                     cout_g, howo, c, scratch + j->sc.rows);
        if (j->narrow) /* the whole batch: int32 sums written in dW's first half */
            ie_gemm32(ex, rows, col, (int32_t *)(void *)dw + (size_t)gi * cout_g * k, cout_g, k, c * howo);
        else
            ie_gemm64(ex, rows, col, dw + (size_t)gi * cout_g * k, cout_g, k, c * howo); /* adds to dw */
    }
}

/* scratch: ie_conv_scratch(g, n, IE_PROF_DW) bytes per thread; partial one [Cout, K] int64 sum
 * per thread when chunks are shared out, added in part order: exact, so the thread count
 * changes nothing. grad32 (NULL: int64 always): set to 1 when the batch is one chunk of at most
 * 2^17 terms a sum, whose sums are then int32 in dW's first half (ResNet-18's and MobileNetV2's
 * at 96 px and batch 16: no memset, no int64 adds, half the bytes for the optimizer). */
int32_t ie_conv_bwd_dw(const ie_exec *rt, const ie_conv_geom *g, size_t n, const int8_t *dy, int32_t edy,
                       const int8_t *x, int32_t ex, int8_t *scratch, int64_t *partial, int64_t *dw, uint8_t *grad32) {
    size_t k = (size_t)g->cin_g * g->kh * g->kw, size = (size_t)g->cout * k;
    uint32_t threads = ie_pool_threads(rt->pool);
    if (grad32) *grad32 = 0;
    if (depthwise(g)) {
        dw_run(rt, IE_PROF_DW, g, n, x, NULL, dy, scratch, NULL, dw);
        return edy + ex;
    }
    conv_job j = {rt, g, NULL, n, ie_conv_chunk(g, n), x, NULL, dy, scratch, scratch_of(g, n, IE_PROF_DW), NULL,
                  dw, size, dw_chunk, 0};
    if (IE_FAST_PATHS && grad32 && j.c >= n && (uint64_t)n * g->ho * g->wo <= IE_MAX_REDUCTION) {
        j.narrow = 1;
        run_chunks(&j); /* one chunk: on the caller, its GEMMs split over the pool */
        *grad32 = 1;
        return edy + ex;
    }
    size_t chunks = (n + j.c - 1) / j.c;
    if (threads > 1 && chunks >= threads) j.dw = partial; /* run_chunks shares the chunks out */
    else memset(dw, 0, sizeof(int64_t) * size);
    uint32_t parts = run_chunks(&j);
    if (parts > 1) {
        memcpy(dw, partial, sizeof(int64_t) * size);
        for (uint32_t p = 1; p < parts; p++)
            for (size_t i = 0; i < size; i++) dw[i] += partial[p * size + i];
    }
    return edy + ex;
}

/* sums[c] = the sum of channel c's planes over n samples of [channels, plane] int8 (bias gradients). */
static void ie_channel_sums(size_t n, size_t channels, size_t plane, const int8_t *x, int64_t *sums) {
    for (size_t c = 0; c < channels; c++) sums[c] = 0;
    for (size_t s = 0; s < n; s++)
        for (size_t c = 0; c < channels; c++) {
            const int8_t *d = x + (s * channels + c) * plane;
            int64_t sum = 0; /* a local: adds into sums[c] itself stayed scalar (a char may alias it) */
            for (size_t p = 0; p < plane; p++) sum += d[p];
            sums[c] += sum;
        }
}

/* ---- the op ------------------------------------------------------------------------------------ */

ie_conv_geom ie_conv_geometry(const ie_model *m, const ie_node_desc *nd, const ie_session_config *cfg,
                              int transposed) {
    const ie_tensor_desc *x = &m->tensors[nd->in[0]], *y = &m->tensors[nd->out[0]];
    if (transposed) { /* the convolution maps Y's shape to X's */
        const ie_tensor_desc *t = x;
        x = y;
        y = t;
    }
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
    g.chunk_cols = IE_FAST_PATHS && !(cfg && cfg->lean_scratch) ? IE_CONV_CHUNK_COLS : 0;
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
        ie_set_err(err, "a %" PRIu32 "x%" PRIu32 " input gives %" PRIu32 "x%" PRIu32 " outputs, not %" PRIu32
                        "x%" PRIu32, h, w, eh, ew, ho, wo);
        return IE_ERR_FORMAT;
    }
    return IE_OK;
}

/* Checks node nd whose convolution geometry is g (Conv's own, or ConvTranspose's as the
 * convolution it transposes) and whose bias has bias_channels values. */
ie_status ie_conv_check_geom(const ie_model *m, const ie_node_desc *nd, const ie_conv_geom *gp, uint32_t bias_channels,
                             char *err) {
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
    ie_conv_geom g = *gp;
    if (!g.group || g.cin % g.group || g.cout % g.group) {
        ie_set_err(err, "group %" PRIu32 " does not divide %" PRIu32 " input and %" PRIu32 " output channels", g.group, g.cin, g.cout);
        return IE_ERR_FORMAT;
    }
    if (w->dims[0] != g.cout || w->dims[1] != g.cin_g || w->dims[2] != g.kh || w->dims[3] != g.kw) {
        ie_set_err(err,
                   "weight [%" PRIu32 ",%" PRIu32 ",%" PRIu32 ",%" PRIu32 "] does not fit %" PRIu32 "->%" PRIu32
                   " channels, group %" PRIu32 ", kernel %" PRIu32 "x%" PRIu32,
                   w->dims[0], w->dims[1], w->dims[2], w->dims[3], g.cin, g.cout, g.group, g.kh, g.kw);
        return IE_ERR_FORMAT;
    }
    if ((uint64_t)g.cin_g * g.kh * g.kw > IE_MAX_REDUCTION || (uint64_t)(g.cout / g.group) * g.kh * g.kw > IE_MAX_REDUCTION) {
        ie_set_err(err, "a window of more than 2^17 terms");
        return IE_ERR_UNSUPPORTED;
    }
    if (nd->n_in > 2) {
        const ie_tensor_desc *b = &m->tensors[nd->in[2]];
        if (b->kind != IE_KIND_PARAM || b->numel != bias_channels) {
            ie_set_err(err, "the bias must be a parameter of %" PRIu32 " values", bias_channels);
            return IE_ERR_FORMAT;
        }
    }
    return ie_window_check(g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.dh, g.dw, g.pt, g.pl, g.pb, g.pr, g.ho, g.wo, err);
}

static ie_status conv_check(const ie_model *m, const ie_node_desc *nd, char *err, size_t errlen) {
    (void)errlen;
    ie_conv_geom g = ie_conv_geometry(m, nd, NULL, 0);
    return ie_conv_check_geom(m, nd, &g, g.cout, err);
}

int ie_conv_plan_params(ie_planner *p, uint32_t node, size_t weight_numel, size_t bias_channels) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node), x = nd->in[0], w = nd->in[1], y = nd->out[0];
    uint32_t b = nd->n_in > 2 ? nd->in[2] : IE_NONE;
    int bwd = ie_plan_requires_grad(p, y);
    int need_dx = bwd && ie_plan_requires_grad(p, x);
    int need_dw = bwd && ie_plan_param_trainable(p, w);
    ie_plan_param_buffer(p, w, IE_BUF_PARAM_W8, weight_numel, F, need_dx ? B : F);
    if (need_dw) {
        ie_plan_keep(p, x, B);
        ie_plan_param_buffer(p, w, IE_BUF_PARAM_GRAD, IE_SIZE(weight_numel, sizeof(int64_t)), B, B);
    }
    if (bwd && b != IE_NONE && ie_plan_param_trainable(p, b)) {
        ie_plan_param_buffer(p, b, IE_BUF_PARAM_GRAD, IE_SIZE(bias_channels, sizeof(int64_t)), B, B);
    }
    return need_dx | need_dw << 1;
}

static void conv_plan(ie_planner *p, uint32_t node) {
    const ie_model *m = ie_plan_model(p);
    const ie_node_desc *nd = &m->nodes[node];
    ie_conv_geom g = ie_conv_geometry(m, nd, ie_plan_config(p), 0);
    size_t n = ie_plan_batch(p), howo = (size_t)g.ho * g.wo, k = (size_t)g.cin_g * g.kh * g.kw;
    size_t cout_g = g.cout / g.group, t = ie_plan_threads(p); /* per-thread scratch, t copies */
    uint32_t F = ie_pos_fwd(m, node), B = ie_pos_bwd(m, node);
    int needs = ie_conv_plan_params(p, node, g.cout * k, g.cout);
    ie_plan_node_scratch(p, node, S_ACC, IE_SIZE(n, g.cout, howo, sizeof(int32_t)), F, F);
    size_t chunks = (n + ie_conv_chunk(&g, n) - 1) / ie_conv_chunk(&g, n);
    int direct = depthwise(&g); /* no weight transposes or partial sums */
    ie_plan_node_scratch(p, node, S_COL, IE_SIZE(t, ie_conv_scratch(&g, n, IE_PROF_FWD)), F, F);
    if (nd->n_in > 2) ie_plan_node_scratch(p, node, S_BIAS, IE_SIZE(g.cout, sizeof(int64_t)), F, F);
    if (needs & IE_CONV_NEEDS_DX) {
        if (!direct) ie_plan_node_scratch(p, node, S_WT, IE_SIZE(g.group, k, cout_g), B, B);
        ie_plan_node_scratch(p, node, S_DCOL, IE_SIZE(t, ie_conv_scratch(&g, n, IE_PROF_DX)), B, B);
        ie_plan_node_scratch(p, node, S_DX_ACC, IE_SIZE(n, g.cin, g.h, g.w, sizeof(int32_t)), B, B);
    }
    if (needs & IE_CONV_NEEDS_DW) {
        ie_plan_node_scratch(p, node, S_COL_B, IE_SIZE(t, ie_conv_scratch(&g, n, IE_PROF_DW)), B, B);
        if (!direct && t > 1 && chunks >= t) ie_plan_node_scratch(p, node, S_DW_PART, IE_SIZE(t, g.cout, k, sizeof(int64_t)), B, B);
    }
}

ie_conv_node ie_conv_open(ie_session *s, uint32_t node, ie_conv_geom g) {
    const ie_model *m = s->model;
    const ie_node_desc *nd = &m->nodes[node];
    ie_conv_node c = {g, s->nodes[node].scratch, &s->values[nd->in[0]], &s->values[nd->out[0]],
                      m->tensors[nd->in[1]].param, NULL, NULL};
    c.pw = &s->params[c.wi];
    c.pb = nd->n_in > 2 ? &s->params[m->tensors[nd->in[2]].param] : NULL;
    return c;
}

static ie_conv_node conv_open(ie_session *s, uint32_t node) {
    return ie_conv_open(s, node, ie_conv_geometry(s->model, &s->model->nodes[node], &s->cfg, 0));
}

void ie_conv_fwd_start(ie_session *s, uint32_t node, const ie_conv_node *c, ie_rounder r[3]) {
    ie_param_quantize(s, c->wi, c->pw->w8, 0, 0);
    for (uint32_t i = 0; i < 3; i++) r[i] = ie_session_rounder(s, ie_node_stream(node, IE_CONV_R_ACC + i));
}

void ie_conv_bias_update(ie_session *s, uint32_t node, const ie_conv_node *c, size_t channels, size_t plane) {
    if (!c->pb || !c->pb->trainable) return;
    ie_prof_switch(s->ex.prof, IE_PROF_DW);
    ie_channel_sums(s->n, channels, plane, c->y->g, c->pb->grad);
    c->pb->grad_e = c->y->ge;
    ie_optim_step(s, s->model->tensors[s->model->nodes[node].in[2]].param);
}

static void conv_forward(ie_session *s, uint32_t node) {
    ie_conv_node c = conv_open(s, node);
    ie_rounder r[3];
    ie_conv_fwd_start(s, node, &c, r);
    int q16 = ie_tensor_is_q16(s->model, &s->cfg, s->model->nodes[node].out[0]);
    c.y->e = ie_conv_fwd(&s->ex, &c.g, s->n, c.x->q, c.x->e, c.pw->w8, c.pw->e8, c.pb ? c.pb->w : NULL,
                         c.pb ? c.pb->we : 0, c.sc[S_COL], c.sc[S_ACC], c.sc[S_BIAS], r,
                         q16 ? NULL : c.y->q, q16 ? ie_q16(c.y) : NULL);
}

static void conv_backward(ie_session *s, uint32_t node) {
    ie_conv_node c = conv_open(s, node);
    if (c.x->requires_grad)
        c.x->ge = ie_conv_bwd_dx(&s->ex, &c.g, s->n, c.y->g, c.y->ge, c.pw->w8, c.pw->e8, c.sc[S_WT], c.sc[S_DCOL],
                                 c.sc[S_DX_ACC], ie_session_rounder(s, ie_node_stream(node, IE_CONV_R_DX)), c.x->g);
    if (c.pw->trainable) {
        ie_prof_switch(s->ex.prof, IE_PROF_DW);
        c.pw->grad_e = ie_conv_bwd_dw(&s->ex, &c.g, s->n, c.y->g, c.y->ge, c.x->q, c.x->e, c.sc[S_COL_B], c.sc[S_DW_PART],
                                      c.pw->grad, &c.pw->grad32);
        ie_optim_step(s, c.wi);
    }
    ie_conv_bias_update(s, node, &c, c.g.cout, (size_t)c.g.ho * c.g.wo);
}

const ie_op_def ie_op_conv = {"Conv", 2, 3, 1, conv_check, conv_plan, conv_forward, conv_backward};
