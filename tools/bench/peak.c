/* This CPU's int8 multiply-accumulate peak for the benchmark: independent chains of vpdpbusd
 * (AVX-512 VNNI) or vpmaddubsw+vpmaddwd (AVX2) on registers, no memory traffic.
 * Prints giga-ops per second (one multiply-add = 2 ops) on one thread. */
#include <immintrin.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

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

__attribute__((target("avx2"))) static double avx2(long iters) {
    __m256i a = _mm256_set1_epi8(3), b = _mm256_set1_epi8(5), ones = _mm256_set1_epi16(1), acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm256_setzero_si256();
    double t0 = now();
    for (long i = 0; i < iters; i++)
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++) acc[j] = _mm256_add_epi32(acc[j], _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones));
    double t = now() - t0;
    int sink = 0;
    for (int j = 0; j < 16; j++) sink += _mm256_extract_epi32(acc[j], 0);
    if (sink == 42) puts("");
    return iters * 16.0 * 32 * 2 / t / 1e9;
}

int main(int argc, char **argv) {
    long iters = 20000000;
    if (argc > 1 && strcmp(argv[1], "avx2") == 0) printf("%.1f\n", avx2(iters));
    else printf("%.1f\n", vnni(iters));
    return 0;
}
