/* Convolution sums against their definition: the exact int32 accumulators of the forward and of
 * dX, and dW's int64 sums, for the direct depthwise path, and for the chunked GEMM paths (several
 * samples per GEMM: the last chunk short, 1 x 1 columns, dX as a convolution and through dcol),
 * on every kernel tier this CPU runs, with and without a pool. The int8 outputs are requantized
 * from these sums, so equal sums are equal bytes. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ops/ops.h"

static uint32_t rng = 12345;
static int8_t rand_s8(void) {
    rng = rng * 1664525u + 1013904223u;
    return (int8_t)((int)(rng >> 24) % 255 - 127); /* -127..127 */
}

static uint32_t out_size(uint32_t in, uint32_t k, uint32_t s, uint32_t d, uint32_t p0, uint32_t p1) {
    uint32_t span = d * (k - 1) + 1, padded = in + p0 + p1;
    return padded < span ? 0 : (padded - span) / s + 1;
}

/* group, kh, kw, sh, sw, dh, dw, pt, pl, pb, pr, cin, h, w, cout */
static size_t narrow_cases; /* dW's taking the int32 path */

static const uint32_t CASES[][15] = {
    {3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, 7, 5, 3},     /* depthwise, one run per tap */
    {4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4, 9, 9, 4},     /* depthwise, stride 2 */
    {4, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 4, 9, 9, 8},     /* two outputs per input channel: grouped GEMMs */
    {2, 5, 3, 1, 1, 2, 1, 2, 1, 1, 0, 2, 6, 11, 2},    /* depthwise, dilation, asymmetric pads */
    {3, 3, 3, 3, 3, 1, 1, 0, 0, 0, 0, 3, 10, 4, 3},    /* depthwise, stride 3, no padding */
    {5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5, 1, 1, 5},     /* depthwise on 1 x 1 planes */
    {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 20, 20, 2},   /* depthwise, many rows */
    {2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 4, 5, 5, 6},     /* grouped (2 channels a group) */
    {1, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 3, 9, 7, 5},     /* stride 2: dX through dcol */
    {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 6, 4, 4, 4},     /* 1 x 1: columns are the input */
    {1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 3, 6, 6, 4},     /* 'same': dX as a convolution */
    {1, 3, 3, 1, 1, 1, 1, 0, 0, 0, 0, 2, 6, 6, 3},     /* valid: dX through dcol */
    {1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 2, 20, 20, 3},   /* 400 columns: chunks of 3, the last short */
};

