/* libFuzzer harness: a training state (size and CRC fixed up) through ie_session_load_state, into
 * one session per optimizer (SGD, SGD with momentum, AdamW), then one training step from whatever
 * was accepted. The model and its sessions are made once: a load either refuses the state and
 * leaves the session as it was, or replaces every parameter and optimizer value (that is what is
 * under test), so one input cannot hide another's bug. The model is read from
 * $INTEDGE_FUZZ_MODEL (tools/fuzz/make_seeds.py writes a small MLP beside the seed states: the
 * parser's paths do not depend on the size of the arrays, the cost of each run does). */
#include <stdio.h>

#include "fuzz_common.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *model_bytes;
static ie_model *model;
static ie_session *sessions[FUZZ_OPTIMIZERS];

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *path = getenv("INTEDGE_FUZZ_MODEL");
    FILE *f = path ? fopen(path, "rb") : NULL;
    if (!f) {
        fprintf(stderr, "fuzz_state: set INTEDGE_FUZZ_MODEL to an .iem file\n");
        exit(2);
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    model_bytes = malloc((size_t)n);
    if (!model_bytes || fread(model_bytes, 1, (size_t)n, f) != (size_t)n) exit(2);
    fclose(f);
    if (ie_model_load(model_bytes, (size_t)n, &model) != IE_OK) {
        fprintf(stderr, "fuzz_state: %s\n", ie_model_errmsg(model));
        exit(2);
    }
    for (int k = 0; k < FUZZ_OPTIMIZERS; k++)
        if (!(sessions[k] = fuzz_session(model, k))) exit(2);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = fuzz_fixed_copy(data, size);
    for (int k = 0; k < FUZZ_OPTIMIZERS; k++)
        if (ie_session_load_state(sessions[k], b, size) == IE_OK) fuzz_one_step(sessions[k], model);
    free(b);
    return 0;
}
