/* libFuzzer harness: an .iem buffer (size and CRC fixed up) through ie_model_load, planning and
 * one training step. Any crash, sanitizer report or hang is a bug in the runtime. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = fuzz_fixed_copy(data, size);
    ie_model *m = NULL;
    if (ie_model_load(b, size, &m) == IE_OK) {
        ie_session *s = fuzz_session(m, FUZZ_MOMENTUM);
        if (s) fuzz_one_step(s, m);
        ie_session_free(s);
    }
    ie_model_free(m);
    free(b);
    return 0;
}
