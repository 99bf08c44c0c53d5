/* Every kernel tier this CPU runs gives the same bytes as the scalar reference: GEMMs on odd and
 * random shapes (k = 0, tails of every length, misaligned rows, +-127 extremes, an int64
 * reduction past 2^17 terms), then absmax and requantization (the scalar one also against the
 * number format's definition). Integer only, no rand(), and under 1 MB of heap so it also runs
 * on a Cortex-M board. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "../../runtime/kernels/kernels.h"
#include "../../runtime/src/numeric.h"

#define LONG_K (((size_t)1 << 17) + 100) /* one full int32 block and a bit */

static uint32_t rng_state = 0x2545F491u;

static uint32_t next_u32(void) { /* xorshift32 */
    uint32_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return rng_state = x;
}

static uint32_t below(uint32_t n) { return n ? next_u32() % n : 0; }
static int8_t rand_s8(void) { return (int8_t)((int32_t)below(255) - 127); }

enum fill { RANDOM, PLUS, MINUS, SIGNS }; /* SIGNS: random +-127 */

static void fill_s8(int8_t *p, size_t n, enum fill how) {
    for (size_t i = 0; i < n; i++)
        p[i] = how == RANDOM ? rand_s8() : how == PLUS ? 127 : how == MINUS ? -127 : (next_u32() & 1 ? 127 : -127);
}

static void *alloc(size_t bytes) {
    void *p = malloc(bytes + 16); /* never malloc(0); the slack is not read by correct kernels */
    if (!p) {
        printf("out of memory (%lu bytes)\n", (unsigned long)bytes);
        exit(2);
    }
    return p;
}

/* One CHECK per kernel call; the case is printed when the bytes differ. */
static void expect_same(const void *ref, const void *got, size_t bytes, const ie_kernels *t, const char *op, long x,
                        long y, long z) {
    int same = memcmp(ref, got, bytes) == 0;
    CHECK(same);
    if (!same) printf("  %s %s differs at (%ld, %ld, %ld)\n", t->name, op, x, y, z);
}

/* Runs the GEMMs of tier t and of scalar on a (m x k) and b (n x k), the reduction-major one on
 * b transposed; outputs start poisoned differently so a skipped element shows up. */
static void check_gemm(const ie_kernels *t, const int8_t *a, const int8_t *b, size_t m, size_t n, size_t k) {
    size_t mn = m * n;
    int32_t *r32 = alloc(mn * 4), *t32 = alloc(mn * 4);
    int64_t *r64 = alloc(mn * 8), *t64 = alloc(mn * 8);
    memset(r32, 0x11, mn * 4);
    memset(t32, 0x22, mn * 4);
    memset(r64, 0x33, mn * 8); /* the s64 GEMM adds to c: both start from the same values */
    memset(t64, 0x33, mn * 8);
    if (k <= ((size_t)1 << 17)) {
        ie_kernels_scalar.gemm_s8s8_s32(a, b, r32, m, n, k);
        t->gemm_s8s8_s32(a, b, t32, m, n, k);
        expect_same(r32, t32, mn * 4, t, "gemm_s8s8_s32 (m, n, k)", (long)m, (long)n, (long)k);
        int8_t *bt = alloc(n * k);
        for (size_t j = 0; j < n; j++)
            for (size_t kk = 0; kk < k; kk++) bt[kk * n + j] = b[j * k + kk];
        memset(t32, 0x22, mn * 4);
        t->gemm_s8s8_s32_bt(a, bt, t32, m, n, k);
        expect_same(r32, t32, mn * 4, t, "gemm_s8s8_s32_bt (m, n, k)", (long)m, (long)n, (long)k);
        free(bt);
    }
    ie_kernels_scalar.gemm_s8s8_s64(a, b, r64, m, n, k);
    t->gemm_s8s8_s64(a, b, t64, m, n, k);
    expect_same(r64, t64, mn * 8, t, "gemm_s8s8_s64 (m, n, k)", (long)m, (long)n, (long)k);
    free(r32), free(t32), free(r64), free(t64);
}

/* Fresh operands of one shape; `skew` (0..3) misaligns both so no kernel relies on alignment. */
static void gemm_case(const ie_kernels *t, size_t m, size_t n, size_t k, enum fill fa, enum fill fb, size_t skew) {
    int8_t *abuf = alloc(m * k + skew), *bbuf = alloc(n * k + skew);
    fill_s8(abuf + skew, m * k, fa);
    fill_s8(bbuf + skew, n * k, fb);
    check_gemm(t, abuf + skew, bbuf + skew, m, n, k);
    free(abuf), free(bbuf);
}

