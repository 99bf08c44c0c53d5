/* ie_centernet_decode (runtime/src/decode.c), the firmware's CenterNet decoder, on outputs written
 * here whose detections are worked out by hand in the comments: peaks (of equal neighbours the
 * first in raster order), the score threshold, ranking across classes, the top-k cut, boxes in
 * 1/256 pixel with their rounding, and the refused arguments. It runs on every target the C tests
 * run on, the Cortex-M ones under qemu included. */
#include <string.h>

#include "check.h"
#include "intedge.h"

enum { CLASSES = 2, H = 3, W = 6, HW = H * W, STRIDE = 4 };

/* [CLASSES + 4, H, W] at exponent -2 (ulp 1/4):
 *   class 0 heat   12 at (1, 4), 8 at (2, 0) and (2, 1): peaks (1, 4) at 3.0 and (2, 0) at 2.0; (2, 1)
 *                  equals its earlier neighbour (2, 0) and is none;
 *   class 1 heat   12 at (0, 3), a peak; 4 at (1, 3) under it, none; -8 at (2, 0), below any score 1/2;
 *   w, h, offset x, offset y at the peaks (cells: q / 4; pixels: * 4):
 *     (1, 4): 8, 6, 2, -1 -> w 8 px, h 6 px, x (4 + 0.5) 4 - 4 = 14 px, y (1 - 0.25) 4 - 3 = 0 px;
 *     (0, 3): 5, 3, 1, 3  -> w 5, h 3, x (3 + 0.25) 4 - 2.5 = 10.5, y (0 + 0.75) 4 - 1.5 = 1.5;
 *     (2, 0): 1, 1, 0, 0  -> w 1, h 1, x -0.5, y 2 * 4 - 0.5 = 7.5. */
static void fill(int8_t *out) {
    memset(out, 0, (CLASSES + 4) * HW);
    int8_t *heat0 = out, *heat1 = out + HW, *box = out + CLASSES * HW;
    heat0[1 * W + 4] = 12;
    heat0[2 * W + 0] = heat0[2 * W + 1] = 8;
    heat1[0 * W + 3] = 12;
    heat1[1 * W + 3] = 4;
    heat1[2 * W + 0] = -8;
    const int8_t at14[4] = {8, 6, 2, -1}, at03[4] = {5, 3, 1, 3}, at20[4] = {1, 1, 0, 0};
    for (int r = 0; r < 4; r++) {
        box[r * HW + 1 * W + 4] = at14[r];
        box[r * HW + 0 * W + 3] = at03[r];
        box[r * HW + 2 * W + 0] = at20[r];
    }
}

static int is_detection(const ie_detection *d, uint32_t cls, uint32_t cy, uint32_t cx, int32_t logit, int32_t x, int32_t y,
                        int32_t w, int32_t h) {
    return d->class_id == cls && d->cy == cy && d->cx == cx && d->logit_q == logit && d->x_q8 == x && d->y_q8 == y &&
           d->w_q8 == w && d->h_q8 == h;
}

/* Score > 1/2 (logit > 0): the three peaks, best first; of the two at 3.0 class 0 first. */
static void test_peaks_ranking_and_boxes(const int8_t *out) {
    ie_detection d[8];
    uint32_t n = 99;
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, STRIDE, 0, 8, d, &n) == IE_OK);
    CHECK(n == 3);
    CHECK(is_detection(&d[0], 0, 1, 4, 12, 14 * 256, 0, 8 * 256, 6 * 256));
    CHECK(is_detection(&d[1], 1, 0, 3, 12, 2688, 384, 5 * 256, 3 * 256)); /* 10.5 and 1.5 px */
    CHECK(is_detection(&d[2], 0, 2, 0, 8, -128, 1920, 256, 256));        /* -0.5 and 7.5 px */
}

/* A threshold at logit 2.5 keeps the two at 3.0; k = 1 keeps the best alone; k = 2 with the
 * threshold at 0 cuts the 2.0. */
static void test_threshold_and_top_k(const int8_t *out) {
    ie_detection d[8];
    uint32_t n = 0;
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, STRIDE, 5 * 65536 / 2, 8, d, &n) == IE_OK && n == 2);
    CHECK(d[0].class_id == 0 && d[1].class_id == 1);
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, STRIDE, 3 * 65536, 8, d, &n) == IE_OK && n == 0); /* not above */
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, STRIDE, 0, 1, d, &n) == IE_OK && n == 1);
    CHECK(is_detection(&d[0], 0, 1, 4, 12, 14 * 256, 0, 8 * 256, 6 * 256));
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, STRIDE, 0, 2, d, &n) == IE_OK && n == 2);
    CHECK(d[0].class_id == 0 && d[1].class_id == 1 && d[1].cx == 3);
}

/* At exponent -10 (cells in units of 2^-11 after the half) boxes round to 1/256 pixel, halves up:
 * one class, a peak of 100 at (0, 0), w = h = 3 / 1024 cells at stride 1: 0.75 / 256 px -> 1;
 * x = y = -1.5 / 1024 -> -0.375 / 256 px -> 0. A logit of 100 / 1024 > 0 is a detection. */
static void test_rounding_to_a_256th(void) {
    int8_t out[5 * 2 * 2];
    memset(out, 0, sizeof out);
    out[0] = 100;
    out[4] = out[8] = 3; /* w and h planes at (0, 0) */
    ie_detection d[2];
    uint32_t n = 0;
    CHECK(ie_centernet_decode(out, -10, 1, 2, 2, 1, 0, 2, d, &n) == IE_OK && n == 1);
    CHECK(is_detection(&d[0], 0, 0, 0, 100, 0, 0, 1, 1));
}

static void test_refused_arguments(const int8_t *out) {
    ie_detection d[2];
    uint32_t n;
    CHECK(ie_centernet_decode(NULL, -2, CLASSES, H, W, STRIDE, 0, 2, d, &n) == IE_ERR_ARG);
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, STRIDE, 0, 0, d, &n) == IE_ERR_ARG);         /* k = 0 */
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, 0, 0, 2, d, &n) == IE_ERR_ARG);              /* stride 0 */
    CHECK(ie_centernet_decode(out, 8, CLASSES, H, W, STRIDE, 0, 2, d, &n) == IE_ERR_ARG);          /* e > 7 */
    CHECK(ie_centernet_decode(out, -2, CLASSES, H, W, STRIDE, 0, 2, NULL, &n) == IE_ERR_ARG);
}

int main(void) {
    int8_t out[(CLASSES + 4) * HW];
    fill(out);
    test_peaks_ranking_and_boxes(out);
    test_threshold_and_top_k(out);
    test_rounding_to_a_256th();
    test_refused_arguments(out);
    return CHECK_DONE();
}
