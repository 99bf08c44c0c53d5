/* Runs one golden case (golden_case.h, from tests/golden/golden.py emit) on every kernel tier this
 * CPU runs, with 1 and (where threads are built) 2 threads. Each run prints a `== kernels` header,
 * then what golden.py's render() gives for the committed record: run_golden.cmake compares every
 * run with it, so the bytes are checked against the tree on every target, not only against the
 * host of the same build. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "golden_case.h"

/* printf's %lld is missing from some embedded C libraries (newlib-nano): digits by hand. */
static const char *i64_text(int64_t v, char buf[24]) {
    char *p = buf + 23;
    uint64_t u = v < 0 ? 0u - (uint64_t)v : (uint64_t)v;
    *p = 0;
    do *--p = (char)('0' + u % 10); while (u /= 10);
    if (v < 0) *--p = '-';
    return p;
}

static int run(const char *tier, uint32_t threads) {
    ie_model *model = NULL;
    if (ie_model_load(model_iem, sizeof model_iem, &model) != IE_OK) {
        printf("model: %s\n", model ? ie_model_errmsg(model) : "out of memory");
        ie_model_free(model);
        return 1;
    }
    ie_session_config c;
    memset(&c, 0, sizeof c);
    c.batch_size = GOLDEN_BATCH;
    c.loss = IE_LOSS_SOFTMAX_CE;
    c.lr = (ie_dyadic)GOLDEN_LR;
    c.momentum = (ie_dyadic)GOLDEN_MOMENTUM;
    c.weight_decay = (ie_dyadic)GOLDEN_WEIGHT_DECAY;
    c.optimizer = GOLDEN_OPTIMIZER;
    c.beta1 = (ie_dyadic)GOLDEN_BETA1;
    c.beta2 = (ie_dyadic)GOLDEN_BETA2;
    c.eps = (ie_dyadic)GOLDEN_EPS;
    c.seed = GOLDEN_SEED;
    c.trainable = trainable;
    c.kernels = tier;
    c.threads = threads;
#ifdef GOLDEN_INPUT_U8
    c.input_format = IE_INPUT_U8;
    c.input_channels = GOLDEN_INPUT_U8;
    c.input_offset_q8 = input_offset_q8;
    c.input_scale_m = input_scale_m;
    c.input_scale_e = GOLDEN_INPUT_SCALE_E;
#endif
    ie_session *s = NULL;
    if (ie_session_create(model, &c, NULL, 0, &s) != IE_OK) {
        printf("session: %s\n", ie_model_errmsg(model));
        ie_model_free(model);
        return 1;
    }
    printf("== kernels %s threads %" PRIu32 "\n", ie_session_kernels(s), ie_session_threads(s));
    ie_step_stats st;
    char num[24];
    int failed = 0;
    for (uint32_t i = 0; i <= GOLDEN_STEPS && !failed; i++) {
        const void *x = &samples[(size_t)i * GOLDEN_BATCH * GOLDEN_INPUT_SIZE];
        const int32_t *y = &labels[i * GOLDEN_BATCH];
        int eval = i == GOLDEN_STEPS; /* the batch after the training steps is held out */
        ie_status status = eval ? ie_session_evaluate(s, GOLDEN_BATCH, x, y, NULL, &st)
                                : ie_session_step(s, GOLDEN_BATCH, x, y, NULL, &st);
        if (status != IE_OK) {
            printf("step %" PRIu32 ": %s\n", i, ie_session_errmsg(s));
            failed = 1;
        } else if (eval)
            printf("eval loss_q16 %s correct %" PRIu32 "/%" PRIu32 "\n", i64_text(st.loss_sum_q16, num), st.n_correct, st.count);
        else
            printf("step %" PRIu32 " loss_q16 %s correct %" PRIu32 "/%" PRIu32 "\n", i, i64_text(st.loss_sum_q16, num),
                   st.n_correct, st.count);
    }
    uint32_t digest = 0;
    if (!failed) {
        ie_session_digest(s, &digest);
        printf("digest %08" PRIx32 "\n", digest);
    }
    ie_session_free(s);
    ie_model_free(model);
    return failed;
}

int main(void) {
    int failed = 0;
    for (uint32_t i = 0; ie_kernel_tier(i); i++) {
        failed |= run(ie_kernel_tier(i), 1);
#if IE_TEST_HAVE_THREADS
        failed |= run(ie_kernel_tier(i), 2);
#endif
    }
    return failed;
}
