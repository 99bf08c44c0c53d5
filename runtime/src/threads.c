#include "threads.h"

#include <stdlib.h>


uint32_t ie_threads_planned(uint32_t threads) {
#if defined(IE_HAVE_PTHREADS)
    return threads < 1 ? 1 : (threads > IE_MAX_THREADS ? IE_MAX_THREADS : threads);
#else
    (void)threads;
    return 1;
#endif
}

#if defined(IE_HAVE_PTHREADS)
#include <pthread.h>
#include <stdatomic.h>

/* Waking a sleeping thread costs tens of microseconds (a futex and a schedule), as much as a
 * small op's whole work: both sides first poll for about that long, then sleep. */
#define SPIN 2048

static inline void relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

typedef struct worker_arg {
    struct ie_pool *pool;
    uint32_t part;
} worker_arg;

struct ie_pool {
    pthread_t workers[IE_MAX_THREADS];
    worker_arg args[IE_MAX_THREADS];
    uint32_t n_workers;
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    _Atomic uint32_t generation, pending; /* written under mu, also read while spinning */
    _Atomic int quit;
    void (*fn)(void *, uint32_t, uint32_t);
    void *ctx;
};

static void *worker(void *p) {
    worker_arg *w = p;
    ie_pool *pool = w->pool;
    uint32_t seen = 0;
    for (;;) {
        for (int i = 0; i < SPIN && !atomic_load(&pool->quit) && atomic_load(&pool->generation) == seen; i++) relax();
        pthread_mutex_lock(&pool->mu);
        while (!atomic_load(&pool->quit) && atomic_load(&pool->generation) == seen)
            pthread_cond_wait(&pool->go, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
        if (atomic_load(&pool->quit)) break;
        /* fn and ctx were written before the new generation, and stay until pending is 0 */
        seen = atomic_load(&pool->generation);
        pool->fn(pool->ctx, w->part, pool->n_workers + 1);
        if (atomic_fetch_sub(&pool->pending, 1) == 1) { /* the last: wake the caller if it sleeps */
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
    return NULL;
}

ie_pool *ie_pool_create(uint32_t threads) {
    if (threads <= 1) return NULL;
    if (threads > IE_MAX_THREADS) threads = IE_MAX_THREADS;
    ie_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->go, NULL);
    pthread_cond_init(&pool->done, NULL);
    for (uint32_t i = 0; i + 1 < threads; i++) {
        pool->args[i].pool = pool;
        pool->args[i].part = i + 1;
        if (pthread_create(&pool->workers[i], NULL, worker, &pool->args[i]) != 0) break;
        pool->n_workers++;
    }
    if (pool->n_workers == 0) {
        ie_pool_free(pool);
        return NULL;
    }
    return pool;
}

void ie_pool_free(ie_pool *pool) {
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    atomic_store(&pool->quit, 1);
    pthread_cond_broadcast(&pool->go);
    pthread_mutex_unlock(&pool->mu);
    for (uint32_t i = 0; i < pool->n_workers; i++) pthread_join(pool->workers[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->go);
    pthread_cond_destroy(&pool->done);
    free(pool);
}

uint32_t ie_pool_threads(const ie_pool *pool) { return pool ? pool->n_workers + 1 : 1; }

void ie_pool_run(ie_pool *pool, void (*fn)(void *ctx, uint32_t part, uint32_t parts), void *ctx) {
    if (!pool) {
        fn(ctx, 0, 1);
        return;
    }
    pthread_mutex_lock(&pool->mu);
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->pending, pool->n_workers);
    atomic_fetch_add(&pool->generation, 1);
    pthread_cond_broadcast(&pool->go);
    pthread_mutex_unlock(&pool->mu);
    fn(ctx, 0, pool->n_workers + 1);
    for (int i = 0; i < SPIN && atomic_load(&pool->pending); i++) relax();
    pthread_mutex_lock(&pool->mu);
    while (atomic_load(&pool->pending)) pthread_cond_wait(&pool->done, &pool->mu);
    pthread_mutex_unlock(&pool->mu);
}

#else /* no threads: everything runs on the caller */

ie_pool *ie_pool_create(uint32_t threads) {
    (void)threads;
    return NULL;
}
void ie_pool_free(ie_pool *pool) { (void)pool; }
uint32_t ie_pool_threads(const ie_pool *pool) {
    (void)pool;
    return 1;
}
void ie_pool_run(ie_pool *pool, void (*fn)(void *ctx, uint32_t part, uint32_t parts), void *ctx) {
    (void)pool;
    fn(ctx, 0, 1);
}
#endif

/* ---- GEMMs split by output rows ---- */

enum { GEMM_S32, GEMM_S64, GEMM_S32_BT };

typedef struct gemm_job {
    const ie_kernels *k;
    const int8_t *a, *b;
    void *c;
    size_t m, n, kd;
    int kind;
} gemm_job;

static void gemm_part(void *p, uint32_t part, uint32_t parts) {
    const gemm_job *j = p;
    /* rows in chunks of two (the kernels' tile height), shared out evenly */
    size_t pairs = (j->m + 1) / 2, r0 = 2 * (pairs * part / parts), r1 = 2 * (pairs * (part + 1) / parts);
    if (r1 > j->m) r1 = j->m;
    if (r0 >= r1) return;
    if (j->kind == GEMM_S64)
        j->k->gemm_s8s8_s64(j->a + r0 * j->kd, j->b, (int64_t *)j->c + r0 * j->n, r1 - r0, j->n, j->kd);
    else if (j->kind == GEMM_S32_BT)
        j->k->gemm_s8s8_s32_bt(j->a + r0 * j->kd, j->b, (int32_t *)j->c + r0 * j->n, r1 - r0, j->n, j->kd);
    else
        j->k->gemm_s8s8_s32(j->a + r0 * j->kd, j->b, (int32_t *)j->c + r0 * j->n, r1 - r0, j->n, j->kd);
}

static void gemm(const ie_exec *ex, const int8_t *a, const int8_t *b, void *c, size_t m, size_t n, size_t k, int kind) {
    gemm_job j = {ex->k, a, b, c, m, n, k, kind};
    uint64_t t0 = ie_prof_start(ex->prof);
    /* waking the pool costs tens of microseconds: only large products are worth it */
    if (!ex->pool || m < 4 || (uint64_t)m * n * (k ? k : 1) < ((uint64_t)1 << 22)) gemm_part(&j, 0, 1);
    else ie_pool_run(ex->pool, gemm_part, &j);
    ie_prof_add(ex->prof, IE_PROF_GEMM, t0);
}

void ie_gemm32(const ie_exec *ex, const int8_t *a, const int8_t *b, int32_t *c, size_t m, size_t n, size_t k) {
    gemm(ex, a, b, c, m, n, k, GEMM_S32);
}

void ie_gemm32_bt(const ie_exec *ex, const int8_t *a, const int8_t *bt, int32_t *c, size_t m, size_t n, size_t k) {
    gemm(ex, a, bt, c, m, n, k, GEMM_S32_BT);
}

void ie_gemm64(const ie_exec *ex, const int8_t *a, const int8_t *b, int64_t *c, size_t m, size_t n, size_t k) {
    gemm(ex, a, b, c, m, n, k, GEMM_S64);
}