static void test_gemm_shapes(const ie_kernels *t) {
    static const size_t shapes[][3] = {
        {1, 1, 1},   {1, 1, 0},    {3, 3, 0},    {0, 5, 3},    {4, 0, 3},    {1, 3, 127},  {3, 1, 17},
        {2, 4, 15},  {2, 4, 16},   {2, 4, 31},   {5, 7, 33},   {17, 17, 17}, {1, 255, 3},  {255, 1, 17},
        {3, 17, 255}, {17, 3, 256}, {2, 16, 9},  {7, 19, 1},   {16, 33, 64}, {3, 80, 1024}, {2, 65, 1025},
        {33, 17, 1000}, {1, 17, 4096}, {255, 17, 255},
        /* reduction-major GEMM: column blocks of 32 / 64 with tails, row groups of 4, k blocks of 512 */
        {16, 1024, 144}, {5, 130, 513}, {6, 97, 25}, {1, 200, 9}, {144, 64, 16}, {9, 63, 2},
    };
    size_t count = sizeof shapes / sizeof shapes[0];
    for (size_t s = 0; s < count; s++) gemm_case(t, shapes[s][0], shapes[s][1], shapes[s][2], RANDOM, RANDOM, s % 4);
    for (int r = 0; r < 24; r++) /* random shapes, small enough for an emulated MCU */
        gemm_case(t, 1 + below(40), 1 + below(40), below(300), RANDOM, RANDOM, (size_t)r % 4);
    /* extremes: every product is -127 * 127, or signs at random (largest partial sums) */
    gemm_case(t, 3, 5, 1000, PLUS, MINUS, 1);
    gemm_case(t, 2, 4, 4099, MINUS, MINUS, 2);
    gemm_case(t, 17, 9, 77, SIGNS, SIGNS, 3);
}

/* k = 2^17 (the int32 limit) and k past it (int64), on one buffer: +127 in the first half,
 * -127 in the second, with a and b as overlapping views so memory stays near 256 KB. */
static void test_gemm_long(const ie_kernels *t) {
    const size_t full = (size_t)1 << 17;
    int8_t *buf = alloc(2 * LONG_K);
    fill_s8(buf, LONG_K, PLUS);
    fill_s8(buf + LONG_K, LONG_K, MINUS);
    int32_t c32 = 0;
    int64_t c64 = 0;
    t->gemm_s8s8_s32(buf + LONG_K - full, buf + LONG_K, &c32, 1, 1, full);
    CHECK(c32 == -16129 * (int32_t)full); /* the most negative dot product int32 must hold */
    c32 = 0;
    t->gemm_s8s8_s32_bt(buf + LONG_K - full, buf + LONG_K, &c32, 1, 1, full);
    CHECK(c32 == -16129 * (int32_t)full);
    t->gemm_s8s8_s64(buf, buf + LONG_K, &c64, 1, 1, LONG_K);
    CHECK(c64 == -16129 * (int64_t)LONG_K);
    t->gemm_s8s8_s64(buf + LONG_K, buf + LONG_K, &c64, 1, 1, LONG_K); /* adds: back to 0 */
    CHECK(c64 == 0);
    check_gemm(t, buf, buf + LONG_K - 50, 1, 1, LONG_K); /* crosses the sign boundary */
    fill_s8(buf, 2 * LONG_K, RANDOM);
    check_gemm(t, buf + 3, buf + 7, 2, 2, LONG_K - 5);   /* rows overlap; fine for const inputs */
    check_gemm(t, buf + 1, buf + 2, 2, 1, full);
    free(buf);
}

static int32_t rand_s32(void) {
    switch (below(8)) {
    case 0: return INT32_MAX;
    case 1: return INT32_MIN;
    case 2: return (int32_t)below(255) - 127;
    default: return (int32_t)next_u32();
    }
}

