/* A per-session thread pool (pthreads; absent on bare metal) and the GEMM entry points that
 * split work across it. Work is split by output rows, each row computed whole by one thread,
 * so results are identical for every thread count. */
#ifndef IE_THREADS_H
#define IE_THREADS_H

#include <stddef.h>
#include <stdint.h>

#include "../kernels/kernels.h"
#include "profile.h"

#define IE_MAX_THREADS 64

typedef struct ie_pool ie_pool;

/* Evaluation's wide output (session.c, ops/requant.c): the requantization that writes the int8
 * values of y also rounds its accumulator, in place, to |q| < 2^IE_WIDE_BITS (exact as float32),
 * at y's exponent + delta; q points at them (the op's scratch: read them before another node
 * runs), and hit is set. */
#define IE_WIDE_BITS 23
typedef struct ie_wide_capture {
    const int8_t *y;
    const int32_t *q;
    int32_t delta;
    int hit;
} ie_wide_capture;

/* What the arithmetic needs to run: a kernel tier and, optionally, a pool, a profile and a wide
 * capture. */
typedef struct ie_exec {
    const ie_kernels *k;
    ie_pool *pool;
    ie_prof *prof; /* NULL unless the session profiles itself */
    ie_wide_capture *wide; /* NULL except while evaluation runs the output's node */
} ie_exec;

/* The thread count a config asks for, as the pool will honour it (1 without threads). */
uint32_t ie_threads_planned(uint32_t threads);

/* [begin, end) of part `part` when n items are shared by `parts`. */
static inline void ie_part_range(size_t n, uint32_t part, uint32_t parts, size_t *begin, size_t *end) {
    *begin = n * part / parts;
    *end = n * (part + 1) / parts;
}

/* threads <= 1 gives NULL (no pool); NULL is also returned when threads cannot be started. */
ie_pool *ie_pool_create(uint32_t threads);
void ie_pool_free(ie_pool *pool);
uint32_t ie_pool_threads(const ie_pool *pool);

/* Runs fn(ctx, part, parts) for part in [0, parts) across the pool (the caller runs one part). */
void ie_pool_run(ie_pool *pool, void (*fn)(void *ctx, uint32_t part, uint32_t parts), void *ctx);

/* The exec a pool part runs its own GEMMs with: no pool (it is not re-entered), and the profile
 * on part 0 only (the calling thread). */
static inline ie_exec ie_exec_part(const ie_exec *ex, uint32_t part) {
    ie_exec e = {ex->k, NULL, part == 0 ? ex->prof : NULL, NULL};
    return e;
}

void ie_gemm32(const ie_exec *ex, const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k);
void ie_gemm32_bt(const ie_exec *ex, const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k);
void ie_gemm64(const ie_exec *ex, const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k);

#endif