static void check_case(const uint32_t *v, const ie_exec *rt, size_t n) {
    ie_conv_geom g = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14],
                      0, 0, v[11] / v[0], IE_CONV_CHUNK_COLS};
    g.ho = out_size(g.h, g.kh, g.sh, g.dh, g.pt, g.pb);
    g.wo = out_size(g.w, g.kw, g.sw, g.dw, g.pl, g.pr);
    size_t hw = (size_t)g.h * g.w, howo = (size_t)g.ho * g.wo, cout_g = g.cout / g.group;
    size_t k = (size_t)g.cin_g * g.kh * g.kw, threads = ie_pool_threads(rt->pool);
    size_t nx = n * g.cin * hw, ny = n * g.cout * howo, nw = g.cout * k;
    int8_t *x = malloc(nx), *dy = malloc(ny), *w = malloc(nw), *wt = malloc(nw), *y = malloc(ny), *dx = malloc(nx);
    int32_t *acc = malloc(sizeof(int32_t) * (nx > ny ? nx : ny)), *want = calloc(nx > ny ? nx : ny, sizeof(int32_t));
    int64_t *dw = malloc(sizeof(int64_t) * nw), *dw_want = calloc(nw, sizeof(int64_t));
    int64_t *partial = malloc(sizeof(int64_t) * nw * threads), bias_al[64];
    size_t sc = ie_conv_scratch(&g, n, IE_PROF_FWD);
    if (ie_conv_scratch(&g, n, IE_PROF_DX) > sc) sc = ie_conv_scratch(&g, n, IE_PROF_DX);
    if (ie_conv_scratch(&g, n, IE_PROF_DW) > sc) sc = ie_conv_scratch(&g, n, IE_PROF_DW);
    int8_t *scratch = malloc(sc * threads);
    for (size_t i = 0; i < nx; i++) x[i] = rand_s8();
    for (size_t i = 0; i < ny; i++) dy[i] = rand_s8();
    for (size_t i = 0; i < nw; i++) w[i] = rand_s8();
    x[0] = -127; /* the extremes */
    w[0] = 127;
    ie_rounder r[3] = {{1, 0}, {2, 0}, {3, 0}};

    /* the definition, one product at a time: the forward's sums, dX's and dW's */
    int32_t *want_dx = calloc(nx, sizeof(int32_t));
    for (size_t s = 0; s < n; s++)
        for (size_t o = 0; o < g.cout; o++)
            for (size_t oh = 0; oh < g.ho; oh++)
                for (size_t ow = 0; ow < g.wo; ow++)
                    for (size_t c = 0; c < g.cin_g; c++)
                        for (size_t i = 0; i < g.kh; i++)
                            for (size_t j = 0; j < g.kw; j++) {
                                long ih = (long)(oh * g.sh + i * g.dh) - (long)g.pt;
                                long iw = (long)(ow * g.sw + j * g.dw) - (long)g.pl;
                                if (ih < 0 || iw < 0 || ih >= (long)g.h || iw >= (long)g.w) continue;
                                size_t ci = (o / cout_g) * g.cin_g + c;
                                size_t xi = (s * g.cin + ci) * hw + (size_t)ih * g.w + (size_t)iw;
                                size_t yi = (s * g.cout + o) * howo + oh * g.wo + ow, wi = (o * g.cin_g + c) * g.kh * g.kw + i * g.kw + j;
                                want[yi] += w[wi] * x[xi];
                                want_dx[xi] += w[wi] * dy[yi];
                                dw_want[wi] += dy[yi] * x[xi];
                            }
    ie_conv_fwd(rt, &g, n, x, 0, w, 0, NULL, 0, scratch, acc, bias_al, r, y, NULL);
    CHECK(memcmp(acc, want, sizeof(int32_t) * ny) == 0);
    ie_conv_bwd_dx(rt, &g, n, dy, 0, w, 0, wt, scratch, acc, r[0], dx);
    CHECK(memcmp(acc, want_dx, sizeof(int32_t) * nx) == 0);
    free(want_dx);

    ie_conv_bwd_dw(rt, &g, n, dy, 0, x, 0, scratch, partial, dw, NULL);
    CHECK(memcmp(dw, dw_want, sizeof(int64_t) * nw) == 0);
    uint8_t narrow; /* int32 sums where the batch is one chunk: the same values, widened here */
    memset(dw, 0x5a, sizeof(int64_t) * nw);
    ie_conv_bwd_dw(rt, &g, n, dy, 0, x, 0, scratch, partial, dw, &narrow);
    for (size_t i = nw; narrow && i-- > 0;) {
        int32_t sum;
        memcpy(&sum, (const char *)dw + 4 * i, 4);
        dw[i] = sum;
    }
    narrow_cases += narrow;
    CHECK(memcmp(dw, dw_want, sizeof(int64_t) * nw) == 0);
    free(x), free(dy), free(w), free(wt), free(y), free(dx), free(acc), free(want), free(dw), free(dw_want);
    free(partial), free(scratch);
}

int main(void) {
    ie_pool *pool = ie_pool_create(2); /* NULL without threads: then the pool runs are the caller's */
    for (uint32_t t = 0; ie_kernels_at(t); t++)
        for (size_t c = 0; c < sizeof CASES / sizeof CASES[0]; c++)
            for (size_t n = 1; n <= 5; n += 4) {
                ie_exec single = {ie_kernels_at(t), NULL, NULL, NULL}, pooled = {ie_kernels_at(t), pool, NULL, NULL};
                check_case(CASES[c], &single, n);
                check_case(CASES[c], &pooled, n);
            }
    ie_pool_free(pool);
    CHECK(!IE_FAST_PATHS || narrow_cases > 0);
    return CHECK_DONE();
}