static void test_requant(const ie_kernels *t) {
    static const size_t lengths[] = {0, 1, 7, 16, 33, 100, 1000};
    static const size_t inners[] = {1, 3, 16};
    static const int shifts[] = {-3, -1, 0, 1, 7, 20, 31, 32, 33, 40, 62, 63};
    size_t nl = sizeof lengths / sizeof lengths[0], ni = sizeof inners / sizeof inners[0];
    size_t ns = sizeof shifts / sizeof shifts[0];
    int32_t *acc = alloc(1000 * 4);
    int64_t bias[5];
    int8_t *ro = alloc(1000), *to = alloc(1000);
    for (size_t l = 0; l < nl; l++)
        for (size_t in = 0; in < ni; in++)
            for (size_t channels = 1; channels <= 5; channels += 4)
                for (int with_bias = 0; with_bias < 2; with_bias++) {
                    size_t n = lengths[l], inner = inners[in];
                    for (size_t i = 0; i < n; i++) acc[i] = rand_s32();
                    for (size_t c = 0; c < 5; c++) bias[c] = (int64_t)rand_s32() * (int64_t)(1 + below(4));
                    const int64_t *bp = with_bias ? bias : NULL;
                    uint64_t whole = ie_kernels_scalar.absmax_s32_bias(acc, 0, n, bp, inner, channels);
                    size_t cut = below((uint32_t)n + 1); /* any split into ranges gives the same result */
                    uint64_t m0 = t->absmax_s32_bias(acc, 0, cut, bp, inner, channels);
                    uint64_t m1 = t->absmax_s32_bias(acc, cut, n, bp, inner, channels);
                    CHECK(t->absmax_s32_bias(acc, 0, n, bp, inner, channels) == whole);
                    CHECK((m0 > m1 ? m0 : m1) == whole);
                    for (size_t s = 0; s < ns; s++)
                        for (uint32_t nearest = 0; nearest < 2; nearest++) {
                            uint32_t key = next_u32();
                            memset(ro, 0x55, n);
                            memset(to, 0x66, n);
                            ie_kernels_scalar.requant_s32_bias_s8(acc, 0, n, bp, inner, channels, shifts[s], key, nearest, ro);
                            /* the reference's fast paths (int32 lanes, branch-free shifts) against
                             * the number format's definition */
                            ie_rounder rd = {key, nearest};
                            for (size_t i = 0; i < n; i++) {
                                int64_t x = (int64_t)acc[i] + (bp ? bp[(i / inner) % channels] : 0);
                                to[i] = (int8_t)ie_clamp64(ie_shift_round(x, shifts[s], ie_draw(rd, (uint32_t)i)), 127);
                            }
                            expect_same(to, ro, n, t, "requant definition (n, inner, s)", (long)n, (long)inner, shifts[s]);
                            memset(to, 0x66, n);
                            t->requant_s32_bias_s8(acc, 0, cut, bp, inner, channels, shifts[s], key, nearest, to);
                            t->requant_s32_bias_s8(acc, cut, n, bp, inner, channels, shifts[s], key, nearest, to);
                            expect_same(ro, to, n, t, nearest ? "requant nearest (n, inner, s)" : "requant (n, inner, s)",
                                        (long)n, (long)inner, shifts[s]);
                        }
                }
    free(acc), free(ro), free(to);
}

/* The transposes (vector tiles where the build has 128-bit vectors, element loops at the edges)
 * against the definition dst[j][i] = src[i][j], on shapes around the tile and block sizes. The
 * destination starts poisoned, so an element never written shows up. */
static void test_transposes(void) {
    static const size_t sizes[] = {0, 1, 3, 4, 5, 15, 16, 17, 31, 33, 63, 64, 65, 100, 130};
    const size_t ns = sizeof sizes / sizeof sizes[0];
    int8_t *s8 = alloc(130 * 130), *d8 = alloc(130 * 130), *r8 = alloc(130 * 130);
    int32_t *s32 = alloc(130 * 130 * 4), *d32 = alloc(130 * 130 * 4), *r32 = alloc(130 * 130 * 4);
    for (size_t a = 0; a < ns; a++)
        for (size_t b = 0; b < ns; b++) {
            size_t rows = sizes[a], cols = sizes[b], n = rows * cols;
            for (size_t i = 0; i < n; i++) s8[i] = (int8_t)next_u32(), s32[i] = (int32_t)next_u32();
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < cols; j++) r8[j * rows + i] = s8[i * cols + j], r32[j * rows + i] = s32[i * cols + j];
            memset(d8, 0x5a, n);
            memset(d32, 0x5a, n * 4);
            ie_transpose_s8(s8, rows, cols, d8);
            ie_transpose_s32(s32, rows, cols, d32);
            int same8 = memcmp(r8, d8, n) == 0, same32 = memcmp(r32, d32, n * 4) == 0;
            CHECK(same8 && same32);
            if (!same8 || !same32) printf("  transpose %lu x %lu differs (s8 %d, s32 %d)\n", (unsigned long)rows,
                                          (unsigned long)cols, !same8, !same32);
        }
    free(s8), free(d8), free(r8), free(s32), free(d32), free(r32);
}

int main(void) {
    const ie_kernels *t;
    uint32_t i;
    CHECK(ie_kernels_at(0) == &ie_kernels_scalar); /* scalar runs everywhere and is the worst */
    for (i = 0; (t = ie_kernels_at(i)) != NULL; i++) {
        printf("tier %u: %s\n", (unsigned)i, t->name);
        CHECK(ie_kernels_select(t->name) == t);
        CHECK(t->gemm_s8s8_s32 && t->gemm_s8s8_s64 && t->gemm_s8s8_s32_bt && t->absmax_s32_bias && t->requant_s32_bias_s8);
        test_gemm_shapes(t);
        test_gemm_long(t);
        test_requant(t);
    }
    CHECK(ie_kernels_select(NULL) == ie_kernels_at(i - 1)); /* the default is the best */
    test_transposes();
    CHECK(ie_kernels_select("no-such-tier") == NULL);
    printf("%u tiers tested, default %s\n", (unsigned)i, ie_kernels_select(NULL)->name);
    return CHECK_DONE();
}
