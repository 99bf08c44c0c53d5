/* Two sessions training in two threads of one process give the same bytes (ie_session_digest) as
 * the same two run one after the other: each thread loading its own model from one shared
 * buffer, and two sessions of one shared model. One session per case runs its own thread pool
 * too. tools/run_tests.sh also runs this test built with ThreadSanitizer. Hosted builds only
 * (it needs pthreads); elsewhere it checks nothing and passes. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "iem_builder.h"
#include "intedge.h"

#if IE_TEST_HAVE_THREADS
#include <pthread.h>
#include <stdatomic.h>

enum { K = 64, H = 32, C = 4, N = 8, STEPS = 200 };

static uint32_t f2b(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

static void batch(uint32_t seed, uint32_t *x, int32_t *y) { iemb_class_batch(seed, N, K, C, x, y); }

/* Two different trainings: SGD with momentum on one thread, AdamW on a pool of two. */
static ie_session_config config(int which) {
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = N;
    c.seed = 11 + (uint64_t)which;
    ie_dyadic_from_f32_bits(f2b(which ? 1e-2f : 5e-2f), &c.lr);
    if (which) {
        c.optimizer = IE_OPTIM_ADAMW;
        c.threads = 2;
        ie_dyadic_from_f32_bits(f2b(0.9f), &c.beta1);
        ie_dyadic_from_f32_bits(f2b(0.999f), &c.beta2);
        ie_dyadic_from_f32_bits(f2b(1e-8f), &c.eps);
    } else {
        ie_dyadic_from_f32_bits(f2b(0.9f), &c.momentum);
    }
    return c;
}

typedef struct job {
    const uint8_t *iem; /* a model to load in the thread, or NULL to use `model` */
    size_t iem_size;
    ie_model *model;
    ie_session *session; /* created beforehand, or NULL to create it in the thread */
    int which;
    uint32_t digest;            /* 0: something failed */
    atomic_int *ready;          /* threads at the start line: both step from the same moment (NULL: in turn) */
} job;

static void *train(void *arg) {
    job *j = arg;
    ie_model *own = NULL;
    ie_model *m = j->model;
    ie_session *s = j->session;
    ie_session_config c = config(j->which);
    uint32_t x[N * K];
    int32_t y[N];
    j->digest = 0;
    if (j->iem && ie_model_load(j->iem, j->iem_size, &own) != IE_OK) return NULL;
    if (own) m = own;
    if (!s && ie_session_create(m, &c, NULL, 0, &s) != IE_OK) s = NULL;
    int ok = s != NULL;
    if (j->ready) { /* else the first thread's steps could end before the second thread starts */
        atomic_fetch_add(j->ready, 1);
        while (atomic_load(j->ready) < 2) continue;
    }
    for (uint32_t i = 0; ok && i < STEPS; i++) {
        batch(1000 * (uint32_t)j->which + i, x, y);
        ok = ie_session_step(s, N, x, y, NULL, NULL) == IE_OK;
    }
    if (ok && ie_session_digest(s, &j->digest) != IE_OK) j->digest = 0;
    if (s != j->session) ie_session_free(s);
    ie_model_free(own);
    return NULL;
}

/* Runs both jobs in two threads, then the same two one after the other in this thread. */
static void check_case(job a, job b) {
    job par[2] = {a, b}, seq[2] = {a, b};
    pthread_t t[2];
    atomic_int ready = 0;
    par[0].ready = par[1].ready = &ready;
    int started[2];
    for (int k = 0; k < 2; k++) started[k] = pthread_create(&t[k], NULL, train, &par[k]) == 0;
    if (!started[0] || !started[1]) { /* a thread alone would wait at the start line for ever */
        fprintf(stderr, "concurrency: cannot start two threads\n");
        exit(1);
    }
    for (int k = 0; k < 2; k++) pthread_join(t[k], NULL);
    for (int k = 0; k < 2; k++) {
        if (seq[k].session) { /* train the shared model's sessions again from their start */
            ie_session_config c = config(seq[k].which);
            ie_session_free(seq[k].session);
            seq[k].session = NULL;
            CHECK(ie_session_create(seq[k].model, &c, NULL, 0, &seq[k].session) == IE_OK);
        }
        train(&seq[k]);
        ie_session_free(seq[k].session);
        CHECK(par[k].digest != 0 && par[k].digest == seq[k].digest);
    }
    CHECK(par[0].digest != par[1].digest); /* two different trainings */
    printf("concurrency: digests %08x %08x in two threads and in turn\n", (unsigned)par[0].digest,
           (unsigned)par[1].digest);
}

int main(void) {
    size_t size;
    uint8_t *iem = iemb_mlp(K, H, C, &size);
    /* each thread loads its own model from the same buffer and creates its session */
    check_case((job){iem, size, NULL, NULL, 0, 0, NULL}, (job){iem, size, NULL, NULL, 1, 0, NULL});
    /* one model, two sessions made beforehand, stepped at the same time */
    ie_model *m = NULL;
    CHECK(ie_model_load(iem, size, &m) == IE_OK);
    ie_session *s[2] = {NULL, NULL};
    for (int k = 0; k < 2; k++) {
        ie_session_config c = config(k);
        CHECK(ie_session_create(m, &c, NULL, 0, &s[k]) == IE_OK);
    }
    check_case((job){NULL, 0, m, s[0], 0, 0, NULL}, (job){NULL, 0, m, s[1], 1, 0, NULL});
    ie_model_free(m);
    free(iem);
    return CHECK_DONE();
}
#else
int main(void) {
    printf("concurrency: skipped (a build without threads)\n");
    return CHECK_DONE();
}
#endif
