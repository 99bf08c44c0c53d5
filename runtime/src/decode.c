/* CenterNet decoding in integers, for firmware (intedge.h: ie_centernet_decode). It gives what
 * the host decoder (python/intedge/detect.py: decode) gives on the same int8 output: sigmoid is
 * monotone, so peaks, ranking and the score threshold compare logits; the boxes are exact
 * rationals of the int8 regressions, rounded once to 1/256 pixel. */
#include "internal.h"

/* q * 2^e > t * 2^-16, exactly (|q| <= 127, e in [-30, 7]) */
static int above_q16(int32_t q, int32_t e, int32_t t) {
    int32_t s = e + 16;
    return s >= 0 ? (int64_t)q * ((int64_t)1 << s) > t : q > (t >> -s); /* q > x <=> q > floor(x) for an integer q */
}

/* a * stride * 256 / 2^m rounded to nearest (halves up) and saturated to int32: a box coordinate
 * in 1/256 pixel from a in units of 2^-m (|a| < 2^47, stride <= 1024: no overflow) */
static int32_t pixels_q8(int64_t a, int32_t m, uint32_t stride) {
    int64_t v = a * stride;
    v = m <= 8 ? v * ((int64_t)1 << (8 - m)) : (v + ((int64_t)1 << (m - 9))) >> (m - 8);
    return (int32_t)(v > INT32_MAX ? INT32_MAX : v < -INT32_MAX ? -INT32_MAX : v);
}

/* Does logit q at flat index (class-major, then raster) outrank detection d? By logit, then the
 * first in that order, as the host's stable sort. */
static int outranks(int32_t q, uint64_t index, const ie_detection *d, uint32_t h, uint32_t w) {
    return q > d->logit_q || (q == d->logit_q && index < ((uint64_t)d->class_id * h + d->cy) * w + d->cx);
}

/* heat[i, j] is its 3x3 neighbourhood's max; of equal neighbours only the first in raster order */
static int is_peak(const int8_t *heat, uint32_t h, uint32_t w, uint32_t i, uint32_t j) {
    int32_t q = heat[i * w + j];
    for (uint32_t di = i ? i - 1 : 0; di <= i + 1 && di < h; di++)
        for (uint32_t dj = j ? j - 1 : 0; dj <= j + 1 && dj < w; dj++) {
            int32_t o = heat[di * w + dj];
            if ((di < i || (di == i && dj < j)) ? q <= o : q < o) return 0;
        }
    return 1;
}

ie_status ie_centernet_decode(const int8_t *out_q, int16_t out_e, uint32_t classes, uint32_t h, uint32_t w,
                              uint32_t stride, int32_t min_logit_q16, uint32_t k, ie_detection *dets, uint32_t *n_dets) {
    if (!out_q || !dets || !n_dets || classes < 1 || h < 1 || w < 1 || h > 32768 || w > 32768 || stride < 1 ||
        stride > 1024 || k < 1 || (uint64_t)(classes + 4) * h * w > INT32_MAX || out_e < -30 || out_e > 7)
        return IE_ERR_ARG;
    uint32_t n = 0; /* dets[0..n) ranked best first; a peak that ranks below the k-th is dropped */
    for (uint32_t c = 0; c < classes; c++) {
        const int8_t *heat = out_q + (size_t)c * h * w;
        for (uint32_t i = 0; i < h; i++)
            for (uint32_t j = 0; j < w; j++) {
                int32_t q = heat[i * w + j];
                uint64_t index = ((uint64_t)c * h + i) * w + j;
                if (!above_q16(q, out_e, min_logit_q16) || !is_peak(heat, h, w, i, j) ||
                    (n == k && !outranks(q, index, &dets[k - 1], h, w)))
                    continue;
                uint32_t at = n < k ? n++ : k - 1;
                for (; at > 0 && outranks(q, index, &dets[at - 1], h, w); at--) dets[at] = dets[at - 1];
                dets[at] = (ie_detection){0, 0, 0, 0, q, c, j, i};
            }
    }
    /* w, h = size * R; x = (cx + offset x) * R - w / 2; in units of 2^-m, m >= 1 - e: all exact */
    const int8_t *box = out_q + (size_t)classes * h * w; /* the w, h, offset x, offset y planes */
    int32_t m = out_e < 0 ? 1 - out_e : 1, up = out_e + m;
    size_t hw = (size_t)h * w;
    for (uint32_t d = 0; d < n; d++) {
        size_t cell = (size_t)dets[d].cy * w + dets[d].cx;
        int64_t bw = (int64_t)box[cell] * ((int64_t)1 << up), bh = (int64_t)box[hw + cell] * ((int64_t)1 << up);
        int64_t ox = (int64_t)box[2 * hw + cell] * ((int64_t)1 << up), oy = (int64_t)box[3 * hw + cell] * ((int64_t)1 << up);
        dets[d].w_q8 = pixels_q8(bw, m, stride);
        dets[d].h_q8 = pixels_q8(bh, m, stride);
        dets[d].x_q8 = pixels_q8((int64_t)dets[d].cx * ((int64_t)1 << m) + ox - bw / 2, m, stride);
        dets[d].y_q8 = pixels_q8((int64_t)dets[d].cy * ((int64_t)1 << m) + oy - bh / 2, m, stride);
    }
    *n_dets = n;
    return IE_OK;
}
