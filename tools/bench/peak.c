/* This CPU's int8 multiply-accumulate peak for the benchmark, for the kernel tier that runs:
 * 16 independent chains of the tier's own int8 multiply-accumulate on registers, no memory
 * traffic. `peak vnni` (AVX-512 VNNI vpdpbusd), `peak avx2` (vpmaddubsw + vpmaddwd), `peak
 * neon` (smull + smlal2 + sadalp) or `peak dotprod` (sdot). Prints giga-ops per second (one
 * multiply-add = 2 ops) on one thread; exit status 2 for a loop this build has not. */
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static double vnni(long iters) {
    __m512i a = _mm512_set1_epi8(3), b = _mm512_set1_epi8(5), acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_setzero_si512();
    double t0 = now();
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 16 /* keeps the 16 sums in registers: a loop over the array stores them */
        for (int j = 0; j < 16; j++) acc[j] = _mm512_dpbusd_epi32(acc[j], a, b);
    double t = now() - t0;
    int sink = 0;
    for (int j = 0; j < 16; j++) sink += _mm512_reduce_add_epi32(acc[j]);
    if (sink == 42) puts("");
    return iters * 16.0 * 64 * 2 / t / 1e9;
}

/* The products take a constant a and b, so a barrier makes a look new to the compiler at each
 * step (it emits nothing): without it the products are hoisted out of the loop, which then
 * measured vpaddd. 8 sums leave registers for a, b and the ones. */
__attribute__((target("avx2"))) static double avx2(long iters) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5), ones = _mm256_set1_epi16(1), acc[8];
    for (int i = 0; i < 8; i++) acc[i] = _mm256_setzero_si256();
    double t0 = now();
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            __asm__ volatile("" : "+x"(a));
            acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
        }
    double t = now() - t0;
    for (int j = 1; j < 8; j++) acc[0] = _mm256_add_epi32(acc[0], acc[j]);
    if (_mm256_extract_epi32(acc[0], 0) == 42) puts("");
    return iters * 8.0 * 32 * 2 / t / 1e9;
}
#endif

#if defined(__aarch64__)
#pragma GCC target("arch=armv8.2-a+dotprod") /* the sdot loop; each function runs only if asked */
#include <arm_neon.h>

/* 16 chains of one multiply-accumulate step on int32x4 sums, 16 multiply-adds a step; the
 * barrier keeps neon's products (not on the chain) inside the loop, as in avx2 */
#define ARM_PEAK(name, STEP)                                                   \
    static double name(long iters) {                                          \
        int8x16_t a = vdupq_n_s8(3), b = vdupq_n_s8(5);                        \
        int32x4_t acc[16];                                                     \
        for (int i = 0; i < 16; i++) acc[i] = vdupq_n_s32(0);                  \
        double t0 = now();                                                     \
        for (long i = 0; i < iters; i++)                                       \
            _Pragma("GCC unroll 16") for (int j = 0; j < 16; j++) {               \
                __asm__ volatile("" : "+w"(a));                                \
                acc[j] = STEP;                                                 \
            }                                                                  \
        double t = now() - t0;                                                 \
        int sink = 0;                                                          \
        for (int j = 0; j < 16; j++) sink += vaddvq_s32(acc[j]);               \
        if (sink == 42) puts("");                                              \
        return iters * 16.0 * 16 * 2 / t / 1e9;                                \
    }
ARM_PEAK(neon, vpadalq_s16(acc[j], vmlal_high_s8(vmull_s8(vget_low_s8(a), vget_low_s8(b)), a, b)))
ARM_PEAK(dotprod, vdotq_s32(acc[j], a, b))
#endif

int main(int argc, char **argv) {
    long iters = 20000000;
    const char *loop = argc > 1 ? argv[1] : "";
#if defined(__x86_64__) || defined(__i386__)
    if (strcmp(loop, "vnni") == 0) return printf("%.1f\n", vnni(iters)) < 0;
    if (strcmp(loop, "avx2") == 0) return printf("%.1f\n", avx2(iters)) < 0;
#elif defined(__aarch64__)
    if (strcmp(loop, "neon") == 0) return printf("%.1f\n", neon(iters)) < 0;
    if (strcmp(loop, "dotprod") == 0) return printf("%.1f\n", dotprod(iters)) < 0;
#endif
    fprintf(stderr, "peak: no loop '%s' in this build\n", loop);
    return 2;
}
