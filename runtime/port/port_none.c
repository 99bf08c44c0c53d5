/* Bare metal without a heap: every byte comes from the caller (ie_model_load_into, a session
 * arena), so the runtime links without malloc; and no clock (profiles read 0). */
#include "ie_port.h"

void *ie_port_calloc(size_t bytes) {
    (void)bytes;
    return NULL;
}

void ie_port_free(void *p) { (void)p; }

unsigned long long ie_port_clock_ns(void) { return 0; }
